//! Graceful stop of a real `sluice run` in the middle of an update: SIGTERM never cuts a
//! step in half (a snapshot is complete, never a `.partial` left), the process exits 0,
//! an update that outlives `[update] shutdown_grace` is aborted, and the next start
//! converges from the journal with the volume intact.

use std::time::{Duration, Instant};

use sluice::domain::UpdatePhase;

use crate::reconciler::{Env, env};
use crate::support::Daemon;

/// Health timings short enough for tests (as in `reconciler.rs`).
const ENV: &[(&str, &str)] = &[
    ("SLUICE__UPDATE__MIN_HEALTHY_TIME", "1s"),
    ("SLUICE__UPDATE__HEALTHY_DEADLINE", "8s"),
    ("SLUICE__UPDATE__STOP_TIMEOUT", "5s"),
    ("SLUICE__UPDATE__RECONCILE_INTERVAL", "1s"),
    ("SLUICE__SNAPSHOTS__MIN_FREE_BYTES", "0"),
];

fn logged(d: &Daemon, what: &str, phase: &str) -> bool {
    let phase = format!("\"phase\":\"{phase}\"");
    d.logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(what) && l.contains(&phase))
}

fn logs(d: &Daemon) -> String {
    d.logs.lock().unwrap().join("\n")
}

/// Files in the snapshot directory whose name marks an unfinished write.
fn partial_files(e: &Env) -> Vec<String> {
    let dir = e.dir.path().join("snapshots");
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|f| f.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (≤ 90 s) until the newest journal row is terminal; returns its phase.
async fn wait_terminal(e: &Env) -> UpdatePhase {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = e.latest_phase().await
            && p.is_terminal()
        {
            return p;
        }
        assert!(Instant::now() < deadline, "the update never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sigterm_while_snapshotting_finishes_the_snapshot_and_exits_zero() {
    let mut e = env("sd-snap").await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let img = e.local_image(&d1);
    e.seed(&img);
    // 160 MiB that does not compress or hole-punch: the snapshot takes a while.
    e.on_volume(
        &img,
        "dd if=/dev/urandom of=/data/big bs=1048576 count=160 2>/dev/null",
    );
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge v1");
    let before = e.tree(&img);
    e.desire(&d2).await;

    let mut d = Daemon::start(e.dir.path(), ENV);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logged(&d, "update phase", "snapshotting") {
        assert!(
            Instant::now() < deadline,
            "never reached snapshotting: {}",
            logs(&d)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.signal("TERM");
    let cut_short = !logs(&d).contains("snapshot complete");
    let status = d
        .wait_timeout(Duration::from_secs(60))
        .expect("exited within shutdown_grace");
    assert!(status.success(), "exit status {status:?}: {}", logs(&d));
    assert!(
        cut_short,
        "the snapshot was already written when SIGTERM arrived: {}",
        logs(&d)
    );
    let all = logs(&d);
    assert!(all.contains("SIGTERM"), "{all}");
    assert!(
        all.contains("snapshot complete"),
        "the running snapshot was not finished: {all}"
    );

    // The step that was running when the stop came is whole: its rows are complete,
    // their files are in place, and no half-written file is left.
    let row = e
        .store
        .latest_update(e.ws.id)
        .await
        .expect("latest")
        .expect("a journal row");
    let snaps = e
        .store
        .snapshots_of_update(row.id)
        .await
        .expect("snapshots");
    assert!(!snaps.is_empty(), "no snapshot row for update {}", row.id);
    for s in &snaps {
        assert_eq!(
            s.state,
            sluice::domain::SnapshotState::Complete,
            "snapshot {} cut in half",
            s.id
        );
        assert!(std::path::Path::new(&s.path).exists(), "{} missing", s.path);
    }
    assert_eq!(partial_files(&e), Vec::<String>::new());
    drop(d);

    // The next start carries the update on from the journal; the data is intact.
    let _d = Daemon::start(e.dir.path(), ENV);
    assert_eq!(wait_terminal(&e).await, UpdatePhase::Succeeded);
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&d2));
    assert_eq!(e.http("/version"), "v2");
    assert_eq!(e.tree(&img), before, "data changed across the stop");
}

#[tokio::test]
async fn an_update_outliving_shutdown_grace_is_aborted_and_the_daemon_still_exits() {
    let mut e = env("sd-grace").await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge v1");
    let before = e.tree(&img);
    e.desire(&d2).await;

    // The saga hangs right after journaling `health_checking`: it never reaches another
    // journal point, so only the grace ends it.
    let grace = Duration::from_secs(2);
    let mut envs = ENV.to_vec();
    envs.push(("SLUICE__UPDATE__SHUTDOWN_GRACE", "2s"));
    envs.push(("SLUICE_TEST_PAUSE_AT", "health_checking"));
    let mut d = Daemon::start(e.dir.path(), &envs);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logged(&d, "test_pause", "health_checking") {
        assert!(Instant::now() < deadline, "never paused: {}", logs(&d));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_timeout(grace + Duration::from_secs(8))
        .expect("exited soon after shutdown_grace");
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status:?}: {}", logs(&d));
    assert!(
        took >= grace,
        "the update got no grace: exited after {took:?}"
    );
    let all = logs(&d);
    assert!(all.contains("aborting them"), "{all}");
    assert!(all.contains("sluice stopped"), "{all}");
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::HealthChecking));
    drop(d);

    let _d = Daemon::start(e.dir.path(), ENV);
    assert_eq!(wait_terminal(&e).await, UpdatePhase::Succeeded);
    assert_eq!(e.http("/version"), "v2");
    assert_eq!(e.tree(&img), before, "data changed across the stop");
}
