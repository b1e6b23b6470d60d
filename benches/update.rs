//! Reconciler benchmarks against the real Docker engine and the test registry
//! (`eval "$(tests/env/up.sh)"; cargo bench --bench update`). Each number is reported
//! next to a baseline measured in the same run, as a ratio:
//!
//! outage (stop → healthy) of a sluice update vs a plain `docker stop && docker rm &&
//! docker run` of the same image, with volumes of 0, 100 MiB and 1 GiB, alternating round
//! by round; only rounds whose update succeeded count.
//! Snapshot and restore throughput is measured by `benches/snapshot.rs`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::Store;

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{docker, fixture, fixture_spec, insert_workspace};

const ROUNDS: usize = 5;
const POLL: Duration = Duration::from_millis(50);

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
    let ws = insert_workspace(&store, name, &format!("{repo}:v1"), fixture_spec(volume)).await;
    (s, store, ws.id)
}

/// The directory of a Docker volume on this host.
fn mountpoint(volume: &str) -> std::path::PathBuf {
    docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).into()
}

/// Writes `bytes` of pseudo-random data into `dir` as 16 MiB files (or one smaller one).
fn fill(dir: &std::path::Path, bytes: u64) {
    use std::io::Write;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = bytes;
    let mut n = 0;
    while left > 0 {
        let len = left.min(16 << 20);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("f{n}"))).expect("file"),
        );
        let mut buf = vec![0u8; 1 << 20];
        let mut rest = len;
        while rest > 0 {
            for c in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                c.copy_from_slice(&x.to_le_bytes());
            }
            let k = rest.min(buf.len() as u64) as usize;
            f.write_all(&buf[..k]).expect("write");
            rest -= k as u64;
        }
        left -= len;
        n += 1;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Outage (stop → healthy) of a sluice update of a workspace whose volume holds
/// `bytes`, against `docker stop && docker rm && docker run` of the same image with a
/// volume of the same size, alternating round by round. Returns (sluice, plain, ratio)
/// medians; only rounds in which the sluice update succeeded count.
async fn downtime(repo: &str, bytes: u64) -> (f64, f64, Vec<f64>) {
    let d = [fixture("v1", repo), fixture("v2", repo)];
    let images: Vec<String> = d.iter().map(|d| format!("{repo}@{d}")).collect();
    for i in &images {
        docker(&["pull", "-q", i]);
    }
    let pid = std::process::id();
    let name = format!("bench-{pid}-{}", bytes >> 20);
    let volume = format!("{name}-data");
    let plain_volume = format!("{name}-plain");
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
    store
        .set_desired_digest(ws, Some(&d[0]), None, SystemClock.now())
        .await
        .expect("desire");
    rec.converge_all().await.expect("converge");
    fill(&mountpoint(&volume), bytes);
    docker(&[
        "volume",
        "create",
        "--label",
        "sluice.test=1",
        &plain_volume,
    ]);
    fill(&mountpoint(&plain_volume), bytes);
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
            &format!("{plain_volume}:/data"),
            image,
        ]);
    };
    run(&images[0]);
    while !healthy(&plain) {
        std::thread::sleep(POLL);
    }
    let (mut sluice_s, mut plain_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let digest = &d[round % 2];
        store
            .set_desired_digest(ws, Some(digest), None, SystemClock.now())
            .await
            .expect("desire");
        let before = metrics.downtime.get_sample_sum();
        rec.converge_all().await.expect("converge");
        let ok = store
            .latest_update(ws)
            .await
            .expect("latest")
            .is_some_and(|u| u.phase == sluice::domain::UpdatePhase::Succeeded);
        let sluice_down = metrics.downtime.get_sample_sum() - before;

        let t = Instant::now();
        docker(&["stop", &plain]);
        docker(&["rm", &plain]);
        run(&images[round % 2]);
        while !healthy(&plain) {
            std::thread::sleep(POLL);
        }
        let plain_down = t.elapsed().as_secs_f64();
        if ok {
            sluice_s.push(sluice_down);
            plain_s.push(plain_down);
            ratios.push(sluice_down / plain_down);
        }
    }
    docker(&["rm", "-f", &plain, &format!("sluice-{name}")]);
    docker(&["volume", "rm", "-f", &volume, &plain_volume]);
    for i in &images {
        let _ = Command::new("docker").args(["rmi", "-f", i]).output();
    }
    (median(sluice_s), median(plain_s), ratios)
}

#[tokio::main]
async fn main() {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let repo = format!("{registry}/bench-{}/app", std::process::id());
    for bytes in [0u64, 100 << 20, 1 << 30] {
        let (sluice_down, plain_down, mut ratios) = downtime(&repo, bytes).await;
        ratios.sort_by(f64::total_cmp);
        println!(
            "volume {} MiB: outage stop->healthy (median of {} successful rounds): sluice \
             {sluice_down:.3}s, plain docker {plain_down:.3}s; ratio median {:.2} (min {:.2}, max {:.2})",
            bytes >> 20,
            ratios.len(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
}
