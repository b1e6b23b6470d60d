//! The controller benches' workload, shared by `benches/controller.rs` (in-memory SQLite)
//! and `benches/controller_pg.rs` (SQLite file against PostgreSQL): `n` production
//! workspaces of one image, one release, a `ManualClock`, and a production rollout with
//! batch 25%, `max_parallel` 50 and no pause between waves, driven to `completed` by
//! `Controller::tick`. Between passes a bulk-SQL stand-in for the reconciler journals every
//! in-flight workspace as `succeeded` and converges it. Only the passes are timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeZone;
use sluice::clock::{Clock, ManualClock, to_millis};
use sluice::config::RolloutSettings;
use sluice::domain::ApplyTier;
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::store::Store;
use sluice::wake::Wakers;

const IMAGE: &str = "127.0.0.1:5000/app:stable";

/// Idle passes timed before the rollout starts (the reported idle pass is their median).
const IDLE_PASSES: usize = 5;

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

/// The pass times of one rollout.
pub struct Passes {
    pub passes: usize,
    pub median: Duration,
    pub max: Duration,
    /// The median of [`IDLE_PASSES`] passes with nothing to do (no rollout yet).
    pub idle: Duration,
}

/// Seeds `n` workspaces and one release into `store` (migrated, empty) and runs the
/// rollout to its end, the controller working on `store`.
pub async fn run(store: &Store, n: usize) -> Passes {
    run_on_hosts(store, n, 1).await
}

/// The same with the workspaces spread round-robin over `hosts` Docker hosts
/// (`h000`, `h001`, …), each registered and heartbeating as its agent would (the
/// stand-in refreshes every heartbeat between passes). `hosts = 1` is one host `h000`.
pub async fn run_on_hosts(store: &Store, n: usize, hosts: usize) -> Passes {
    let pool = store.raw_pool();
    let start = chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    let mut tx = pool.begin().await.expect("begin");
    for h in 0..hosts {
        sqlx::query(
            "INSERT INTO hosts (name, token_sha256, agent_instance, agent_version, heartbeat_at, \
             created_at, updated_at) VALUES ($1, 'x', $1, 'bench', $2, 0, 0)",
        )
        .bind(format!("h{h:03}"))
        .bind(to_millis(start))
        .execute(&mut *tx)
        .await
        .expect("insert host");
    }
    for i in 0..n {
        sqlx::query(
            "INSERT INTO workspaces (name, image, update_tier, desired_digest, actual_digest, state, health, \
             host, created_at, updated_at) VALUES ($1, $2, 'production', $3, $3, 'running', 'healthy', $4, 0, 0)",
        )
        .bind(format!("ws{i:05}"))
        .bind(IMAGE)
        .bind(digest(1))
        .bind(format!("h{:03}", i % hosts.max(1)))
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    // Planner statistics of the workspaces, as a database that has run for a while has
    // them (PostgreSQL's autovacuum analyzes a table soon after a bulk change; the bench
    // has just inserted them all). Those of a new rollout's targets sluice refreshes
    // itself (`store::dialect::analyze_after_bulk_insert`). SQLite plans without any.
    if store.engine() == sluice::store::Engine::Postgres {
        sqlx::query("ANALYZE workspaces")
            .execute(pool)
            .await
            .expect("analyze");
    }
    let clock = ManualClock::new(start);
    let rel: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, 0, 0) RETURNING id",
    )
    .bind(IMAGE)
    .bind(digest(2))
    .fetch_one(pool)
    .await
    .expect("release");
    let settings = RolloutSettings {
        batch: "25%".to_owned(),
        max_parallel: 50,
        pause_between_waves: Duration::ZERO,
        ..RolloutSettings::default()
    };
    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: Arc::new(settings),
        wakers: Wakers::new(),
        clock: Arc::new(clock.clone()),
        metrics: RolloutMetrics::unregistered(),
    });
    let ctl = Controller::new(ops.deps().clone(), Duration::from_secs(5));
    let mut idle = Vec::with_capacity(IDLE_PASSES);
    for _ in 0..IDLE_PASSES {
        let t = Instant::now();
        ctl.tick().await.expect("idle tick");
        idle.push(t.elapsed());
    }
    idle.sort();
    let id = ops
        .apply(rel, ApplyTier::Production, true, "bench")
        .await
        .expect("apply")
        .rollout
        .id;
    let mut times = Vec::new();
    loop {
        let t = Instant::now();
        ctl.tick().await.expect("tick");
        times.push(t.elapsed());
        let state: String = sqlx::query_scalar("SELECT state FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("state");
        if state == "completed" || times.len() > 10_000 {
            break;
        }
        // Reconciler stand-in: everything in flight succeeds.
        let now = to_millis(clock.now());
        sqlx::query(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, phase, started_at, updated_at, finished_at) \
             SELECT id, desired_rollout_id, actual_digest, desired_digest, 'succeeded', $1, $1, $1 FROM workspaces WHERE desired_digest <> actual_digest",
        )
        .bind(now)
        .execute(pool)
        .await
        .expect("journal");
        sqlx::query("UPDATE workspaces SET actual_digest = desired_digest WHERE desired_digest <> actual_digest")
            .execute(pool)
            .await
            .expect("converge");
        // The agents' heartbeats.
        sqlx::query("UPDATE hosts SET heartbeat_at = $1")
            .bind(now)
            .execute(pool)
            .await
            .expect("heartbeat");
        clock.advance(chrono::Duration::seconds(1));
    }
    let passes = times.len();
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT state FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .expect("state"),
        "completed",
        "the rollout ran to its end"
    );
    let max = times.iter().copied().max().unwrap_or_default();
    times.sort();
    Passes {
        passes,
        median: times[passes / 2],
        max,
        idle: idle[IDLE_PASSES / 2],
    }
}
