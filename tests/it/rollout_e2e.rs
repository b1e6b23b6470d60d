//! A whole rollout on the real Docker engine and registry: the controller (manual clock,
//! so the soak is instant) drives the real reconciler.
//!
//! 1 canary + 3 production on v1; v2: apply canary → only the canary moves; soak;
//! promote → production one at a time; completed. `bad-health` v3: apply canary → the
//! canary rolls back with its data intact, the rollout aborts, the release is blocked,
//! production never leaves v2.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use sluice::clock::{Clock, ManualClock, SystemClock};
use sluice::config::{RolloutSettings, Settings};
use sluice::domain::{ApplyTier, Digest, RolloutState, Tier, WorkspaceName};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::Store;
use sluice::wake::Wakers;

use crate::support::{DockerCleanup, build_fixture, fixture_workspace, registry, run, unique};

pub struct Fleet {
    pub store: Store,
    pub rec: Reconciler<DockerRuntime>,
    pub ctl: Controller,
    pub ops: Ops,
    pub clock: ManualClock,
    pub image: String,
    pub names: Vec<String>,
}

impl Fleet {
    pub async fn actual(&self, name: &str) -> Option<Digest> {
        self.store
            .workspace(&WorkspaceName::parse(name).unwrap())
            .await
            .unwrap()
            .actual_digest
    }
    pub async fn in_flight(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in &self.names {
            let w = self
                .store
                .workspace(&WorkspaceName::parse(n).unwrap())
                .await
                .unwrap();
            if w.desired_digest != w.actual_digest {
                out.push(n.clone());
            }
        }
        out
    }
    pub async fn release(&self, d: &Digest) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(&self.image)
        .bind(d.as_str())
        .bind(sluice::clock::to_millis(self.clock.now()))
        .fetch_one(self.store.raw_pool())
        .await
        .unwrap()
    }
    pub async fn release_status(&self, id: i64) -> String {
        sqlx::query_scalar("SELECT status FROM releases WHERE id = $1")
            .bind(id)
            .fetch_one(self.store.raw_pool())
            .await
            .unwrap()
    }
    pub async fn state(&self, id: i64) -> RolloutState {
        self.ops.rollout(id).await.unwrap().status.state
    }
    /// One controller pass, then the reconciler runs what it asked for to the end.
    pub async fn step(&self) -> Vec<String> {
        self.ctl.tick().await.expect("tick");
        let moving = self.in_flight().await;
        self.rec.converge_all().await.expect("converge");
        moving
    }
}

/// Settings for a whole rollout on Docker in `dir` (short health gate and stop), and
/// its store.
pub async fn e2e_store(dir: &std::path::Path) -> (Settings, Store) {
    let mut s = Settings::default();
    s.data.dir = dir.to_path_buf();
    s.update.min_healthy_time = Duration::from_secs(1);
    s.update.healthy_deadline = Duration::from_secs(8);
    s.update.stop_timeout = Duration::from_secs(5);
    s.snapshots.min_free_bytes = 0;
    let store = sluice::startup::open_store(&s).await.unwrap();
    (s, store)
}

/// The real reconciler on the local engine, with `s`'s update settings.
pub async fn reconciler(s: &Settings, store: &Store) -> Reconciler<DockerRuntime> {
    let docker = connect(&s.docker).await.expect("docker");
    Reconciler::new(
        DockerRuntime::new(docker),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        ReconcilerConfig::from_settings(s),
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        Wakers::new(),
    )
}

pub fn exec(container: &str, script: &str) -> String {
    run(Command::new("docker").args(["exec", container, "sh", "-c", script]))
}

