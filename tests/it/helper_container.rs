//! Helper containers (src/runtime/helper.rs) on the real Docker engine: the image is
//! imported from the test build of `sluice` and its libraries (nothing pulled), the
//! mounts reach the binary (a bind mount written through, a read-only volume refused),
//! a failing run still reports its code and output, a leftover container of the same name
//! is replaced, the image is built once per binary, an abandoned run is cleaned up, and
//! no helper container is ever left behind. The helper image itself is kept: it is
//! shared, keyed by the binary's hash (`sluice-helper:<tag>`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice::config::DockerSettings;
use sluice::runtime::{
    ContainerRuntime, DockerRuntime, HELPER_REPO, HelperExit, HelperMount, HelperRun, HelperSource,
    LABEL_HELPER, connect, ensure_helper_image, helper_image_tag,
};

use crate::support::{DockerCleanup, run, sluice_bin, unique};

struct Setup {
    rt: DockerRuntime,
    /// A fresh named volume, mounted at /volume.
    volume: String,
    /// A host directory, bind-mounted at /store.
    store: tempfile::TempDir,
    cleanup: DockerCleanup,
}

async fn setup(tag: &str) -> Setup {
    let rt = DockerRuntime::new(connect(&DockerSettings::default()).await.expect("docker"));
    let volume = unique(&format!("sluice-helper-{tag}"));
    let mut cleanup = DockerCleanup::default();
    cleanup.volumes.push(volume.clone());
    rt.volume_create(&volume, &BTreeMap::new())
        .await
        .expect("volume");
    Setup {
        rt,
        volume,
        store: tempfile::tempdir().expect("temp dir"),
        cleanup,
    }
}

impl Setup {
    /// A run named uniquely (registered for cleanup) with the volume at /volume
    /// (read-only as given) and the store directory at /store.
    fn helper(&mut self, args: &[&str], volume_read_only: bool) -> HelperRun {
        let name = unique("sluice-helper-run");
        self.cleanup.containers.push(name.clone());
        HelperRun {
            name,
            binary: sluice_bin(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            mounts: vec![
                HelperMount {
                    source: HelperSource::Volume(self.volume.clone()),
                    target: "/volume".to_owned(),
                    read_only: volume_read_only,
                },
                HelperMount {
                    source: HelperSource::Bind(self.store.path().to_owned()),
                    target: "/store".to_owned(),
                    read_only: false,
                },
            ],
        }
    }

    async fn run(&self, helper: &HelperRun) -> HelperExit {
        let exit = self.rt.run_helper(helper).await.expect("the helper runs");
        assert_eq!(leftovers(&helper.name), Vec::<String>::new(), "{exit:?}");
        exit
    }

    /// A config file in the store whose data directory is `data_dir` (inside the helper).
    fn config(&self, data_dir: &str) -> &'static str {
        let file = self.store.path().join("sluice.toml");
        std::fs::write(&file, format!("[data]\ndir = \"{data_dir}\"\n")).expect("config");
        "/store/sluice.toml"
    }
}

/// Containers still labelled as helper `name`.
fn leftovers(name: &str) -> Vec<String> {
    run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label={LABEL_HELPER}={name}"),
    ]))
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

fn image_id(image: &str) -> String {
    run(Command::new("docker").args(["image", "inspect", "-f", "{{.Id}}", image]))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_helper_runs_the_sluice_binary_with_its_mounts() {
    let mut s = setup("version").await;
    let helper = s.helper(&["--version"], true);
    let exit = s.run(&helper).await;
    assert_eq!(exit.code, 0, "{}", exit.output);
    assert!(
        exit.output.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        exit.output
    );

    // Written through the bind mount: the database lands in the host directory.
    let config = s.config("/store/data");
    let helper = s.helper(&["--config", config, "migrate"], true);
    let exit = s.run(&helper).await;
    assert_eq!(exit.code, 0, "{}", exit.output);
    assert!(s.store.path().join("data/sluice.db").is_file());
}

#[tokio::test]
async fn a_failing_helper_reports_its_code_and_output() {
    let mut s = setup("fail").await;
    let helper = s.helper(&["no-such-command"], true);
    let exit = s.run(&helper).await;
    assert_ne!(exit.code, 0, "{}", exit.output);
    assert!(exit.output.contains("no-such-command"), "{}", exit.output);

    // The volume is mounted read-only: a database cannot be created in it.
    let config = s.config("/volume/data");
    let helper = s.helper(&["--config", config, "migrate"], true);
    let exit = s.run(&helper).await;
    assert_ne!(exit.code, 0, "{}", exit.output);
    assert!(
        exit.output.to_lowercase().contains("read-only"),
        "{}",
        exit.output
    );
    // Writable, the same run succeeds.
    let helper = s.helper(&["--config", config, "migrate"], false);
    let exit = s.run(&helper).await;
    assert_eq!(exit.code, 0, "{}", exit.output);
}

#[tokio::test]
async fn a_leftover_container_of_the_same_name_is_replaced() {
    let mut s = setup("leftover").await;
    let image = ensure_helper_image(s.rt.docker(), &sluice_bin())
        .await
        .expect("helper image");
    let helper = s.helper(&["--version"], true);
    run(Command::new("docker").args([
        "create",
        "--name",
        &helper.name,
        "--label",
        &format!("{LABEL_HELPER}={}", helper.name),
        &image,
    ]));
    assert_eq!(leftovers(&helper.name).len(), 1);
    let exit = s.run(&helper).await;
    assert_eq!(exit.code, 0, "{}", exit.output);
}

#[tokio::test]
async fn the_image_is_built_once_per_binary() {
    let s = setup("image").await;
    let bin: PathBuf = sluice_bin();
    let docker = s.rt.docker();
    let (first, concurrent) = tokio::join!(
        ensure_helper_image(docker, &bin),
        ensure_helper_image(docker, &bin)
    );
    let first = first.expect("helper image");
    assert_eq!(concurrent.expect("helper image"), first);
    let tag = helper_image_tag(&bin).expect("hash the binary");
    assert_eq!(tag.len(), 16);
    assert_eq!(first, format!("{HELPER_REPO}:{tag}"));
    let id = image_id(&first);
    let again = ensure_helper_image(docker, &bin)
        .await
        .expect("helper image");
    assert_eq!(again, first);
    assert_eq!(image_id(&again), id, "not rebuilt");
    let label = run(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"sluice.purpose\"}}",
        &first,
    ]));
    assert_eq!(label.trim(), "snapshot-helper");
}

#[tokio::test]
async fn an_abandoned_run_is_removed() {
    let mut s = setup("abandon").await;
    // Reading a configuration file that is a FIFO blocks until a writer comes (none
    // does): the run is given up once its container exists.
    run(Command::new("mkfifo").arg(s.store.path().join("fifo.toml")));
    let helper = s.helper(&["--config", "/store/fifo.toml", "config", "check"], true);
    let (rt, run) = (s.rt.clone(), helper.clone());
    let task = tokio::spawn(async move { rt.run_helper(&run).await });
    let deadline = Instant::now() + Duration::from_secs(120);
    while leftovers(&helper.name).is_empty() {
        assert!(!task.is_finished(), "the run ended: {:?}", task.await);
        assert!(Instant::now() < deadline, "no helper container appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!task.is_finished(), "the helper exited: {:?}", task.await);
    task.abort();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !leftovers(&helper.name).is_empty() {
        assert!(Instant::now() < deadline, "the helper container is left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
