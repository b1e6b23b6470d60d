//! The contract every [`ContainerRuntime`] must meet. Each behaviour is one generic async
//! fn, called from a unit test with [`super::FakeRuntime`] and from an integration test
//! with [`super::DockerRuntime`] on a real engine. They panic (assert) on a breach.
//!
//! Names used: container `<prefix>-c`, `<prefix>-u` (unmanaged), volume `<prefix>-v`,
//! `<prefix>-w`; callers clean those up. `image` must be a pinned image whose entrypoint
//! keeps running and whose data directory is `/data`.

#![allow(clippy::missing_panics_doc)] // reason: test support: panics are the verdict

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ContainerRuntime, ContainerSpec, LABEL_DIGEST, LABEL_MANAGED, LABEL_WORKSPACE};

/// A managed container spec mounting `<prefix>-v` at `/data`.
pub fn spec(prefix: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("{prefix}-c"),
        image: image.to_owned(),
        labels: BTreeMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_WORKSPACE.to_owned(), prefix.to_owned()),
            (LABEL_DIGEST.to_owned(), "sha256:test".to_owned()),
            ("sluice.test".to_owned(), "1".to_owned()),
        ]),
        env: vec!["A=1".to_owned()],
        cmd: None,
        volumes: vec![(format!("{prefix}-v"), "/data".to_owned())],
        ports: Vec::new(),
        restart: None,
        networks: Vec::new(),
        entrypoint: None,
        user: None,
        working_dir: None,
        hostname: None,
        stop_signal: None,
        stop_timeout: None,
        read_only_rootfs: false,
        limits: Default::default(),
        read_only_mounts: Vec::new(),
        restart_retries: None,
        tmpfs: BTreeMap::new(),
        extra_hosts: Vec::new(),
        dns: Vec::new(),
        ulimits: Vec::new(),
        sysctls: BTreeMap::new(),
        log: None,
        binds: Vec::new(),
        cap_add: Vec::new(),
        cap_drop: Vec::new(),
        security_opt: Vec::new(),
    }
}

fn test_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("sluice.test".to_owned(), "1".to_owned())])
}

/// create → inspect → start → stop → remove, each repeated to prove idempotence.
pub async fn lifecycle<R: ContainerRuntime>(rt: &R, image: &str, prefix: &str) {
    let s = spec(prefix, image);
    rt.ensure_image(image).await.expect("ensure image");
    assert!(rt.inspect(&s.name).await.expect("inspect").is_none());
    rt.volume_create(&format!("{prefix}-v"), &test_labels())
        .await
        .expect("volume");
    let id = rt.create(&s).await.expect("create");
    let c = rt.inspect(&s.name).await.expect("inspect").expect("exists");
    assert_eq!(c.id, id);
    assert_eq!(c.name, s.name);
    assert!(!c.running);
    assert!(c.is_managed());
    assert_eq!(c.digest_label(), Some("sha256:test"));
    assert!(rt.inspect(&id).await.expect("by id").is_some());
    assert!(rt.create(&s).await.is_err(), "a second create must fail");
    let listed = rt.list_managed().await.expect("list");
    assert!(listed.iter().any(|c| c.name == s.name));
    rt.start(&s.name).await.expect("start");
    rt.start(&s.name).await.expect("start again");
    assert!(
        rt.inspect(&s.name)
            .await
            .expect("inspect")
            .expect("c")
            .running
    );
    let run = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let timeout = Duration::from_secs(10);
    assert_eq!(
        rt.exec(&s.name, &run(&["/bin/busybox", "true"]), timeout)
            .await
            .expect("exec"),
        Some(0)
    );
    assert_eq!(
        rt.exec(&s.name, &run(&["/bin/busybox", "false"]), timeout)
            .await
            .expect("exec"),
        Some(1)
    );
    rt.stop(&s.name, Duration::from_secs(5))
        .await
        .expect("stop");
    rt.stop(&s.name, Duration::from_secs(5))
        .await
        .expect("stop again");
    assert!(
        rt.exec(&s.name, &run(&["/bin/busybox", "true"]), timeout)
            .await
            .is_err(),
        "no exec in a stopped container"
    );
    assert!(
        !rt.inspect(&s.name)
            .await
            .expect("inspect")
            .expect("c")
            .running
    );
    assert!(
        rt.volume_remove(&format!("{prefix}-v")).await.is_err(),
        "a volume in use must not be removed"
    );
    rt.remove(&s.name).await.expect("remove");
    rt.remove(&s.name).await.expect("remove again");
    assert!(rt.inspect(&s.name).await.expect("inspect").is_none());
    rt.volume_remove(&format!("{prefix}-v"))
        .await
        .expect("rm vol");
}

