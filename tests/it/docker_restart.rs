//! A dockerd that restarts in the middle of an update (its socket refusing connections
//! for a few seconds, its containers stopped with it) is waited out: the saga resumes
//! and succeeds; nothing is rolled back or quarantined. Against a real second dockerd
//! the test starts itself (`second_engine.rs`), held at a fault point while it restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
use sluice::domain::{ImageRef, Tier, UpdateMode, UpdatePhase, WorkspaceName};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::NewWorkspace;

use crate::second_engine::SecondEngine;
use crate::support::{build_fixture, registry, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerd_restart_in_the_middle_of_an_update_is_waited_out() {
    // This test runs in a process of its own (nextest): the saga pauses right before it
    // stops the old container, the engine goes down, and only then may the step go on.
    // SAFETY: set before any other thread of this process reads the environment.
    unsafe { std::env::set_var("SLUICE_FAULT_AT", "stopping/stop.before") };
    let mut engine = tokio::task::block_in_place(SecondEngine::start);
    let repo = format!("{}/{}/app", registry(), unique("dr"));
    let v1 = build_fixture("good", "v1", &format!("{repo}:v1"));
    let v2 = build_fixture("good", "v2", &format!("{repo}:v2"));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Settings::default();
    s.data.dir = dir.path().to_path_buf();
    s.docker.host = Some(engine.unix_host());
    s.snapshots.min_free_bytes = 0;
    s.update.min_healthy_time = Duration::from_secs(1);
    s.update.healthy_deadline = Duration::from_secs(20);
    s.update.stop_timeout = Duration::from_secs(5);
    let store = sluice::startup::open_store(&s).await.expect("store");
    let name = unique("dr").replace('_', "-");
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                name: WorkspaceName::parse(&name).expect("name"),
                image: ImageRef::parse(&format!("{repo}:stable")).expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: WorkspaceSpec {
                    volumes: vec![VolumeMount::new(format!("{name}-data"), "/data")],
                    health: Some(HealthProbe {
                        http: Some(HttpProbe {
                            port: 8080,
                            path: "/health".into(),
                            status: Some(200),
                        }),
                    }),
                    labels: [("sluice.test".to_owned(), "1".to_owned())].into(),
                    restart: Some("unless-stopped".into()),
                    ..Default::default()
                },
            },
            SystemClock.now(),
        )
        .await
        .expect("workspace");
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.retry_backoff = Duration::from_millis(200);
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("the second engine")),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    );
    store
        .set_desired_digest(ws.id, Some(&v1), None, SystemClock.now())
        .await
        .unwrap();
    rec.converge_all().await.expect("converge v1");
    let latest = store.latest_update(ws.id).await.unwrap().unwrap();
    assert_eq!(latest.phase, UpdatePhase::Succeeded, "{:?}", latest.error);

    store
        .set_desired_digest(ws.id, Some(&v2), None, SystemClock.now())
        .await
        .unwrap();
    let saga = {
        let rec = rec.clone();
        tokio::spawn(async move { rec.converge_all().await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let u = store.latest_update(ws.id).await.unwrap().unwrap();
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

    let u = store.latest_update(ws.id).await.unwrap().unwrap();
    assert_eq!(u.to_digest, v2);
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    let w = store.workspace(&ws.name).await.unwrap();
    assert_eq!(w.actual_digest.as_ref(), Some(&v2));
    let failed = store.failed_digests(ws.id).await.unwrap();
    assert!(
        failed.is_empty(),
        "nothing was remembered as failed: {failed:?}"
    );
    drop(engine);
    for tag in ["v1", "v2"] {
        let _ = std::process::Command::new("docker")
            .args(["rmi", "-f", &format!("{repo}:{tag}")])
            .output();
    }
}
