//! A dockerd that restarts in the middle of an update (its socket refusing connections
//! for a few seconds, its containers stopped with it) is waited out: the saga resumes
//! and succeeds; nothing is rolled back or quarantined. Against a real second dockerd
//! the test starts itself (`second_engine.rs`), held at a fault point while it restarts.

use std::time::{Duration, Instant};

use sluice::domain::UpdatePhase;

use crate::reconciler::env_with;
use crate::second_engine::SecondEngine;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerd_restart_in_the_middle_of_an_update_is_waited_out() {
    // This test runs in a process of its own (nextest): the saga pauses right before it
    // stops the old container, the engine goes down, and only then may the step go on.
    // SAFETY: set before any other thread of this process reads the environment.
    unsafe { std::env::set_var("SLUICE_FAULT_AT", "stopping/stop.before") };
    let mut engine = tokio::task::block_in_place(SecondEngine::start);
    let host = engine.unix_host();
    // The usual reconciler test workspace (a volume at /data, an HTTP probe), on the
    // second engine.
    let mut e = env_with(
        "dr",
        |_, _| {},
        |s| {
            s.docker.host = Some(host);
            s.update.healthy_deadline = Duration::from_secs(20);
        },
    )
    .await;
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    e.desire(&v1).await;
    e.rec.converge_all().await.expect("converge v1");
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));

    e.desire(&v2).await;
    let saga = {
        let rec = e.rec.clone();
        tokio::spawn(async move { rec.converge_all().await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        if u.to_digest == v2 && u.phase == UpdatePhase::Stopping {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the update never reached stopping"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The step has looked at the container and waits at the fault point; dockerd goes
    // down, the step is let go (its stop meets a refused connection), and dockerd comes
    // back three seconds later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restart = tokio::task::spawn_blocking(move || {
        engine.restart(Duration::from_secs(3));
        engine
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sluice::fault::release();
    let engine = restart.await.expect("restart");
    saga.await.expect("saga task").expect("converge v2");

    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.to_digest, v2);
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&v2));
    let failed = e.store.failed_digests(e.ws.id).await.unwrap();
    assert!(
        failed.is_empty(),
        "nothing was remembered as failed: {failed:?}"
    );
    drop(e);
    drop(engine);
}