/// Stopping a running managed container shows up in its events.
pub async fn stop_is_an_event<R: ContainerRuntime>(rt: &R, image: &str, prefix: &str) {
    let mut s = spec(prefix, image);
    s.volumes.clear();
    let since = chrono::Utc::now().timestamp() - 1;
    rt.ensure_image(image).await.expect("image");
    rt.create(&s).await.expect("create");
    rt.start(&s.name).await.expect("start");
    rt.stop(&s.name, Duration::from_secs(5))
        .await
        .expect("stop");
    let names = rt.events_since(since).await.expect("events");
    assert!(names.contains(&s.name), "{names:?}");
    rt.remove(&s.name).await.expect("remove");
}

/// Volumes: create reports whether it created, labels are kept, remove is idempotent.
pub async fn volumes<R: ContainerRuntime>(rt: &R, prefix: &str) {
    let name = format!("{prefix}-w");
    let mut labels = test_labels();
    labels.insert(LABEL_WORKSPACE.to_owned(), prefix.to_owned());
    assert!(rt.volume_inspect(&name).await.expect("inspect").is_none());
    assert!(rt.volume_create(&name, &labels).await.expect("create"));
    assert!(!rt.volume_create(&name, &labels).await.expect("again"));
    let got = rt
        .volume_inspect(&name)
        .await
        .expect("inspect")
        .expect("exists");
    assert_eq!(got.get(LABEL_WORKSPACE), Some(&prefix.to_owned()));
    rt.volume_remove(&name).await.expect("remove");
    rt.volume_remove(&name).await.expect("remove again");
    assert!(rt.volume_inspect(&name).await.expect("inspect").is_none());
}

