//! `sluice run` as a process: it answers its probes and stops cleanly on a signal.

use std::time::{Duration, Instant};

use crate::support::Daemon;

#[tokio::test]
async fn run_answers_healthz_and_exits_zero_within_five_seconds_of_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    let r = client
        .get(daemon.url("/healthz"))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert!(
        dir.path().join("sluice.db").exists(),
        "store opened in the data dir"
    );

    let metrics = client
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_build_info{version=\""),
        "{metrics}"
    );

    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(5))
        .expect("exited within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(asked.elapsed() < Duration::from_secs(5));
    let logs = daemon.logs.lock().unwrap().join("\n");
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[tokio::test]
async fn sigint_stops_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    daemon.signal("INT");
    let status = daemon.wait_timeout(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
}

#[tokio::test]
async fn readyz_reports_store_and_docker() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let r = reqwest::get(daemon.url("/readyz")).await.unwrap();
    let code = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["store"]["ok"], true, "{body}");
    assert_eq!(
        body["docker"]["ok"], true,
        "the test environment has a Docker engine: {body}"
    );
    assert_eq!(code, 200);
    // How snapshots are taken here: the incremental store, volumes reached directly
    // where possible, and no reflinks on the test machine's ext4/overlay data dir.
    assert_eq!(body["snapshots"]["store"], "incremental", "{body}");
    assert_eq!(body["snapshots"]["access"], "auto", "{body}");
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir.path())
        .output()
        .unwrap();
    let fs = String::from_utf8_lossy(&fs.stdout).trim().to_owned();
    if fs.starts_with("ext") || fs == "tmpfs" || fs == "overlayfs" {
        assert_eq!(body["snapshots"]["reflink"], false, "{fs}: {body}");
    } else {
        assert!(body["snapshots"]["reflink"].is_boolean(), "{body}");
    }

    // A Docker host that does not answer makes the daemon not ready, but still alive.
    let dir2 = tempfile::tempdir().unwrap();
    let sock = dir2.path().join("nothing.sock");
    let host = format!("unix://{}", sock.display());
    let down = Daemon::start(dir2.path(), &[("SLUICE__DOCKER__HOST", &host)]);
    let r = reqwest::get(down.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["docker"]["ok"], false, "{body}");
    assert_eq!(
        reqwest::get(down.url("/healthz")).await.unwrap().status(),
        200
    );
}

/// Forwards every connection on `listener` to the real Docker socket: "Docker comes up".
async fn proxy_to_docker(listener: tokio::net::UnixListener) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut docker) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut docker).await;
            }
        });
    }
}

#[tokio::test]
async fn docker_coming_up_after_the_daemon_makes_it_ready_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let daemon = Daemon::start(dir.path(), &[("SLUICE__DOCKER__HOST", &host)]);
    let r = reqwest::get(daemon.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), 503, "no Docker yet");

    let listener = tokio::net::UnixListener::bind(&sock).expect("bind the stand-in socket");
    let proxy = tokio::spawn(proxy_to_docker(listener));
    let mut last = String::new();
    for _ in 0..150 {
        let r = reqwest::get(daemon.url("/readyz")).await.unwrap();
        if r.status() == 200 {
            let logs = daemon.logs.lock().unwrap().join("\n");
            assert!(logs.contains("starting the reconciler"), "{logs}");
            proxy.abort();
            return;
        }
        last = r.text().await.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the daemon never noticed Docker answering: {last}");
}
