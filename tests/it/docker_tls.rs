//! A remote Docker engine over TLS, against a real `dockerd --tlsverify` on a loopback
//! port: sluice reaches it with the configured client certificate and not without one,
//! and a `tcp://` host without TLS (and without the opt-out) is refused before the
//! daemon starts, naming the key.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::config::DockerSettings;
use sluice::runtime::{ContainerRuntime, DockerRuntime, connect};

use crate::second_engine::SecondEngine;
use crate::support::{Daemon, sluice_bin, unique};

fn tls_settings(engine: &SecondEngine) -> DockerSettings {
    let tls = engine.tls();
    DockerSettings {
        host: Some(engine.tcp_host()),
        tls_ca: Some(tls.ca.clone()),
        tls_cert: Some(tls.cert.clone()),
        tls_key: Some(tls.key.clone()),
        timeout: Duration::from_secs(10),
        ..DockerSettings::default()
    }
}

async fn readyz(daemon: &Daemon) -> (u16, serde_json::Value) {
    let r = reqwest::get(daemon.url("/readyz"))
        .await
        .expect("GET /readyz");
    let code = r.status().as_u16();
    (code, r.json().await.expect("readyz JSON"))
}

#[tokio::test]
async fn a_tls_engine_is_reached_with_the_client_certificate_and_only_with_it() {
    let engine = SecondEngine::start_with_tls();
    let settings = tls_settings(&engine);

    let docker = connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}\n{}", engine.log()));
    let runtime = DockerRuntime::new(docker);
    let volume = unique("sluice-tls-vol");
    let labels = BTreeMap::from([("sluice.test".to_owned(), "1".to_owned())]);
    assert!(runtime.volume_create(&volume, &labels).await.unwrap());
    assert_eq!(runtime.volume_inspect(&volume).await.unwrap(), Some(labels));
    let on = |cmd: &mut Command| {
        cmd.args(["volume", "inspect", &volume])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(on(&mut engine.cli()), "made on the TLS engine");
    assert!(
        !on(Command::new("docker").env_remove("DOCKER_HOST")),
        "not on the test environment's engine"
    );
    runtime.volume_remove(&volume).await.unwrap();
    assert_eq!(runtime.volume_inspect(&volume).await.unwrap(), None);

    // Plain HTTP to the TLS port (the opt-out, no client certificate): no engine.
    let plain = DockerSettings {
        host: Some(engine.tcp_host()),
        allow_insecure_tcp: true,
        timeout: Duration::from_secs(10),
        ..DockerSettings::default()
    };
    assert!(connect(&plain).await.is_err(), "plain HTTP was answered");
    // A client certificate from another CA: refused by `--tlsverify`.
    let (cert, key) = engine.tls().untrusted_client();
    let untrusted = DockerSettings {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..settings.clone()
    };
    assert!(
        connect(&untrusted).await.is_err(),
        "a certificate of another CA was accepted"
    );

    // The daemon end to end: ready over TLS; with the opt-out, a warning and no Docker.
    let dir = tempfile::tempdir().unwrap();
    let tls = engine.tls();
    let (ca, cert, key) = (
        tls.ca.to_string_lossy().into_owned(),
        tls.cert.to_string_lossy().into_owned(),
        tls.key.to_string_lossy().into_owned(),
    );
    let host = engine.tcp_host();
    let daemon = Daemon::start(
        &dir.path().join("tls"),
        &[
            ("SLUICE__DOCKER__HOST", &host),
            ("SLUICE__DOCKER__TLS_CA", &ca),
            ("SLUICE__DOCKER__TLS_CERT", &cert),
            ("SLUICE__DOCKER__TLS_KEY", &key),
        ],
    );
    let (code, body) = readyz(&daemon).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["docker"]["ok"], true, "{body}");
    drop(daemon);

    let insecure = Daemon::start(
        &dir.path().join("plain"),
        &[
            ("SLUICE__DOCKER__HOST", &host),
            ("SLUICE__DOCKER__ALLOW_INSECURE_TCP", "true"),
        ],
    );
    let (code, body) = readyz(&insecure).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["docker"]["ok"], false, "{body}");
    let logs = insecure.logs.lock().unwrap().join("\n");
    assert!(
        logs.lines()
            .any(|l| l.contains("\"WARN\"") && l.contains("allow_insecure_tcp")),
        "the opt-out is logged as a warning: {logs}"
    );
}

/// Runs `sluice ARGS` with `env`; fails the test if it is still running after 20 s.
fn sluice_exits(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sluice");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("sluice output");
            return (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("sluice {args:?} kept running: it was not refused");
}

#[test]
fn a_tcp_host_without_tls_or_the_opt_out_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let env = [
        ("SLUICE__DOCKER__HOST", "tcp://127.0.0.1:2375"),
        ("SLUICE__DATA__DIR", data.as_str()),
        ("SLUICE__API__LISTEN", "127.0.0.1:0"),
    ];
    for args in [&["run"][..], &["config", "check"]] {
        let (ok, stderr) = sluice_exits(args, &env);
        assert!(!ok, "{args:?} accepted plain tcp: {stderr}");
        assert!(stderr.contains("docker.tls_ca"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("allow_insecure_tcp"),
            "{args:?} says how to opt out: {stderr}"
        );
    }
}
