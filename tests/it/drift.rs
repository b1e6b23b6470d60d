//! Drift found on Docker's word: a managed container removed by hand is brought back at
//! once, not at the next periodic pass (set to an hour here).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api::TestApi;
use crate::rollout_api::add;
use crate::support::{run, unique};

async fn workspace(api: &TestApi, name: &str) -> Value {
    let (s, v) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn container_id(name: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.Id}} {{.State.Running}}",
            &format!("sluice-{name}"),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    match (it.next(), it.next()) {
        (Some(id), Some("true")) if out.status.success() => Some(id.to_owned()),
        _ => None,
    }
}

async fn wait_running(name: &str, not: Option<&str>, within: Duration) -> String {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(id) = container_id(name)
            && Some(id.as_str()) != not
        {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sluice-{name} not running (again) within {within:?}");
}

#[tokio::test]
async fn a_container_removed_by_hand_is_recreated_on_dockers_event() {
    let api = TestApi::start_with(|s| {
        s.update.reconcile_interval = Duration::from_secs(3600);
        s.update.min_healthy_time = Duration::from_secs(1);
    })
    .await;
    let name = unique("drift-ev");
    add(&api, &name, "production").await;
    let first = wait_running(&name, None, Duration::from_secs(60)).await;
    // Let the creation settle (healthy, recorded) before pulling the rug.
    for _ in 0..200 {
        if workspace(&api, &name).await["health"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(workspace(&api, &name).await["health"], "healthy");

    run(std::process::Command::new("docker").args(["rm", "-f", &format!("sluice-{name}")]));
    // Far below the hour-long periodic pass: only the event can wake the reconciler.
    let second = wait_running(&name, Some(&first), Duration::from_secs(30)).await;
    assert_ne!(first, second);
    let (s, events) = api
        .admin(Method::GET, "/api/v1/events?since=0&limit=200", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        events.as_array().unwrap().iter().any(|e| e["action"]
            == "drift_detected"
            && e["subject"] == format!("workspace:{name}")),
        "{events}"
    );
}

/// Replaces `sluice-<name>` by hand with a container carrying the same labels, volume
/// and image but other settings, as another tool that recreates containers would; no
/// reconciler pass can see the name empty (renames send no event sluice follows).
fn recreate_by_hand(name: &str, env: &str) -> String {
    let cname = format!("sluice-{name}");
    let before = crate::recreate_fidelity::inspect(&cname);
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        format!("{cname}-hand"),
    ];
    for (k, v) in before["Config"]["Labels"].as_object().unwrap() {
        args.extend(["-l".into(), format!("{k}={}", v.as_str().unwrap())]);
    }
    args.extend([
        "-v".into(),
        format!("{name}-data:/data"),
        "-e".into(),
        env.into(),
        "--memory".into(),
        "64m".into(),
        before["Config"]["Image"].as_str().unwrap().to_owned(),
    ]);
    run(std::process::Command::new("docker").args(&args));
    run(std::process::Command::new("docker").args(["rename", &cname, &format!("{cname}-old")]));
    run(std::process::Command::new("docker").args(["rename", &format!("{cname}-hand"), &cname]));
    // The old one's destroy event wakes the reconciler, which finds the new one.
    run(std::process::Command::new("docker").args(["rm", "-f", &format!("{cname}-old")]));
    container_id(name).expect("the hand-made container runs")
}

async fn drift_events(api: &TestApi, name: &str) -> Vec<Value> {
    let (_, events) = api
        .admin(Method::GET, "/api/v1/events?since=0&limit=1000", None)
        .await;
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "drift_detected"
                && e["subject"] == format!("workspace:{name}")
                && e["detail"]["reason"] == "configuration changed"
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_container_recreated_with_other_settings_is_reported_and_put_back() {
    let api = TestApi::start_with(|s| {
        s.update.reconcile_interval = Duration::from_secs(3600);
        s.update.min_healthy_time = Duration::from_secs(1);
    })
    .await;
    let name = unique("drift-cfg");
    add(&api, &name, "production").await;
    for _ in 0..300 {
        if workspace(&api, &name).await["health"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = container_id(&name).expect("running");
    run(std::process::Command::new("docker").args([
        "exec",
        &format!("sluice-{name}"),
        "sh",
        "-c",
        "echo kept > /data/tenant.txt",
    ]));
    let configured = crate::recreate_fidelity::configuration(&crate::recreate_fidelity::inspect(
        &format!("sluice-{name}"),
    ));

    // `drift: correct` (the default): reported, then put back to the spec.
    let hand = recreate_by_hand(&name, "K=changed");
    let fixed = wait_running(&name, Some(&hand), Duration::from_secs(60)).await;
    assert_ne!(fixed, first);
    let ev = drift_events(&api, &name).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        ev[0]["detail"]["fields"],
        serde_json::json!(["env", "resources"])
    );
    assert_eq!(ev[0]["detail"]["action"], "recreated");
    let deadline = Instant::now() + Duration::from_secs(60);
    while workspace(&api, &name).await["state"] != "running" {
        assert!(
            Instant::now() < deadline,
            "{}",
            workspace(&api, &name).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = crate::recreate_fidelity::configuration(&crate::recreate_fidelity::inspect(
        &format!("sluice-{name}"),
    ));
    let mut diff = Vec::new();
    crate::recreate_fidelity::differences("", &configured, &now, &mut diff);
    assert!(diff.is_empty(), "not put back:\n{}", diff.join("\n"));
    let data = run(std::process::Command::new("docker").args([
        "exec",
        &format!("sluice-{name}"),
        "cat",
        "/data/tenant.txt",
    ]));
    assert_eq!(data.trim(), "kept");

    // `drift: report`: reported, listed on the workspace, left as it is.
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{name}"),
            Some(serde_json::json!({"drift": "report"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let hand = recreate_by_hand(&name, "K=reported");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = workspace(&api, &name).await;
        if w["drift"] == serde_json::json!(["env", "resources"]) {
            break;
        }
        assert!(Instant::now() < deadline, "drift not listed: {w}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ev = drift_events(&api, &name).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["detail"]["action"], "reported");
    assert_eq!(
        container_id(&name).as_deref(),
        Some(hand.as_str()),
        "a reported drift is left alone"
    );
    let metrics = reqwest::get(api.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with("sluice_drift_total{")
            && l.contains("kind=\"configuration\"")
            && l.ends_with(" 2")),
        "{metrics}"
    );
}