/// A volume archived from a stopped container, restored into a fresh volume, archives
/// to the same bytes.
pub async fn archive_round_trip<R: ContainerRuntime>(rt: &R, image: &str, prefix: &str) {
    let dir = std::env::temp_dir().join(format!("sluice-contract-{prefix}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let s = spec(prefix, image);
    let vol = format!("{prefix}-v");
    rt.ensure_image(image).await.expect("image");
    rt.volume_create(&vol, &test_labels())
        .await
        .expect("volume");
    rt.create(&s).await.expect("create");
    rt.start(&s.name).await.expect("start");
    rt.stop(&s.name, Duration::from_secs(5))
        .await
        .expect("stop");
    let a = dir.join("a.tar");
    let (size_a, sha_a) = rt
        .archive_download(&s.name, "/data", &a)
        .await
        .expect("download");
    assert_eq!(size_a, std::fs::metadata(&a).expect("file").len());
    rt.remove(&s.name).await.expect("remove");
    rt.volume_remove(&vol).await.expect("rm vol");
    rt.volume_create(&vol, &test_labels())
        .await
        .expect("volume");
    rt.create(&s).await.expect("create");
    rt.archive_upload(&s.name, "/", &a).await.expect("upload");
    let b = dir.join("b.tar");
    let (size_b, sha_b) = rt
        .archive_download(&s.name, "/data", &b)
        .await
        .expect("download");
    assert_eq!(
        (size_a, &sha_a),
        (size_b, &sha_b),
        "restored volume differs"
    );
    rt.remove(&s.name).await.expect("remove");
    rt.volume_remove(&vol).await.expect("rm vol");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pulling a digest the registry does not have fails.
pub async fn missing_image_fails<R: ContainerRuntime>(rt: &R, missing: &str) {
    assert!(rt.ensure_image(missing).await.is_err());
}

/// Containers without `sluice.managed=true` are not listed as managed.
pub async fn unmanaged_not_listed<R: ContainerRuntime>(rt: &R, image: &str, prefix: &str) {
    let mut s = spec(prefix, image);
    s.name = format!("{prefix}-u");
    s.labels.remove(LABEL_MANAGED);
    s.volumes.clear();
    rt.ensure_image(image).await.expect("image");
    rt.create(&s).await.expect("create");
    let listed = rt.list_managed().await.expect("list");
    assert!(!listed.iter().any(|c| c.name == s.name));
    assert!(
        !rt.inspect(&s.name)
            .await
            .expect("i")
            .expect("c")
            .is_managed()
    );
    rt.remove(&s.name).await.expect("remove");
}

/// A container created with many settings reads back as created: no drift, nothing
/// unrepresentable, and (the network aside) the very spec. `network` must exist.
pub async fn config_reads_back<R: ContainerRuntime>(
    rt: &R,
    image: &str,
    prefix: &str,
    network: &str,
) {
    let mut s = spec(prefix, image);
    s.name = format!("{prefix}-c");
    s.volumes.clear();
    s.env = vec!["A=1".to_owned(), "B=two words".to_owned()];
    s.cmd = Some(vec!["/fixture/entrypoint.sh".to_owned()]);
    s.entrypoint = Some(vec!["/bin/sh".to_owned()]);
    s.user = Some("0:0".to_owned());
    s.working_dir = Some("/fixture".to_owned());
    s.hostname = Some("contract".to_owned());
    s.stop_signal = Some("SIGINT".to_owned());
    s.stop_timeout = Some(3);
    s.restart = Some("on-failure".to_owned());
    s.restart_retries = Some(2);
    s.networks = vec![super::Attachment {
        network: network.to_owned(),
        aliases: vec!["contract-web".to_owned()],
    }];
    s.ports = vec![super::PortSpec {
        container: 8080,
        protocol: "tcp".to_owned(),
        host: None,
        host_ip: "127.0.0.1".to_owned(),
    }];
    s.limits.memory = Some(64 << 20);
    s.limits.nano_cpus = Some(500_000_000);
    s.limits.pids_limit = Some(64);
    s.tmpfs = BTreeMap::from([("/run".to_owned(), "size=8m".to_owned())]);
    s.extra_hosts = vec!["db:10.0.0.5".to_owned()];
    s.dns = vec!["10.0.0.53".to_owned()];
    s.ulimits = vec![("nofile".to_owned(), 1024, 2048)];
    s.log = Some((
        "json-file".to_owned(),
        BTreeMap::from([("max-size".to_owned(), "1m".to_owned())]),
    ));
    s.cap_add = vec!["NET_ADMIN".to_owned()];
    s.cap_drop = vec!["MKNOD".to_owned()];
    s.security_opt = vec!["no-new-privileges".to_owned()];
    s.read_only_rootfs = true;
    rt.ensure_image(image).await.expect("ensure image");
    rt.create(&s).await.expect("create");
    let got = rt
        .inspect_config(&s.name)
        .await
        .expect("inspect config")
        .expect("exists");
    assert!(got.unrepresentable.is_empty(), "{:?}", got.unrepresentable);
    assert_eq!(
        crate::adopt::drift::differences(&got, &s),
        Vec::<&str>::new(),
        "a container as created has no drift: {got:?}"
    );
    assert_eq!(got.spec.networks, s.networks);
    assert_eq!(got.spec.env, s.env.clone());
    let mut other = s.clone();
    other.env.push("C=3".to_owned());
    other.limits.memory = Some(128 << 20);
    assert_eq!(
        crate::adopt::drift::differences(&got, &other),
        vec!["env", "resources"]
    );
    rt.remove(&s.name).await.expect("remove");
    assert!(rt.inspect_config(&s.name).await.expect("inspect").is_none());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::FakeRuntime;

    const IMAGE: &str = "127.0.0.1:5000/fx/good@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn fake() -> FakeRuntime {
        let rt = FakeRuntime::new();
        rt.add_image(IMAGE);
        rt
    }

    #[tokio::test]
    async fn fake_lifecycle() {
        lifecycle(&fake(), IMAGE, "t1").await;
    }
    #[tokio::test]
    async fn fake_volumes() {
        volumes(&fake(), "t2").await;
    }
    #[tokio::test]
    async fn fake_archive_round_trip() {
        archive_round_trip(&fake(), IMAGE, "t3").await;
    }
    #[tokio::test]
    async fn fake_missing_image_fails() {
        missing_image_fails(&fake(), "127.0.0.1:5000/fx/none@sha256:00").await;
    }
    #[tokio::test]
    async fn fake_stop_is_an_event() {
        stop_is_an_event(&fake(), IMAGE, "t5").await;
    }
    #[tokio::test]
    async fn fake_config_reads_back() {
        config_reads_back(&fake(), IMAGE, "t6", "net").await;
    }
    #[tokio::test]
    async fn fake_unmanaged_not_listed() {
        unmanaged_not_listed(&fake(), IMAGE, "t4").await;
    }
}
