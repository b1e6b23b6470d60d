//! Zero downtime, measured (`eval "$(tests/env/up.sh)"; cargo bench --bench start_first`):
//! a workspace of the fixture app behind Debian's nginx on loopback, a client sending it
//! 100 requests a second, and 10 updates (alternating between two versions) in each of
//! three ways, round by round: a sluice start-first update, a sluice stop-first update
//! (both with the `file` router rewriting the upstream and reloading nginx), and the
//! baseline an operator scripts by hand — `docker stop; docker rm; docker run` of the new
//! image, then the upstream rewritten and nginx reloaded. Reported per way: requests
//! failed (of those sent) and the longest time the client went without an answer.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::{RouterKind, RouterSettings, Settings};
use sluice::domain::spec::UpdateOrder;
use sluice::domain::{Digest, WorkspaceName};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::Store;

#[path = "support/fixture.rs"]
mod fixture;
#[path = "support/nginx.rs"]
mod nginx;
use fixture::{docker, fixture, fixture_spec, insert_workspace};

const UPDATES: usize = 10;

/// A sluice-managed workspace behind the nginx of `dir`.
struct Managed {
    store: Store,
    rec: Reconciler<DockerRuntime>,
    id: i64,
    name: WorkspaceName,
    _data: tempfile::TempDir,
}

async fn managed(dir: &Path, name: &str, repo: &str, order: UpdateOrder) -> Managed {
    let data = tempfile::tempdir().expect("tmp");
    let mut s = Settings::default();
    s.data.dir = data.path().to_path_buf();
    s.update.min_healthy_time = Duration::from_secs(1);
    s.update.healthy_deadline = Duration::from_secs(30);
    s.snapshots.min_free_bytes = 0;
    s.router = RouterSettings {
        kind: RouterKind::File,
        file: Some(dir.join("up/{workspace}.conf")),
        reload: nginx::reload_command(dir),
        ..RouterSettings::default()
    };
    let store = sluice::startup::open_store(&s).await.expect("store");
    let mut spec = fixture_spec(&format!("{name}-data"));
    spec.volumes[0].shared = true;
    spec.update_order = Some(order);
    let w = insert_workspace(&store, name, &format!("{repo}:v1"), spec).await;
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        ReconcilerConfig::from_settings(&s),
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    );
    Managed {
        store,
        rec,
        id: w.id,
        name: w.name,
        _data: data,
    }
}

impl Managed {
    async fn go(&self, d: &Digest) {
        self.store
            .set_desired_digest(self.id, Some(d), None, SystemClock.now())
            .await
            .expect("desire");
        self.rec.converge_all().await.expect("converge");
        let w = self.store.workspace(&self.name).await.expect("workspace");
        assert_eq!(w.actual_digest.as_ref(), Some(d), "the update succeeded");
    }
}

/// The hand-made baseline: a plain container and the nginx of `dir` pointed at it.
fn raw_cycle(dir: &Path, name: &str, volume: &str, image: &str) {
    let _ = Command::new("docker")
        .args(["stop", "-t", "10", name])
        .output();
    let _ = Command::new("docker").args(["rm", "-f", name]).output();
    docker(&[
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "sluice.test=1",
        "-v",
        &format!("{volume}:/data"),
        image,
    ]);
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect((ip.as_str(), 8080)).is_err() {
        assert!(Instant::now() < deadline, "{name} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx::write_upstream(dir, name, &ip, 8080);
    let reload = nginx::reload_command(dir);
    let out = Command::new(&reload[0])
        .args(&reload[1..])
        .output()
        .expect("reload");
    assert!(out.status.success(), "nginx reload");
}

/// One update under load through `proxy`.
async fn measured<F: std::future::Future<Output = ()>>(port: u16, update: F) -> nginx::Traffic {
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(nginx::load(
        format!("http://127.0.0.1:{port}/version"),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    update.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    traffic.await.expect("client")
}

async fn ready(proxy: &nginx::Nginx) {
    let url = format!("http://127.0.0.1:{}/version", proxy.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(&url)
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "the proxy never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.settle();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let pid = std::process::id();
    let repo = format!("{registry}/bench-start-first-{pid}/app");
    let d = [fixture("v1", &repo), fixture("v2", &repo)];
    let images: Vec<String> = d.iter().map(|d| format!("{repo}@{d}")).collect();
    for i in &images {
        docker(&["pull", "-q", i]);
    }
    let names = [
        format!("bsf-{pid}-start"),
        format!("bsf-{pid}-stop"),
        format!("bsf-{pid}-raw"),
    ];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tmp")).collect();
    let proxies: Vec<nginx::Nginx> = (0..3)
        .map(|i| nginx::start(dirs[i].path(), &names[i]))
        .collect();
    let start = managed(dirs[0].path(), &names[0], &repo, UpdateOrder::StartFirst).await;
    let stop = managed(dirs[1].path(), &names[1], &repo, UpdateOrder::StopFirst).await;
    start.go(&d[0]).await;
    stop.go(&d[0]).await;
    let raw_volume = format!("{}-data", names[2]);
    docker(&["volume", "create", "--label", "sluice.test=1", &raw_volume]);
    raw_cycle(dirs[2].path(), &names[2], &raw_volume, &images[0]);
    for p in &proxies {
        ready(p).await;
    }
    let mut results: [Vec<nginx::Traffic>; 3] = Default::default();
    for round in 0..UPDATES {
        let next = &d[(round + 1) % 2];
        let image = &images[(round + 1) % 2];
        results[0].push(measured(proxies[0].port, start.go(next)).await);
        results[1].push(measured(proxies[1].port, stop.go(next)).await);
        let (dir, name) = (dirs[2].path(), names[2].as_str());
        results[2].push(
            measured(proxies[2].port, async {
                tokio::task::block_in_place(|| raw_cycle(dir, name, &raw_volume, image));
            })
            .await,
        );
    }
    println!("{UPDATES} updates each through nginx at 100 requests/s:");
    println!("| way | requests failed (of sent) | longest gap: median / max |");
    println!("| --- | --- | --- |");
    for (way, r) in [
        "sluice start-first",
        "sluice stop-first",
        "docker stop; rm; run + reload",
    ]
    .iter()
    .zip(&results)
    {
        let failed: usize = r.iter().map(|t| t.failed).sum();
        let sent: usize = r.iter().map(|t| t.sent).sum();
        let mut gaps: Vec<Duration> = r.iter().map(|t| t.longest_gap).collect();
        gaps.sort();
        println!(
            "| {way} | {failed} ({sent}) | {:.0} / {:.0} ms |",
            gaps[gaps.len() / 2].as_secs_f64() * 1000.0,
            gaps[gaps.len() - 1].as_secs_f64() * 1000.0
        );
    }
    drop(proxies);
    for n in &names {
        let _ = Command::new("docker").args(["rm", "-f", "-v", n]).output();
        let _ = Command::new("docker")
            .args(["rm", "-f", &format!("sluice-{n}")])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &format!("{n}-data")])
            .output();
    }
    for i in &images {
        let _ = Command::new("docker").args(["rmi", "-f", i]).output();
    }
}
