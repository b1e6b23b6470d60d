//! Zero-downtime proof under load: Debian's nginx on loopback is the reverse proxy in
//! front of a workspace, fed by sluice's `file` router (an upstream file written
//! atomically, then `nginx -s reload`). A steady stream of requests (100 a second,
//! bounded) goes through nginx during an update. With start-first none fails and no client
//! waits half a second;
//! the same update with stop-first is measured too, and its failures are reported (not
//! asserted: they are the outage start-first removes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice::config::{RouterKind, RouterSettings};
use sluice::domain::spec::UpdateOrder;

use crate::reconciler::env_in_repo;

#[path = "../../benches/support/nginx.rs"]
mod nginx;

/// One update of a workspace behind nginx under load; (sent, failed, versions seen).
async fn update_under_load(order: UpdateOrder) -> nginx::Traffic {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    let tag = if order == UpdateOrder::StartFirst {
        "sfl"
    } else {
        "sfs"
    };
    let conf = dir.path().join("nginx.conf").display().to_string();
    let reload = vec![
        "nginx".into(),
        "-c".into(),
        conf,
        "-s".into(),
        "reload".into(),
    ];
    let file = up.join("{workspace}.conf");
    let mut e = env_in_repo(
        tag,
        None,
        move |s, _| {
            s.update_order = Some(order);
            for v in &mut s.volumes {
                v.shared = true;
            }
        },
        move |s| {
            s.router = RouterSettings {
                kind: RouterKind::File,
                file: Some(file),
                reload,
                ..RouterSettings::default()
            };
        },
    )
    .await;
    let proxy = nginx::start(dir.path(), e.ws.name.as_str());
    e.cleanup.containers.push(format!("{}.next", e.container()));
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    let url = format!("http://127.0.0.1:{}/version", proxy.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(&url)
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "nginx never reached v1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| proxy.settle());
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(nginx::load(url, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.desire(&v2).await;
    e.rec.converge_all().await.unwrap();
    // A stop-first update routes to its new container as it ends; the load goes on
    // until nginx has taken that in.
    tokio::task::block_in_place(|| proxy.settle());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let out = traffic.await.unwrap();
    assert_eq!(e.workspace().await.actual_digest, Some(v2));
    if out.failed > 0 {
        println!(
            "{order:?}: failed requests (ms after the load began): {:?}",
            out.failures
        );
        println!("nginx error log:\n{}", proxy.error_log());
    }
    drop(proxy);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_start_first_loses_no_request_and_stop_first_is_counted() {
    let t = update_under_load(UpdateOrder::StartFirst).await;
    println!(
        "start-first behind nginx: {} of {} requests failed, longest gap {:?}; versions {:?}",
        t.failed, t.sent, t.longest_gap, t.seen
    );
    assert!(t.sent >= 100, "the load ran through the update: {}", t.sent);
    assert_eq!(
        t.failed, 0,
        "start-first: no request fails: {:?}",
        t.failures
    );
    assert!(
        t.longest_gap < Duration::from_millis(500),
        "start-first: no client waits half a second: {:?}",
        t.longest_gap
    );
    assert_eq!(t.seen, ["v1", "v2"], "v1 served until v2 took over");

    let t = update_under_load(UpdateOrder::StopFirst).await;
    println!(
        "stop-first behind nginx: {} of {} requests failed, longest gap {:?}; versions {:?}",
        t.failed, t.sent, t.longest_gap, t.seen
    );
    assert!(t.seen.last().is_some_and(|v| v == "v2"), "{:?}", t.seen);
}
