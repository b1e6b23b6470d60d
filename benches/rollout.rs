//! Rollout benchmark against the real Docker engine and the test registry
//! (`eval "$(tests/env/up.sh)"; cargo bench --profile dev --bench rollout`): the wall
//! time of a full production rollout of 20 real containers at `max_parallel` 1, 4 and 8,
//! with the controller and the reconciler running as the daemon runs them (two loops
//! woken through shared `Wakers`), against the sum of the 20 workspaces' individual
//! update times measured in the same run (each workspace updated alone, one after the
//! other, by the reconciler). Short health timings (`min_healthy_time` 500 ms).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::{RolloutSettings, Settings, StrategyKind};
use sluice::domain::{ApplyTier, Digest, RolloutState, WorkspaceName};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::Store;
use sluice::wake::Wakers;
use tokio_util::sync::CancellationToken;

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{fixture, fixture_spec, insert_workspace};

const WORKSPACES: usize = 20;

async fn release(store: &Store, image: &str, d: &Digest) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(image)
    .bind(d.as_str())
    .bind(sluice::clock::to_millis(SystemClock.now()))
    .fetch_one(store.raw_pool())
    .await
    .expect("release")
}

/// Applies `digest` to every workspace at `max_parallel` and returns the wall time until
/// the rollout is `completed`, with both loops running.
async fn rollout(
    store: &Store,
    rec: &Reconciler<DockerRuntime>,
    wakers: &Wakers,
    image: &str,
    digest: &Digest,
    max_parallel: u32,
) -> f64 {
    let settings = RolloutSettings {
        strategy: StrategyKind::Rolling,
        batch: WORKSPACES.to_string(),
        max_parallel,
        pause_between_waves: Duration::ZERO,
        tick_interval: Duration::from_millis(200),
        ..RolloutSettings::default()
    };
    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: Arc::new(settings),
        wakers: wakers.clone(),
        clock: Arc::new(SystemClock),
        metrics: RolloutMetrics::unregistered(),
    });
    let ctl = Controller::new(ops.deps().clone(), Duration::from_millis(200));
    let stop = CancellationToken::new();
    let r = release(store, image, digest).await;
    let t0 = Instant::now();
    let id = ops
        .apply(r, ApplyTier::Production, true, "bench")
        .await
        .expect("apply")
        .rollout
        .id;
    let loops = [
        tokio::spawn(rec.clone().run(stop.clone())),
        tokio::spawn({
            let driver = sluice::rollout::controller_task::ControllerTask::driver(
                ctl,
                sluice::metrics::TaskMetrics::unregistered(),
            );
            let stop = stop.clone();
            async move {
                driver.run(stop).await;
            }
        }),
    ];
    loop {
        let state = ops.rollout(id).await.expect("rollout").status.state;
        if state == RolloutState::Completed {
            break;
        }
        assert!(
            !matches!(state, RolloutState::Aborted | RolloutState::RolledBack),
            "rollout ended {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = t0.elapsed().as_secs_f64();
    stop.cancel();
    for l in loops {
        let _ = l.await;
    }
    wall
}

#[tokio::main]
async fn main() {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let pid = std::process::id();
    let repo = format!("{registry}/bench-rollout-{pid}/app");
    let image = format!("{repo}:stable");
    let versions = ["v1", "v2", "v3", "v4", "v5"];
    let digests: Vec<Digest> = versions.iter().map(|v| fixture(v, &repo)).collect();

    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Settings::default();
    s.data.dir = dir.path().to_path_buf();
    s.update.min_healthy_time = Duration::from_millis(500);
    s.update.healthy_deadline = Duration::from_secs(30);
    s.update.stop_timeout = Duration::from_secs(10);
    s.update.max_parallel = 8;
    s.update.reconcile_interval = Duration::from_secs(1);
    s.snapshots.min_free_bytes = 0;
    let store = sluice::startup::open_store(&s).await.expect("store");
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for i in 0..WORKSPACES {
        let name = format!("bro-{pid}-{i:02}");
        let w =
            insert_workspace(&store, &name, &image, fixture_spec(&format!("{name}-data"))).await;
        ids.push(w.id);
        names.push(name);
    }
    let wakers = Wakers::new();
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.health_poll = Duration::from_millis(50);
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        wakers.clone(),
    );
    // Everyone on v1 (not measured).
    for id in &ids {
        store
            .set_desired_digest(*id, Some(&digests[0]), None, SystemClock.now())
            .await
            .expect("desire");
    }
    rec.converge_all().await.expect("converge v1");

    // Baseline: each workspace updated alone to v2, one after the other.
    let mut individual = Vec::new();
    for id in &ids {
        store
            .set_desired_digest(*id, Some(&digests[1]), None, SystemClock.now())
            .await
            .expect("desire");
        let t = Instant::now();
        rec.converge_all().await.expect("converge");
        individual.push(t.elapsed().as_secs_f64());
    }
    let sum: f64 = individual.iter().sum();
    println!(
        "individual updates: {WORKSPACES} × mean {:.3} s (min {:.3}, max {:.3}), sum {sum:.2} s",
        sum / WORKSPACES as f64,
        individual.iter().copied().fold(f64::INFINITY, f64::min),
        individual.iter().copied().fold(0.0, f64::max),
    );
    println!("| max_parallel | wall time | ÷ sum of individual updates |");
    println!("|---:|---:|---:|");
    for (mp, d) in [1u32, 4, 8].into_iter().zip(&digests[2..]) {
        let wall = rollout(&store, &rec, &wakers, &image, d, mp).await;
        for n in &names {
            let w = store
                .workspace(&WorkspaceName::parse(n).expect("name"))
                .await
                .expect("workspace");
            assert_eq!(w.actual_digest.as_ref(), Some(d), "every workspace moved");
        }
        println!("| {mp} | {wall:.2} s | {:.2} |", wall / sum);
    }

    for n in &names {
        let _ = Command::new("docker")
            .args(["rm", "-f", &format!("sluice-{n}")])
            .output();
        let _ = Command::new("docker")
            .args(["volume", "rm", &format!("{n}-data")])
            .output();
    }
    for d in &digests {
        let _ = Command::new("docker")
            .args(["rmi", &format!("{repo}@{d}")])
            .output();
    }
}
