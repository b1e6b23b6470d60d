//! Controller pass time on the two engines: an SQLite file against PostgreSQL, at 1,000
//! and 10,000 workspaces, in one process.
//!
//! The workload is `benches/controller.rs`'s (`support/controller_workload.rs`): one
//! production rollout, batch 25%, `max_parallel` 50, the bulk-SQL reconciler stand-in.
//! Each engine is opened as the daemon opens it: `Store::open` with `[database]`'s default
//! 8 connections and 5 s busy timeout; SQLite is a file in a fresh temp directory (WAL,
//! `synchronous = FULL`); PostgreSQL is a fresh database created from the admin URL in
//! `SLUICE_TEST_PG` (`eval "$(tests/env/postgres.sh start)"`), migrated, and the
//! controller writes through the leader's fenced pool after claiming the lease, as an
//! elected leader's loops do. The engines alternate over [`ROUNDS`] rounds (the first of
//! each round swaps every round) so that drift of the machine hits both alike; each run
//! gets a new database, and the PostgreSQL ones are dropped afterwards.
//!
//! Reported per run: passes, median and max pass over the whole rollout, idle pass (the
//! median of five before the rollout starts). Summarised per engine and size: the median
//! over the rounds of the runs' median pass and of their max pass, the worst max pass, the
//! median idle pass, and the PostgreSQL / SQLite ratio of the medians.
//! Without `SLUICE_TEST_PG`, or when it does not answer, the PostgreSQL rows say so.
//! Run: `eval "$(tests/env/postgres.sh start)"; cargo bench --bench controller_pg`.

use std::time::Duration;

use sluice::store::{Engine, TestDb};

#[path = "support/postgres.rs"]
mod pg;

#[path = "support/controller_workload.rs"]
mod workload;

/// Rounds per engine and size.
const ROUNDS: usize = 5;
const SIZES: [usize; 2] = [1_000, 10_000];
/// `[database] max_connections`'s default: the daemon's pool.
const CONNECTIONS: u32 = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Db {
    SqliteFile,
    Postgres,
}

impl Db {
    fn name(self) -> &'static str {
        match self {
            Self::SqliteFile => "sqlite-file",
            Self::Postgres => "postgres",
        }
    }
}

async fn on_sqlite(n: usize) -> workload::Passes {
    let db = TestDb::on(Engine::Sqlite).await;
    let store = db.store(CONNECTIONS).await;
    let passes = workload::run(&store, n).await;
    store.close().await;
    passes
}

async fn on_postgres(n: usize) -> workload::Passes {
    let db = TestDb::on(Engine::Postgres).await;
    let store = db.store(CONNECTIONS).await;
    // Claim the lease as an elected leader does; its loops write through the fenced pool,
    // whose every write runs the fencing trigger against the lease's epoch.
    let mut session = store.lease_session().await.expect("leadership session");
    assert!(session.try_lock().await.expect("leader lock"), "lock taken");
    let claim = session
        .claim("bench", Duration::from_secs(300))
        .await
        .expect("claim the lease");
    let fenced = store
        .fenced(claim.epoch, CONNECTIONS)
        .await
        .expect("fenced pool");
    let passes = workload::run(&fenced, n).await;
    fenced.close().await;
    session.close().await;
    store.close().await;
    pg::drop_database(db.url()).await;
    passes
}

struct Run {
    db: Db,
    n: usize,
    passes: workload::Passes,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let postgres = pg::reachable().await;
    if let Err(why) = &postgres {
        println!("postgres: NOT MEASURED: {why}");
    }
    let mut runs = Vec::new();
    println!("round  engine       workspaces  passes  median_pass  max_pass  idle_pass");
    for round in 0..ROUNDS {
        for n in SIZES {
            let mut order = [Db::SqliteFile, Db::Postgres];
            if round % 2 == 1 {
                order.reverse();
            }
            for db in order {
                let passes = match db {
                    Db::SqliteFile => on_sqlite(n).await,
                    Db::Postgres if postgres.is_ok() => on_postgres(n).await,
                    Db::Postgres => continue,
                };
                println!(
                    "{:>5}  {:<11}  {:>10}  {:>6}  {:>11.2?}  {:>8.2?}  {:>9.2?}",
                    round + 1,
                    db.name(),
                    n,
                    passes.passes,
                    passes.median,
                    passes.max,
                    passes.idle
                );
                runs.push(Run { db, n, passes });
            }
        }
    }
    println!();
    println!(
        "summary over {ROUNDS} rounds: median of the runs' median pass and of their max pass, \
         the worst max pass, median idle pass"
    );
    println!("engine       workspaces  median_pass  max_pass  worst_max  idle_pass");
    for n in SIZES {
        let mut by_engine = Vec::new();
        for db in [Db::SqliteFile, Db::Postgres] {
            let of: Vec<&workload::Passes> = runs
                .iter()
                .filter(|r| r.db == db && r.n == n)
                .map(|r| &r.passes)
                .collect();
            if of.is_empty() {
                println!(
                    "{:<11}  {:>10}  NOT MEASURED: {}",
                    db.name(),
                    n,
                    postgres.as_ref().err().map_or("no run", String::as_str)
                );
                continue;
            }
            let med = median(of.iter().map(|p| p.median).collect());
            let max = median(of.iter().map(|p| p.max).collect());
            let worst = of.iter().map(|p| p.max).max().unwrap_or_default();
            let idle = median(of.iter().map(|p| p.idle).collect());
            println!(
                "{:<11}  {:>10}  {:>11.2?}  {:>8.2?}  {:>9.2?}  {:>9.2?}",
                db.name(),
                n,
                med,
                max,
                worst,
                idle
            );
            by_engine.push((med, max, idle));
        }
        if let [(sm, sx, si), (pm, px, pi)] = by_engine[..] {
            println!(
                "postgres / sqlite-file at {n}: median pass x{:.2}, max pass x{:.2}, idle pass x{:.2}",
                ms(pm) / ms(sm),
                ms(px) / ms(sx),
                ms(pi) / ms(si)
            );
        } else {
            println!("postgres / sqlite-file at {n}: n/a (postgres not measured)");
        }
    }
}
