//! Controller pass time and resident memory at 1,000 and 10,000 workspaces.
//!
//! In-memory SQLite (one connection), a `ManualClock`, and the same reconciler stand-in as
//! the tests (bulk SQL: every in-flight workspace converges between passes). The rollout
//! is `production` with batch 25%, max_parallel 50. Reported: median and max pass time
//! over the whole rollout, the idle pass (nothing to do), and RSS growth; the 10,000 row
//! is also given as a ratio to the 1,000 baseline measured in the same run.
//! Run: `cargo bench --bench controller`.

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

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Result {
    n: usize,
    passes: usize,
    median: Duration,
    max: Duration,
    idle: Duration,
    rss_growth_kib: u64,
}

async fn run(n: usize) -> Result {
    let rss0 = rss_kib();
    let store = Store::open("sqlite::memory:", 1, Duration::from_secs(5))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let pool = store.raw_pool();
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..n {
        sqlx::query(
            "INSERT INTO workspaces (name, image, update_tier, desired_digest, actual_digest, state, health, \
             created_at, updated_at) VALUES ($1, $2, 'production', $3, $3, 'running', 'healthy', 0, 0)",
        )
        .bind(format!("ws{i:05}"))
        .bind(IMAGE)
        .bind(digest(1))
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
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
    let t = Instant::now();
    ctl.tick().await.expect("idle tick");
    let idle = t.elapsed();
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
        clock.advance(chrono::Duration::seconds(1));
    }
    let passes = times.len();
    let max = times.iter().copied().max().unwrap_or_default();
    times.sort();
    Result {
        n,
        passes,
        median: times[passes / 2],
        max,
        idle,
        rss_growth_kib: rss_kib().saturating_sub(rss0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("workspaces  passes  median_pass  max_pass  idle_pass  rss_growth");
    let mut rows = Vec::new();
    for n in [1_000, 10_000] {
        let r = run(n).await;
        println!(
            "{:>10}  {:>6}  {:>11.2?}  {:>8.2?}  {:>9.2?}  {:>7} KiB",
            r.n, r.passes, r.median, r.max, r.idle, r.rss_growth_kib
        );
        rows.push(r);
    }
    let (a, b) = (&rows[0], &rows[1]);
    println!(
        "10,000 vs 1,000: median pass x{:.1}, max pass x{:.1}",
        b.median.as_secs_f64() / a.median.as_secs_f64(),
        b.max.as_secs_f64() / a.max.as_secs_f64()
    );
}
