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
