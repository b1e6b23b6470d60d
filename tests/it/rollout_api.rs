//! Release and rollout endpoints end to end: an in-process daemon (controller and
//! reconciler included) on port 0, real fixture images, and the CLI's `rollout watch`.

use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{READ_TOKEN, TestApi, fixture_image};
use crate::support::{registry, sluice_bin, unique};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// The digest of the good fixture's v2 (same repository as the tracked `good:v1`).
pub fn good_v2() -> String {
    std::env::var("SLUICE_FIXTURE_GOOD_V2").unwrap_or_else(|_| {
        crate::support::build_fixture(
            "good",
            "v2",
            &format!("{}/sluice-fixtures/good:v2", registry()),
        )
        .to_string()
    })
}

/// Adds a workspace on the good fixture with a data volume and an HTTP health probe.
pub async fn add(api: &TestApi, name: &str, tier: &str) {
    let body = json!({ "name": name, "image": fixture_image(), "update_tier": tier,
                       "volumes": [{"name": format!("{name}-data"), "mount": "/data"}],
                       "health": {"http": {"port": 8080, "path": "/health"}} });
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

async fn queued_release(api: &TestApi, digest: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, status, updated_at) VALUES ($1, $2, 0, 'queued', 0) RETURNING id",
    )
    .bind(fixture_image())
    .bind(digest)
    .fetch_one(api.store.raw_pool())
    .await
    .unwrap()
}

async fn operator_events(api: &TestApi) -> usize {
    api.store
        .events(0, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.actor == "ops-alice")
        .count()
}

