//! Outage of a stop-first sluice update against a raw recreate of the same container, on
//! the real Docker engine and the test registry
//! (`eval "$(tests/env/up.sh)"; cargo bench --bench update`; needs root, as sluice does,
//! to reach volumes).
//!
//! For each volume size in `SLUICE_BENCH_SIZES_MIB` (MiB, default `0,1024,5120`): a
//! sluice workspace of the fixture app and a plain container of the same image, each with
//! its own volume of that many 1 MiB pseudo-random files. Before every round both volumes
//! get about 1% of their files (at least one) rewritten with new contents of the same
//! size, a different window of files each round, and everything is flushed (`sync`) so
//! no side pays for the other's dirty pages. Then, in an order that rotates round by
//! round, three ways of moving the container to the other image:
//! - sluice: a new desired digest and `converge_all` (the pre-copy of the volume while
//!   the container still serves, stop, the delta snapshot, recreate, start, health);
//!   outage is the reconciler's `downtime` histogram (stop → healthy), duration is the
//!   wall time from setting the desired digest to the succeeded update;
//! - `docker stop; docker rm; docker run -d` (the CLI, as an operator would);
//! - the same three steps through the engine API in-process (the calls sluice itself
//!   makes, with the spec of sluice's own container): the stricter baseline, without the
//!   CLI's process start-up.
//!
//! The baselines' outage runs from just before the stop to the first 200 of `/health`,
//! probed in-process every `POLL` (sluice's `health_poll` here too). One unmeasured
//! warm-up round comes first (the volume's first snapshot has no previous one to compare
//! with, so it copies everything); then `ROUNDS` measured ones. Only rounds whose sluice
//! update succeeded count. Prints each round, then per size median, min and max of each
//! outage and of the ratios (sluice / baseline, pair by pair, so drift of the machine's
//! speed cancels). No timing is asserted. Page caches are not dropped (that needs root
//! and would slow every side alike); the data just written is usually still cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::domain::{Digest, UpdatePhase};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{ContainerRuntime, ContainerSpec, DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::Store;

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{
    DockerLeftovers, docker, fill_files, fixture, fixture_spec, http_ok, init_logs,
    insert_workspace, rewrite_share, show, sync_all,
};

const ROUNDS: usize = 6;
const POLL: Duration = Duration::from_millis(50);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Volume sizes in MiB.
fn sizes() -> Vec<u64> {
    let raw = std::env::var("SLUICE_BENCH_SIZES_MIB").unwrap_or_else(|_| "0,1024,5120".into());
    raw.split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("SLUICE_BENCH_SIZES_MIB: MiB, comma-separated")
        })
        .collect()
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
    s.update.stop_timeout = STOP_GRACE;
    s.snapshots.min_free_bytes = 0;
    let store = sluice::startup::open_store(&s).await.expect("store");
    let ws = insert_workspace(&store, name, &format!("{repo}:v1"), fixture_spec(volume)).await;
    (s, store, ws.id)
}

/// The directory of a Docker volume on this host.
fn mountpoint(volume: &str) -> std::path::PathBuf {
    docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).into()
}

