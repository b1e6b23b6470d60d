//! Reconciler benchmarks against the real Docker engine and the test registry
//! (`eval "$(tests/env/up.sh)"; cargo bench --bench update`). Each number is reported
//! next to a baseline measured in the same run, as a ratio:
//!
//! downtime (stop → healthy) of a sluice update vs a plain
//! `docker stop && docker rm && docker run` of the same container (empty volume).
//! Snapshot and restore throughput is measured by `benches/snapshot.rs`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
use sluice::domain::{Digest, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::{NewWorkspace, Store};

const ROUNDS: usize = 5;
const POLL: Duration = Duration::from_millis(50);

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn docker(args: &[&str]) -> String {
    sh(Command::new("docker").args(args))
}

fn fixture(version: &str, repo: &str) -> Digest {
    let out = sh(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/env/build-fixture.sh"
    ))
    .args(["good", version, &format!("{repo}:{version}")]));
    Digest::parse(&out).expect("digest")
}

fn healthy(name: &str) -> bool {
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    !ip.is_empty()
        && Command::new("wget")
            .args([
                "-q",
                "-T",
                "1",
                "-O",
                "/dev/null",
                &format!("http://{ip}:8080/health"),
            ])
            .status()
            .is_ok_and(|s| s.success())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

async fn store_and_workspace(
    dir: &std::path::Path,
    name: &str,
    repo: &str,
    volume: &str,
) -> (Settings, Store, i64) {
    let mut s = Settings::default();
    s.data.dir = dir.to_path_buf();
    s.update.min_healthy_time = Duration::ZERO;
    s.update.healthy_deadline = Duration::from_secs(30);
    s.update.stop_timeout = Duration::from_secs(10);
    s.snapshots.min_free_bytes = 0;
    let store = sluice::startup::open_store(&s).await.expect("store");
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                name: WorkspaceName::parse(name).expect("name"),
                image: ImageRef::parse(&format!("{repo}:v1")).expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: WorkspaceSpec {
                    volumes: vec![VolumeMount::new(volume.to_owned(), "/data")],
                    health: Some(HealthProbe {
                        http: Some(HttpProbe {
                            port: 8080,
                            path: "/health".into(),
                            status: Some(200),
                        }),
                    }),
                    labels: [("sluice.test".to_owned(), "1".to_owned())].into(),
                    ..Default::default()
                },
            },
            SystemClock.now(),
        )
        .await
        .expect("workspace");
    (s, store, ws.id)
}

async fn downtime(repo: &str) -> (f64, f64) {
    let d = [fixture("v1", repo), fixture("v2", repo)];
    let images: Vec<String> = d.iter().map(|d| format!("{repo}@{d}")).collect();
    for i in &images {
        docker(&["pull", "-q", i]);
    }
    let pid = std::process::id();
    let name = format!("bench-{pid}");
    let volume = format!("bench-{pid}-data");
    let dir = tempfile::tempdir().expect("tmp");
    let (s, store, ws) = store_and_workspace(dir.path(), &name, repo, &volume).await;
    let registry = prometheus::Registry::new();
    let metrics = ReconcilerMetrics::register(&registry);
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.health_poll = POLL;
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        cfg,
        Arc::new(SystemClock),
        metrics.clone(),
        sluice::wake::Wakers::new(),
    );
    let mut sluice_s = Vec::new();
    for round in 0..=ROUNDS {
        let digest = &d[round % 2];
        store
            .set_desired_digest(ws, Some(digest), None, SystemClock.now())
            .await
            .expect("desire");
        let before = metrics.downtime.get_sample_sum();
        rec.converge_all().await.expect("converge");
        if round > 0 {
            sluice_s.push(metrics.downtime.get_sample_sum() - before);
        }
    }
    let cname = format!("sluice-{name}");
    docker(&["rm", "-f", &cname]);

    let mut plain_s = Vec::new();
    let plain = format!("bench-plain-{pid}");
    let run = |image: &str| {
        docker(&[
            "run",
            "-d",
            "--name",
            &plain,
            "--label",
            "sluice.test=1",
            "-v",
            &format!("{volume}:/data"),
            image,
        ]);
    };
    run(&images[0]);
    while !healthy(&plain) {
        std::thread::sleep(POLL);
    }
    for round in 1..=ROUNDS {
        let t = Instant::now();
        docker(&["stop", &plain]);
        docker(&["rm", &plain]);
        run(&images[round % 2]);
        while !healthy(&plain) {
            std::thread::sleep(POLL);
        }
        plain_s.push(t.elapsed().as_secs_f64());
    }
    docker(&["rm", "-f", &plain]);
    docker(&["volume", "rm", "-f", &volume]);
    for i in &images {
        let _ = Command::new("docker").args(["rmi", "-f", i]).output();
    }
    (mean(&sluice_s), mean(&plain_s))
}

#[tokio::main]
async fn main() {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let repo = format!("{registry}/bench-{}/app", std::process::id());
    let (sluice_down, plain_down) = downtime(&repo).await;
    println!(
        "downtime stop->healthy (mean of {ROUNDS}): sluice {sluice_down:.3}s, plain docker {plain_down:.3}s, ratio {:.2}",
        sluice_down / plain_down
    );
}