#[tokio::test]
async fn apply_is_idempotent_all_needs_force_and_operations_are_audited() {
    let api = TestApi::start().await;
    let (canary, prod) = (unique("ra-canary"), unique("ra-prod"));
    add(&api, &canary, "canary").await;
    add(&api, &prod, "production").await;
    let release = queued_release(&api, &good_v2()).await;
    let apply = format!("/api/v1/releases/{release}/apply");

    let (s, _) = api
        .call(
            Method::POST,
            &apply,
            Some(READ_TOKEN),
            Some(json!({"tier": "canary"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api
        .admin(Method::POST, &apply, Some(json!({"tier": "canery"})))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_tier"),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().starts_with("tier:"),
        "{v}"
    );
    let (s, v) = api
        .admin(Method::POST, &apply, Some(json!({"tier": "all"})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "`all` without force: {v}");
    let (s, _) = api
        .admin(
            Method::POST,
            "/api/v1/releases/999999/apply",
            Some(json!({"tier": "canary"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let before = operator_events(&api).await;
    let (s, first) = api
        .admin(Method::POST, &apply, Some(json!({"tier": "canary"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let id = first["id"].as_i64().unwrap();
    assert_eq!(first["release_id"], release);
    assert_eq!(first["no_op"], false);
    let targets = first["workspaces"].as_array().unwrap();
    assert!(
        targets
            .iter()
            .any(|t| t["name"] == canary.as_str() && t["tier"] == "canary"),
        "{first}"
    );
    assert!(
        operator_events(&api).await > before,
        "apply is audited with the token name"
    );

    let (s, again) = api
        .admin(Method::POST, &apply, Some(json!({"tier": "canary"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["id"], id, "the same rollout");
    assert_eq!(again["no_op"], true);

    let (s, list) = api
        .call(Method::GET, "/api/v1/rollouts", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.as_array().unwrap().iter().any(|r| r["id"] == id));
    let (s, shown) = api
        .admin(Method::GET, &format!("/api/v1/rollouts/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(shown["digest"], good_v2());
    assert!(shown["counts"].is_object());
    for p in ["/api/v1/rollouts/999999", "/api/v1/rollouts/x"] {
        assert_eq!(
            api.admin(Method::GET, p, None).await.0,
            StatusCode::NOT_FOUND,
            "{p}"
        );
    }
    assert_eq!(
        api.admin(Method::POST, "/api/v1/rollouts/999999/pause", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    for verb in ["pause", "resume"] {
        let before = operator_events(&api).await;
        let (s, v) = api
            .admin(Method::POST, &format!("/api/v1/rollouts/{id}/{verb}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{verb}: {v}");
        assert!(operator_events(&api).await > before, "{verb} is audited");
    }
    let before = operator_events(&api).await;
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/rollouts/{id}/abort"),
            Some(json!({"reason": "api test"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "aborted");
    assert!(operator_events(&api).await > before, "abort is audited");
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/rollouts/{id}/promote"),
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "an aborted rollout cannot be promoted: {v}"
    );
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/rollouts/{id}/pause"),
            Some(json!({"x": 1})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "unknown_field"),
        "{v}"
    );

    // `sluice rollout watch` on an aborted rollout ends at once, non-zero.
    let out = tokio::task::spawn_blocking({
        let url = api.url("");
        move || {
            Command::new(sluice_bin())
                .args(["--server", &url, "rollout", "watch", &id.to_string()])
                .env_remove("SLUICE_CONFIG")
                .env("SLUICE_TOKEN", READ_TOKEN)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("state: aborted") && stdout.contains("canary"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("rollout {id} ended `aborted`"))
    );
}

#[tokio::test]
async fn a_rollout_watched_to_completion_exits_zero_while_a_webhook_fails() {
    // A sink that answers 500 to everything: retried, and the rollout does not wait for it.
    let failing = crate::notify::Receiver {
        plan: std::sync::Arc::new(std::sync::Mutex::new(
            std::iter::repeat_n(500, 1000).collect(),
        )),
        ..Default::default()
    };
    let hook = crate::notify::start_receiver(failing.clone()).await;
    let api = TestApi::start_with(|s| {
        s.notifications.webhooks = vec![sluice::config::WebhookSink {
            url: sluice::config::WebhookUrl::parse(&hook).expect("a receiver URL"),
            events: vec!["rollout.state_changed".into()],
            secret: Some(sluice::config::Secret::new("k")),
            format: None,
        }];
        s.notifications.poll_interval = Duration::from_millis(50);
        s.notifications.backoff = Duration::from_millis(50);
        s.notifications.retries = 3;
        s.rollout.soak = Duration::from_secs(1);
        s.rollout.pause_between_waves = Duration::from_millis(100);
        s.update.min_healthy_time = Duration::from_secs(1);
        s.update.healthy_deadline = Duration::from_secs(60);
    })
    .await;
    let (canary, prod) = (unique("rw-canary"), unique("rw-prod"));
    add(&api, &canary, "canary").await;
    add(&api, &prod, "production").await;
    let release = queued_release(&api, &good_v2()).await;
    let (s, r) = api
        .admin(
            Method::POST,
            &format!("/api/v1/releases/{release}/apply"),
            Some(json!({"tier": "canary"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let id = r["id"].as_i64().unwrap();
    // Promote once the canary soaked (409 until then).
    let mut promoted = false;
    for _ in 0..600 {
        let (s, v) = api
            .admin(
                Method::POST,
                &format!("/api/v1/rollouts/{id}/promote"),
                None,
            )
            .await;
        if s == StatusCode::OK {
            promoted = true;
            break;
        }
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(promoted, "the canary never finished soaking");
    let out = tokio::task::spawn_blocking({
        let api_url = api.url("");
        move || {
            Command::new(sluice_bin())
                .args([
                    "--server",
                    &api_url,
                    "rollout",
                    "watch",
                    &id.to_string(),
                    "--interval",
                    "0.2",
                ])
                .env_remove("SLUICE_CONFIG")
                .env("SLUICE_TOKEN", READ_TOKEN)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("state: completed"), "{stdout}");
    assert!(
        stdout.contains(&format!("production  [{}]   1/1", "#".repeat(24))),
        "{stdout}"
    );
    let (_, w) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{prod}"), None)
        .await;
    assert_eq!(w["actual_digest"], good_v2(), "{w}");
}

#[tokio::test]
async fn update_now_checks_its_input() {
    let api = TestApi::start().await;
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces/nosuch/update", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let name = unique("un");
    add(&api, &name, "production").await;
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{name}/update"),
            Some(json!({"digest": "sha256:nothex"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_digest"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("digest:")
    );
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{name}/update"),
            Some(json!({"digest": good_v2()})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["desired_digest"], good_v2());
    let events = api.store.events(0, 1000).await.unwrap();
    assert!(
        events.iter().any(|e| e.actor == "ops-alice"
            && e.subject == format!("workspace:{name}")
            && e.action != "workspace.created"),
        "update-now is audited: {events:?}"
    );
}