/// Waits until `name` answers `/health` with 200 (its address read once it has one).
async fn wait_healthy(rt: &DockerRuntime, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ip: Option<String> = None;
    loop {
        if ip.is_none() {
            ip = rt
                .inspect(name)
                .await
                .expect("inspect")
                .and_then(|i| i.ip)
                .filter(|ip| !ip.is_empty());
        }
        if let Some(ip) = &ip
            && http_ok(ip, 8080, "/health").await
        {
            return;
        }
        assert!(Instant::now() < deadline, "{name} not healthy after 60 s");
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum Way {
    Sluice,
    Cli,
    Api,
}

/// The plain container and how to recreate it either way.
struct Plain {
    rt: DockerRuntime,
    name: String,
    volume: String,
    /// Sluice's container's spec with this container's name, volume and label.
    spec: ContainerSpec,
}

impl Plain {
    fn run_cli(&self, image: &str) {
        docker(&[
            "run",
            "-d",
            "--name",
            &self.name,
            "--label",
            "sluice.test=1",
            "-v",
            &format!("{}:/data", self.volume),
            image,
        ]);
    }

    /// Outage in seconds of `docker stop; docker rm; docker run -d`.
    async fn recreate_cli(&self, image: &str) -> f64 {
        let t = Instant::now();
        docker(&["stop", &self.name]);
        docker(&["rm", &self.name]);
        self.run_cli(image);
        wait_healthy(&self.rt, &self.name).await;
        t.elapsed().as_secs_f64()
    }

    /// Outage in seconds of stop, remove, create and start through the engine API.
    async fn recreate_api(&self, image: &str) -> f64 {
        let mut spec = self.spec.clone();
        image.clone_into(&mut spec.image);
        let t = Instant::now();
        self.rt.stop(&self.name, STOP_GRACE).await.expect("stop");
        self.rt.remove(&self.name).await.expect("remove");
        self.rt.create(&spec).await.expect("create");
        self.rt.start(&self.name).await.expect("start");
        wait_healthy(&self.rt, &self.name).await;
        t.elapsed().as_secs_f64()
    }
}

/// What the measured rounds of one size gave.
#[derive(Default)]
struct Samples {
    sluice: Vec<f64>,
    duration: Vec<f64>,
    cli: Vec<f64>,
    api: Vec<f64>,
    rewritten: usize,
}

async fn bench_size(repo: &str, d: &[Digest; 2], mib: u64) -> Samples {
    let images: Vec<String> = d.iter().map(|d| format!("{repo}@{d}")).collect();
    let pid = std::process::id();
    let name = format!("bench-{pid}-{mib}");
    let volume = format!("{name}-data");
    let plain_name = format!("bench-plain-{pid}-{mib}");
    let plain_volume = format!("{name}-plain");
    let _leftovers = DockerLeftovers {
        containers: vec![format!("sluice-{name}"), plain_name.clone()],
        volumes: vec![volume.clone(), plain_volume.clone()],
        images: Vec::new(),
    };
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

    let rt = DockerRuntime::new(connect(&s.docker).await.expect("docker"));
    let mut spec = rt
        .inspect_config(&format!("sluice-{name}"))
        .await
        .expect("inspect")
        .expect("sluice's container")
        .spec;
    spec.name.clone_from(&plain_name);
    spec.volumes = vec![(plain_volume.clone(), "/data".to_owned())];
    spec.labels = [("sluice.test".to_owned(), "1".to_owned())].into();
    docker(&[
        "volume",
        "create",
        "--label",
        "sluice.test=1",
        &plain_volume,
    ]);
    let plain = Plain {
        rt,
        name: plain_name,
        volume: plain_volume,
        spec,
    };
    let roots = [mountpoint(&volume), mountpoint(&plain.volume)];
    let files = fill_files(&roots[0], mib, 1);
    fill_files(&roots[1], mib, 1);
    plain.run_cli(&images[0]);
    wait_healthy(&plain.rt, &plain.name).await;

    let mut out = Samples::default();
    for round in 0..=ROUNDS {
        let target = (round + 1) % 2;
        for root in &roots {
            out.rewritten = rewrite_share(root, files, round);
        }
        sync_all();
        let mut ways = [Way::Sluice, Way::Cli, Way::Api];
        ways.rotate_left(round % 3);
        let (mut ok, mut down, mut took, mut cli, mut api) = (false, 0.0, 0.0, 0.0, 0.0);
        for way in ways {
            match way {
                Way::Sluice => {
                    let before = metrics.downtime.get_sample_sum();
                    let t = Instant::now();
                    store
                        .set_desired_digest(ws, Some(&d[target]), None, SystemClock.now())
                        .await
                        .expect("desire");
                    rec.converge_all().await.expect("converge");
                    took = t.elapsed().as_secs_f64();
                    down = metrics.downtime.get_sample_sum() - before;
                    ok = store
                        .latest_update(ws)
                        .await
                        .expect("latest")
                        .is_some_and(|u| u.phase == UpdatePhase::Succeeded);
                }
                Way::Cli => cli = plain.recreate_cli(&images[target]).await,
                Way::Api => api = plain.recreate_api(&images[target]).await,
            }
        }
        let label = if round == 0 {
            "warm-up".to_owned()
        } else {
            format!("round {round}")
        };
        println!(
            "  {mib} MiB {label} ({ways:?}): sluice {} outage {down:.3}s, update {took:.3}s; \
             docker CLI {cli:.3}s; engine API {api:.3}s",
            if ok { "ok" } else { "FAILED" }
        );
        if round > 0 && ok {
            out.sluice.push(down);
            out.duration.push(took);
            out.cli.push(cli);
            out.api.push(api);
        }
    }
    out
}

fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

#[tokio::main]
async fn main() {
    init_logs();
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let repo = format!("{registry}/bench-{}/app", std::process::id());
    let d = [fixture("v1", &repo), fixture("v2", &repo)];
    let images: Vec<String> = d.iter().map(|d| format!("{repo}@{d}")).collect();
    let _images = DockerLeftovers {
        containers: Vec::new(),
        volumes: Vec::new(),
        images: images.clone(),
    };
    for i in &images {
        docker(&["pull", "-q", i]);
    }
    let mut summary = Vec::new();
    for mib in sizes() {
        let s = bench_size(&repo, &d, mib).await;
        summary.push(format!(
            "volume {mib} MiB ({} of {ROUNDS} rounds succeeded; {} file(s) of 1 MiB rewritten \
             before each round):\n  outage stop->healthy: sluice {}, docker CLI recreate {}, \
             engine API recreate {}\n  ratio sluice/CLI {}, sluice/API {}\n  whole sluice \
             update (desire -> succeeded, pre-copy included) {}",
            s.sluice.len(),
            s.rewritten,
            show(&s.sluice, 3, "s"),
            show(&s.cli, 3, "s"),
            show(&s.api, 3, "s"),
            show(&ratios(&s.sluice, &s.cli), 2, "x"),
            show(&ratios(&s.sluice, &s.api), 2, "x"),
            show(&s.duration, 3, "s"),
        ));
        println!("{}", summary.last().expect("line"));
    }
    println!("\nsummary (goal: sluice outage <= 1.5x the raw recreate at every size)");
    for line in &summary {
        println!("{line}");
    }
}
