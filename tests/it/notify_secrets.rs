//! A webhook URL is a secret (Slack-style receivers carry the credential in the path): the
//! daemon's log of a failing delivery and `sluice config check` show the sink's host,
//! never its path or query.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sluice::store::{NewEvent, Store};

use crate::support::{Daemon, sluice_bin, unique};

/// A loopback port that nothing listens on: deliveries to it fail at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = l.local_addr().expect("local address").port();
    drop(l);
    port
}

fn logs_contain(daemon: &Daemon, text: &str) -> bool {
    daemon
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains(text))
}

async fn wait_for_log(daemon: &Daemon, text: &str) {
    for _ in 0..200 {
        if logs_contain(daemon, text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the daemon never logged {text:?}: {:?}",
        daemon.logs.lock().unwrap()
    );
}

#[tokio::test]
async fn a_failing_webhook_leaves_its_path_out_of_the_log_and_config_check() {
    let marker = unique("hook-secret");
    let port = closed_port();
    let host = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[notifications]\npoll_interval = \"50ms\"\nretries = 1\nbackoff = \"50ms\"\n\
             timeout = \"2s\"\n\n[[notifications.webhooks]]\n\
             url = \"http://{host}/services/{marker}?token={marker}\"\n"
        ),
    )
    .unwrap();

    let out = Command::new(sluice_bin())
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env_remove("SLUICE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice config check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("\"http://{host}/<redacted>\"")),
        "the sink's host is shown: {stdout}"
    );
    assert!(!stdout.contains(&marker), "{stdout}");

    let daemon = Daemon::start(&data, &[("SLUICE_CONFIG", config.to_str().unwrap())]);
    wait_for_log(&daemon, "notifications started").await;
    let store = Store::open(
        &format!("sqlite://{}", data.join("sluice.db").display()),
        1,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    store
        .append_event(
            &NewEvent {
                actor: "system".into(),
                subject: "workspace:acme".into(),
                action: "update_succeeded".into(),
                detail: json!({"to": "sha256:0"}),
                rollout_id: None,
                workspace: Some("acme".into()),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    wait_for_log(&daemon, "notification given up").await;
    store.close().await;

    let logs = daemon.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("notification failed; retrying"),
        "the failure is logged: {logs}"
    );
    assert!(
        logs.contains(&format!("0:{host}")),
        "the log names the sink by host: {logs}"
    );
    assert!(
        logs.contains("error sending request"),
        "the cause is kept: {logs}"
    );
    assert!(
        !logs.contains(&marker),
        "the webhook's path reached the log: {logs}"
    );
}
