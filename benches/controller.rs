//! Controller pass time and resident memory at 1,000 and 10,000 workspaces.
//!
//! In-memory SQLite (one connection), a `ManualClock`, and the same reconciler stand-in as
//! the tests (bulk SQL: every in-flight workspace converges between passes). The rollout
//! is `production` with batch 25%, max_parallel 50. Reported: median and max pass time
//! over the whole rollout, the idle pass (nothing to do; median of five), and RSS growth;
//! the 10,000 row is also given as a ratio to the 1,000 baseline measured in the same run.
//! The workload is `support/controller_workload.rs`, shared with `controller_pg.rs`.
//! Run: `cargo bench --bench controller`.

use std::time::Duration;

use sluice::store::Store;

#[path = "support/controller_workload.rs"]
mod workload;

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
    passes: workload::Passes,
    rss_growth_kib: u64,
}

async fn run(n: usize) -> Result {
    let rss0 = rss_kib();
    let store = Store::open("sqlite::memory:", 1, Duration::from_secs(5))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    let passes = workload::run(&store, n).await;
    Result {
        n,
        passes,
        rss_growth_kib: rss_kib().saturating_sub(rss0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("workspaces  passes  median_pass  max_pass  idle_pass  rss_growth");
    let mut rows = Vec::new();
    for n in [1_000, 10_000] {
        let r = run(n).await;
        let p = &r.passes;
        println!(
            "{:>10}  {:>6}  {:>11.2?}  {:>8.2?}  {:>9.2?}  {:>7} KiB",
            r.n, p.passes, p.median, p.max, p.idle, r.rss_growth_kib
        );
        rows.push(r);
    }
    let (a, b) = (&rows[0].passes, &rows[1].passes);
    println!(
        "10,000 vs 1,000: median pass x{:.1}, max pass x{:.1}",
        b.median.as_secs_f64() / a.median.as_secs_f64(),
        b.max.as_secs_f64() / a.max.as_secs_f64()
    );
}
