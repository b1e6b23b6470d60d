//! The rollout controller against a real SQLite file and a [`ManualClock`], with a small
//! in-test stand-in for the reconciler that writes exactly what the cross-loop contract
//! says the reconciler writes (a `workspace_updates` row per attempt; on success
//! `actual_digest`; on failure a `failed_digests` row and `desired_digest` reset).

#![allow(dead_code)] // reason: each test uses a different subset

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use sluice::clock::{Clock, ManualClock};
use sluice::config::RolloutSettings;
use sluice::domain::{Digest, ImageRef, RolloutState, Tier, UpdateMode, WorkspaceName};
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::rollout::record::replay_log;
use sluice::store::{NewWorkspace, Store};
use sluice::wake::Wakers;

pub const IMAGE: &str = "127.0.0.1:5000/app:stable";

pub fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

pub struct Env {
    pub _dir: sluice::store::TestDb,
    pub store: Store,
    pub clock: ManualClock,
    pub ctl: Controller,
    /// The operator operations over the controller's store, clock and metrics.
    pub ops: Ops,
    pub settings: RolloutSettings,
}

pub fn settings() -> RolloutSettings {
    RolloutSettings {
        soak: Duration::from_secs(600),
        batch: "2".to_owned(),
        max_parallel: 1,
        pause_between_waves: Duration::from_secs(30),
        max_failures: 0,
        max_failure_ratio: 0.0,
        ..RolloutSettings::default()
    }
}

impl Env {
    pub async fn new(settings: RolloutSettings) -> Env {
        let dir = sluice::store::TestDb::new().await;
        let store = dir.store(4).await;
        let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
        let (ctl, ops) = controller(&store, &clock, &settings);
        Env {
            _dir: dir,
            store,
            clock,
            ctl,
            ops,
            settings,
        }
    }

    /// A fresh controller on the same database: what a daemon restart gives.
    pub fn restart(&mut self) {
        (self.ctl, self.ops) = controller(&self.store, &self.clock, &self.settings);
    }

    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    pub async fn tick(&self) {
        self.ctl.tick().await.expect("tick");
    }

    /// A running, healthy workspace on `digest`.
    pub async fn workspace(&self, name: &str, tier: Tier, digest: &Digest) -> i64 {
        let w = self
            .store
            .insert_workspace(
                &NewWorkspace {
                    host: sluice::domain::HostName::local(),
                    name: WorkspaceName::parse(name).unwrap(),
                    image: ImageRef::parse(IMAGE).unwrap(),
                    update_tier: tier,
                    update_mode: UpdateMode::Auto,
                    maintenance_window: None,
                    spec: Default::default(),
                },
                self.clock.now(),
            )
            .await
            .unwrap();
        self.sql(&format!(
            "UPDATE workspaces SET desired_digest = '{digest}', actual_digest = '{digest}', \
             state = 'running', health = 'healthy' WHERE id = {}",
            w.id
        ))
        .await;
        w.id
    }

    /// What the watcher writes for a new digest.
    pub async fn release(&self, digest: &Digest) -> i64 {
        let at = sluice::clock::to_millis(self.clock.now());
        sqlx::query_scalar(
            "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(IMAGE)
        .bind(digest.as_str())
        .bind(at)
        .fetch_one(self.store.raw_pool())
        .await
        .unwrap()
    }

    pub async fn sql(&self, q: &str) {
        sqlx::query(sqlx::AssertSqlSafe(q.to_owned()))
            .execute(self.store.raw_pool())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    pub async fn scalar_s(&self, q: &str) -> Option<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(q.to_owned()))
            .fetch_one(self.store.raw_pool())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    pub async fn desired(&self, name: &str) -> Digest {
        let s = self
            .scalar_s(&format!(
                "SELECT desired_digest FROM workspaces WHERE name = '{name}'"
            ))
            .await;
        Digest::parse(&s.unwrap()).unwrap()
    }

    /// Names of workspaces whose desired digest differs from the actual one (in flight).
    pub async fn in_flight(&self) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT name FROM workspaces WHERE desired_digest <> actual_digest ORDER BY name",
        )
        .fetch_all(self.store.raw_pool())
        .await
        .unwrap()
    }

    pub async fn release_status(&self, id: i64) -> String {
        self.scalar_s(&format!("SELECT status FROM releases WHERE id = {id}"))
            .await
            .unwrap()
    }

    pub async fn target_status(&self, rollout: i64, name: &str) -> String {
        self.scalar_s(&format!(
            "SELECT t.status FROM rollout_targets t JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.rollout_id = {rollout} AND w.name = '{name}'"
        ))
        .await
        .unwrap()
    }

    pub async fn state(&self, rollout: i64) -> RolloutState {
        self.ops().rollout(rollout).await.unwrap().status.state
    }

    /// The reconciler stand-in: converges every in-flight workspace; those named in
    /// `fail` fail their health check and are rolled back.
    pub async fn reconcile(&self, fail: &[&str]) {
        let now = sluice::clock::to_millis(self.clock.now());
        let rows: Vec<(i64, String, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, name, actual_digest, desired_digest, desired_rollout_id FROM workspaces \
             WHERE desired_digest <> actual_digest AND NOT EXISTS (SELECT 1 FROM failed_digests f \
             WHERE f.workspace_id = workspaces.id AND f.digest = workspaces.desired_digest) ORDER BY name",
        )
        .fetch_all(self.store.raw_pool())
        .await
        .unwrap();
        for (id, name, actual, desired, rollout) in rows {
            let ok = !fail.contains(&name.as_str());
            let phase = if ok { "succeeded" } else { "rolled_back" };
            let rollout = rollout.map_or("NULL".to_owned(), |r| r.to_string());
            self.sql(&format!(
                "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, phase, \
                 started_at, updated_at, finished_at) VALUES ({id}, {rollout}, '{actual}', '{desired}', \
                 '{phase}', {now}, {now}, {now})"
            ))
            .await;
            if ok {
                self.sql(&format!(
                    "UPDATE workspaces SET actual_digest = desired_digest, health = 'healthy', \
                     state = 'running' WHERE id = {id}"
                ))
                .await;
            } else {
                self.sql(&format!(
                    "INSERT INTO failed_digests (workspace_id, digest, failed_at, reason) \
                     VALUES ({id}, '{desired}', {now}, 'health check failed')"
                ))
                .await;
                self.sql(&format!(
                    "UPDATE workspaces SET desired_digest = actual_digest WHERE id = {id}"
                ))
                .await;
            }
        }
    }

    /// Replaying the rollout's audit log gives its stored status.
    pub async fn assert_replay_matches(&self, rollout: i64) {
        let log = self.store.rollout_transition_log(rollout).await.unwrap();
        let replayed = replay_log(&log).expect("the stored log replays");
        let stored = self.ops().rollout(rollout).await.unwrap().status;
        assert_eq!(replayed, stored);
    }

    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }
}

fn controller(store: &Store, clock: &ManualClock, settings: &RolloutSettings) -> (Controller, Ops) {
    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: Arc::new(settings.clone()),
        wakers: Wakers::new(),
        clock: Arc::new(clock.clone()),
        metrics: RolloutMetrics::unregistered(),
    });
    (
        Controller::new(ops.deps().clone(), Duration::from_secs(5)),
        ops,
    )
}
