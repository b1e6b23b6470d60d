//! Many Docker hosts at scale: 10,000 workspaces on 100 hosts × 100, against the same
//! 10,000 on one host, measured in the same run with the engines and layouts alternating.
//!
//! 1. **Controller**: the workload of `benches/controller.rs` (`support/controller_workload.rs`:
//!    one production rollout, batch 25%, `max_parallel` 50, a bulk-SQL reconciler stand-in,
//!    a `ManualClock` advanced one second per pass) spread over 100 registered, heartbeating
//!    hosts, against one host. Reported per layout: passes (= the rollout's length in
//!    simulated seconds), median and max pass, RSS growth; and the ratio to the one-host
//!    baseline. On in-memory SQLite and, when `SLUICE_TEST_PG` answers, on PostgreSQL
//!    (the engine a fleet of many hosts runs on).
//! 2. **An agent's reads** (PostgreSQL): one reconcile pass's store reads of one agent —
//!    its workspaces, converge targets, open journal rows, retirements and live snapshots —
//!    for a host holding 100 of the 10,000 workspaces, against the single host holding all
//!    10,000; median of [`READ_ROUNDS`] alternating rounds, and the plan of the workspace
//!    read, which must use the `workspaces_host` index rather than read other hosts' rows.
//!
//! Run: `eval "$(tests/env/postgres.sh start)"; cargo bench --bench hosts`.

use std::time::{Duration, Instant};

use sluice::domain::HostName;
use sluice::store::{Engine, Store, TestDb};

#[path = "support/postgres.rs"]
mod pg;

#[path = "support/controller_workload.rs"]
mod workload;

const N: usize = 10_000;
const ROUNDS: usize = 3;
const READ_ROUNDS: usize = 21;

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

struct Run {
    passes: workload::Passes,
    rss_kib: u64,
}

async fn controller_run(engine: Option<Engine>, hosts: usize) -> Run {
    let rss0 = rss_kib();
    let (db, store) = match engine {
        None => {
            let store = Store::open("sqlite::memory:", 1, Duration::from_secs(5))
                .await
                .expect("open");
            store.migrate().await.expect("migrate");
            (None, store)
        }
        Some(e) => {
            let db = TestDb::on(e).await;
            let store = db.store(8).await;
            (Some(db), store)
        }
    };
    let passes = if hosts == 1 {
        workload::run(&store, N).await
    } else {
        workload::run_on_hosts(&store, N, hosts).await
    };
    store.close().await;
    if let Some(db) = db
        && db.engine() == Engine::Postgres
    {
        pg::drop_database(db.url()).await;
    }
    Run {
        passes,
        rss_kib: rss_kib().saturating_sub(rss0),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn controller(engine: Option<Engine>, label: &str) {
    println!("\n== controller pass, {N} workspaces, {label} ({ROUNDS} alternating rounds)");
    println!("layout            passes  median_pass  max_pass  idle_pass  rss_growth");
    let mut med = [Vec::new(), Vec::new()];
    let mut max = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let order: [(usize, usize); 2] = if round % 2 == 0 {
            [(0, 1), (1, 100)]
        } else {
            [(1, 100), (0, 1)]
        };
        for (slot, hosts) in order {
            let r = controller_run(engine, hosts).await;
            let p = &r.passes;
            println!(
                "{:<16}  {:>6}  {:>11.2?}  {:>8.2?}  {:>9.2?}  {:>7} KiB",
                format!("{hosts} host(s)"),
                p.passes,
                p.median,
                p.max,
                p.idle,
                r.rss_kib
            );
            med[slot].push(p.median);
            max[slot].push(p.max);
        }
    }
    let (m1, m100) = (median(med[0].clone()), median(med[1].clone()));
    let (x1, x100) = (median(max[0].clone()), median(max[1].clone()));
    println!(
        "100 hosts vs 1 host: median pass {m100:.2?} vs {m1:.2?} (x{:.2}), max pass {x100:.2?} vs {x1:.2?} (x{:.2})",
        m100.as_secs_f64() / m1.as_secs_f64(),
        x100.as_secs_f64() / x1.as_secs_f64()
    );
}

/// Seeds `N` idle workspaces over `hosts` hosts (no rollout), as the agents see them.
async fn seed(store: &Store, hosts: usize) {
    let pool = store.raw_pool();
    let mut tx = pool.begin().await.expect("begin");
    for i in 0..N {
        sqlx::query(
            "INSERT INTO workspaces (name, image, update_tier, desired_digest, actual_digest, state, \
             health, host, created_at, updated_at) VALUES ($1, 'r/app:stable', 'production', $2, $2, \
             'running', 'healthy', $3, 0, 0)",
        )
        .bind(format!("ws{i:05}"))
        .bind(format!("sha256:{}", "11".repeat(32)))
        .bind(format!("h{:03}", i % hosts))
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    sqlx::query("ANALYZE workspaces")
        .execute(pool)
        .await
        .expect("analyze");
}

/// One agent pass's reads for `host`.
async fn agent_reads(store: &Store, host: &HostName) -> Duration {
    let t = Instant::now();
    let own = store.workspaces_on(host).await.expect("workspaces");
    let targets = store.converge_targets(host).await.expect("targets");
    let (open, _) = store.open_updates_checked(host).await.expect("journal");
    let gone = store.pending_retirements(host).await.expect("retirements");
    let snaps = store.live_snapshots(host).await.expect("snapshots");
    let took = t.elapsed();
    assert!(own.iter().all(|w| &w.host == host), "only its own rows");
    assert!(targets.is_empty() && open.is_empty() && gone.is_empty() && snaps.is_empty());
    took
}

async fn reads() {
    println!(
        "\n== one agent pass's store reads, PostgreSQL, {N} workspaces ({READ_ROUNDS} alternating rounds)"
    );
    let spread = TestDb::on(Engine::Postgres).await;
    let spread_store = spread.store(4).await;
    seed(&spread_store, 100).await;
    let single = TestDb::on(Engine::Postgres).await;
    let single_store = single.store(4).await;
    seed(&single_store, 1).await;
    let h0 = HostName::parse("h000").expect("host name");
    let mut a = Vec::new();
    let mut b = Vec::new();
    for round in 0..READ_ROUNDS {
        if round % 2 == 0 {
            a.push(agent_reads(&spread_store, &h0).await);
            b.push(agent_reads(&single_store, &h0).await);
        } else {
            b.push(agent_reads(&single_store, &h0).await);
            a.push(agent_reads(&spread_store, &h0).await);
        }
    }
    let (ma, mb) = (median(a), median(b));
    println!(
        "host with 100 of 10,000: {ma:.2?}; one host with all 10,000: {mb:.2?} (x{:.3})",
        ma.as_secs_f64() / mb.as_secs_f64()
    );
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM workspaces WHERE host = 'h000' AND deleted_at IS NULL ORDER BY name",
    )
    .fetch_all(spread_store.raw_pool())
    .await
    .expect("explain");
    println!(
        "plan of an agent's workspace read:\n  {}",
        plan.join("\n  ")
    );
    for (db, store) in [(spread, spread_store), (single, single_store)] {
        store.close().await;
        pg::drop_database(db.url()).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    controller(None, "in-memory SQLite").await;
    match pg::reachable().await {
        Ok(()) => {
            controller(Some(Engine::Postgres), "PostgreSQL").await;
            reads().await;
        }
        Err(why) => println!("\nPostgreSQL not measured: {why}"),
    }
}
