//! What `synchronous = FULL` costs the update journal
//! (`cargo bench --profile dev --bench journal`): the time of journal phase writes
//! (`Store::set_update_phase`, one commit each, as the saga writes them) on a SQLite
//! file in WAL mode with `synchronous = FULL` (what sluice opens) against the same
//! writes with `synchronous = NORMAL`, measured in the same run, alternating rounds so
//! disk and machine noise hit both alike. The database lives next to the build (not a
//! tmpfs), where fsync costs what it costs on this disk.

use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::domain::spec::WorkspaceSpec;
use sluice::domain::{Digest, ImageRef, Tier, UpdateMode, UpdatePhase, WorkspaceName};
use sluice::store::{NewWorkspace, Store};

/// Phase writes per round.
const WRITES: usize = 200;
/// Rounds per mode, alternating FULL and NORMAL.
const ROUNDS: usize = 5;

const PHASES: [UpdatePhase; 6] = [
    UpdatePhase::Pulling,
    UpdatePhase::Stopping,
    UpdatePhase::Snapshotting,
    UpdatePhase::Recreating,
    UpdatePhase::Starting,
    UpdatePhase::HealthChecking,
];

/// A store with one workspace and one open journal row; returns the row id.
async fn journal(store: &Store) -> i64 {
    store.migrate().await.expect("migrate");
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse("bench").expect("name"),
                image: ImageRef::parse("127.0.0.1:5000/bench/app:stable").expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: WorkspaceSpec::default(),
            },
            SystemClock.now(),
        )
        .await
        .expect("workspace");
    store
        .open_update(
            ws.id,
            None,
            Some(&Digest::of_bytes(b"1")),
            &Digest::of_bytes(b"2"),
            SystemClock.now(),
        )
        .await
        .expect("journal row")
        .id
}

/// `WRITES` checked phase writes (compare-and-set on the phase left), cycling through
/// `PHASES`; `at` is the phase the row is in, kept across rounds.
async fn round(store: &Store, row: i64, at: &mut UpdatePhase) -> Duration {
    let started = Instant::now();
    for i in 0..WRITES {
        let to = PHASES[i % PHASES.len()];
        let to = if to == *at {
            PHASES[(i + 1) % PHASES.len()]
        } else {
            to
        };
        store
            .advance_update(row, *at, to, SystemClock.now())
            .await
            .expect("phase write");
        *at = to;
    }
    started.elapsed()
}

fn per_write_ms(total: Duration) -> f64 {
    total.as_secs_f64() * 1000.0 / (WRITES * ROUNDS) as f64
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
    let busy = Duration::from_secs(5);
    let full = Store::open(&url("full.db"), 1, busy)
        .await
        .expect("open FULL");
    let normal = Store::open_normal_sync_for_bench(&url("normal.db"), 1, busy)
        .await
        .expect("open NORMAL");
    let (full_row, normal_row) = (journal(&full).await, journal(&normal).await);
    // Warm-up: both files exist, their WAL is created, pages are cached.
    let (mut at_full, mut at_normal) = (UpdatePhase::Pulling, UpdatePhase::Pulling);
    round(&full, full_row, &mut at_full).await;
    round(&normal, normal_row, &mut at_normal).await;
    let (mut t_full, mut t_normal) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..ROUNDS {
        t_full += round(&full, full_row, &mut at_full).await;
        t_normal += round(&normal, normal_row, &mut at_normal).await;
    }
    let (f, n) = (per_write_ms(t_full), per_write_ms(t_normal));
    println!(
        "journal phase writes ({} per mode, {ROUNDS} alternating rounds)",
        WRITES * ROUNDS
    );
    println!("| measure | FULL | NORMAL | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one phase write (commit) | {f:.3} ms | {n:.3} ms | {:.2} |",
        f / n
    );
    println!(
        "| a whole successful update's journal (7 writes) | {:.2} ms | {:.2} ms | |",
        7.0 * f,
        7.0 * n
    );
    full.close().await;
    normal.close().await;
}
