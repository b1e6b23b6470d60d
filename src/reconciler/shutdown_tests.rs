//! Stopping the reconciler (module docs, "Stopping"): running sagas get
//! `shutdown_grace`, sagas not started yet never start, and what outlives the grace is
//! aborted and resumed from its journaled phase at the next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{T, digest, pinned, setup};
use super::*;
use crate::clock::{Clock, SystemClock};
use crate::domain::WorkspaceName;
use crate::domain::spec::{VolumeMount, WorkspaceSpec};
use crate::domain::{ImageRef, Tier, UpdateMode, UpdatePhase};
use crate::store::NewWorkspace;
use crate::store::Store;
use tokio::sync::Semaphore;

/// Adjusts the (not yet shared) reconciler of `t`.
fn tune(t: &mut T, f: impl FnOnce(&mut Inner<crate::runtime::FakeRuntime>)) {
    let inner = Arc::get_mut(&mut t.rec.inner).expect("the reconciler is not shared yet");
    f(inner);
}

/// Waits (≤ 10 s) until the newest journal row of `ws` is at `phase`.
async fn wait_phase(store: &Store, ws: i64, phase: UpdatePhase) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(u) = store.latest_update(ws).await.unwrap()
            && u.phase == phase
        {
            return;
        }
        assert!(Instant::now() < deadline, "never reached {phase}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_saga_running_past_shutdown_grace_is_aborted_and_resumed_at_the_next_start() {
    let mut t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    t.desire(1).await;
    let grace = Duration::from_millis(500);
    // The saga hangs right after journaling `health_checking`: it never reaches another
    // journal point by itself.
    tune(&mut t, |i| {
        i.pause_at = Some("health_checking".to_owned());
        i.cfg.shutdown_grace = grace;
    });
    t.store
        .set_desired_digest(t.ws.id, Some(&digest(2)), None, SystemClock.now())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let run = tokio::spawn(t.rec.clone().run(stop.clone()));
    wait_phase(&t.store, t.ws.id, UpdatePhase::HealthChecking).await;
    // The row says health_checking a moment before the saga reaches the pause: a stop in
    // between would end it at that journal point, with no grace needed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.rec.inner.parked.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the saga never reached its pause"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let asked = Instant::now();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the loop ended after the grace")
        .expect("the loop did not panic");
    let took = asked.elapsed();
    assert!(
        took >= grace,
        "the running saga got no grace: aborted after {took:?}"
    );
    assert!(t.rec.inner.stopping());
    // Aborted, not failed: the row waits at its phase, the workspace's slot is free.
    assert_eq!(t.latest().await.phase, UpdatePhase::HealthChecking);
    assert!(t.rec.inner.busy.lock().unwrap().is_empty());

    // The next start resumes it from the journal.
    tune(&mut t, |i| {
        i.pause_at = None;
        i.stop = CancellationToken::new();
    });
    assert_eq!(t.rec.resume_all().await.unwrap(), 1);
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    assert_eq!(t.ws().await.actual_digest, Some(digest(2)));
}

#[tokio::test]
async fn a_stop_lets_the_running_saga_finish_and_starts_no_waiting_one() {
    let mut t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    t.desire(1).await;
    let other = t
        .store
        .insert_workspace(
            &NewWorkspace {
                host: crate::domain::HostName::local(),
                name: WorkspaceName::parse("globex").unwrap(),
                image: ImageRef::parse("127.0.0.1:5000/fx/app:stable").unwrap(),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: WorkspaceSpec {
                    volumes: vec![VolumeMount::new("globex-data", "/data")],
                    ..Default::default()
                },
            },
            SystemClock.now(),
        )
        .await
        .unwrap();
    let grace = Duration::from_secs(30);
    // One saga at a time, each holding its slot ≥ 1 s in the health gate.
    tune(&mut t, |i| {
        i.sem = Arc::new(Semaphore::new(1));
        i.cfg.min_healthy_time = Duration::from_secs(1);
        i.cfg.healthy_deadline = Duration::from_secs(10);
        i.cfg.shutdown_grace = grace;
    });
    for ws in [t.ws.id, other.id] {
        t.store
            .set_desired_digest(ws, Some(&digest(2)), None, SystemClock.now())
            .await
            .unwrap();
    }
    let stop = CancellationToken::new();
    let run = tokio::spawn(t.rec.clone().run(stop.clone()));
    // Whichever workspace got the slot is in its health gate; the other waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = loop {
        let mut at_gate = None;
        for ws in [t.ws.id, other.id] {
            if let Some(u) = t.store.latest_update(ws).await.unwrap()
                && u.phase == UpdatePhase::HealthChecking
            {
                at_gate = Some(ws);
            }
        }
        if let Some(ws) = at_gate {
            break ws;
        }
        assert!(Instant::now() < deadline, "no saga reached its health gate");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let waiting = if running == t.ws.id {
        other.id
    } else {
        t.ws.id
    };

    let asked = Instant::now();
    stop.cancel();
    tokio::time::timeout(grace, run)
        .await
        .expect("the loop ended within the grace")
        .expect("the loop did not panic");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the loop waited for more than its running saga"
    );
    // The running step was not cut: the saga reached a journal point of its own.
    let u = t.store.latest_update(running).await.unwrap().unwrap();
    assert!(
        matches!(
            u.phase,
            UpdatePhase::HealthChecking | UpdatePhase::Succeeded
        ),
        "{:?}",
        u.phase
    );
    if u.phase == UpdatePhase::Succeeded {
        assert!(
            t.rt.inspect(&format!(
                "sluice-{}",
                t.store.workspace_name(running).await.unwrap()
            ))
            .await
            .unwrap()
            .unwrap()
            .running
        );
    }
    // The waiting one never opened a journal row, so nothing of it was touched.
    assert!(
        t.store.latest_update(waiting).await.unwrap().is_none(),
        "a saga started after the stop"
    );
}