#[tokio::test]
async fn canary_soak_waves_then_a_bad_release_aborts_at_the_canary() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = e2e_store(dir.path()).await;
    let repo = format!("{}/{}/app", registry(), unique("e2e"));
    let image = format!("{repo}:stable");
    let mut cleanup = DockerCleanup::default();
    let v1 = build_fixture("good", "v1", &format!("{repo}:v1"));
    let v2 = build_fixture("good", "v2", &format!("{repo}:v2"));
    let v3 = build_fixture("bad-health", "v3", &format!("{repo}:v3"));
    for d in [&v1, &v2, &v3] {
        cleanup.images.push(format!("{repo}@{d}"));
    }
    let base = unique("ro").replace('_', "-");
    let names: Vec<String> = ["c", "p1", "p2", "p3"]
        .iter()
        .map(|n| format!("{base}-{n}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        let tier = if i == 0 {
            Tier::Canary
        } else {
            Tier::Production
        };
        let w = store
            .insert_workspace(
                &fixture_workspace(name, &image, tier, &mut cleanup),
                SystemClock.now(),
            )
            .await
            .unwrap();
        store
            .set_desired_digest(w.id, Some(&v1), None, SystemClock.now())
            .await
            .unwrap();
    }
    let rec = reconciler(&s, &store).await;
    rec.converge_all().await.unwrap();
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
    let rollout = RolloutSettings {
        batch: "1".to_owned(),
        max_parallel: 1,
        pause_between_waves: Duration::from_secs(30),
        ..RolloutSettings::default()
    };
    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: Arc::new(rollout),
        wakers: Wakers::new(),
        clock: Arc::new(clock.clone()),
        metrics: RolloutMetrics::unregistered(),
    });
    let f = Fleet {
        store: store.clone(),
        rec,
        ctl: Controller::new(ops.deps().clone(), Duration::from_secs(5)),
        ops,
        clock,
        image,
        names: names.clone(),
    };
    for n in &names {
        assert_eq!(f.actual(n).await, Some(v1.clone()), "{n} starts on v1");
    }

    // v2 to the canary only.
    let r2 = f.release(&v2).await;
    let id = f
        .ops
        .apply(r2, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    assert_eq!(f.step().await, [names[0].clone()]);
    f.step().await;
    assert_eq!(f.state(id).await, RolloutState::Soaking);
    assert_eq!(f.actual(&names[0]).await, Some(v2.clone()));
    for p in &names[1..] {
        assert_eq!(
            f.actual(p).await,
            Some(v1.clone()),
            "{p} stays on v1 during the soak"
        );
    }
    f.clock.advance(chrono::Duration::minutes(10));
    f.ops.promote(id, false, "ops").await.unwrap();

    // Production one at a time, 30 s apart.
    let mut order = Vec::new();
    for _ in 0..12 {
        let moved = f.step().await;
        assert!(moved.len() <= 1, "max_parallel 1: {moved:?}");
        order.extend(moved);
        if f.state(id).await == RolloutState::Completed {
            break;
        }
        f.clock.advance(chrono::Duration::seconds(30));
    }
    assert_eq!(order, names[1..]);
    assert_eq!(f.state(id).await, RolloutState::Completed);
    assert_eq!(f.release_status(r2).await, "completed");

    // A bad release stops at the canary, whose data survives the rollback.
    let canary = format!("sluice-{}", names[0]);
    exec(&canary, "echo precious > /data/marker");
    let r3 = f.release(&v3).await;
    let id3 = f
        .ops
        .apply(r3, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    f.step().await; // starts the canary; the reconciler rolls it back
    f.step().await; // records the outcome
    assert_eq!(f.state(id3).await, RolloutState::Aborted);
    assert_eq!(f.release_status(r3).await, "blocked");
    assert_eq!(
        f.actual(&names[0]).await,
        Some(v2.clone()),
        "the canary is back on v2"
    );
    assert_eq!(exec(&canary, "cat /data/marker").trim(), "precious");
    f.step().await;
    for p in &names[1..] {
        assert_eq!(f.actual(p).await, Some(v2.clone()), "{p} never leaves v2");
    }
    drop(cleanup);
}
