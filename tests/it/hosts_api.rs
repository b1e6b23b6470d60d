//! `/api/v1/hosts` and workspace placement through the API, on the run's store engine
//! (SQLite, and PostgreSQL with `SLUICE_TEST_ENGINE=postgres`): hosts are registered
//! once with a token shown once, cordoned, drained and uncordoned with an audit entry
//! each; a workspace goes to a registered host, must name one when several are
//! registered, and is never moved. Every refusal names the field and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::clock::{Clock, SystemClock};
use sluice::domain::HostName;

use crate::api::{READ_TOKEN, TestApi, fixture_image};
use crate::support::unique;

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// The API's view of the audit trail for one host.
async fn host_events(api: &TestApi, host: &str) -> Vec<(String, String)> {
    let (s, v) = api
        .admin(Method::GET, "/api/v1/events?limit=500", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"] == format!("host:{host}"))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_host_is_added_once_and_its_token_is_shown_once() {
    let api = TestApi::start().await;
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/hosts",
            Some(json!({ "name": "web-1.dc", "labels": { "zone": "b" } })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("slh_") && token.len() > 40, "{token}");
    assert_eq!(v["host"]["name"], "web-1.dc");
    assert_eq!(v["host"]["state"], "unseen", "no agent heartbeated yet");
    assert_eq!(v["host"]["labels"]["zone"], "b");
    // Stored only as its hash: no read shows the token again.
    let (s, list) = api
        .call(Method::GET, "/api/v1/hosts", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains(&token), "{list}");
    let stored = api
        .store
        .host_token_sha256(&HostName::parse("web-1.dc").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, sluice::api::hosts::token_sha256(&token));
    assert_ne!(stored, token);

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/hosts",
            Some(json!({ "name": "web-1.dc" })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "already_exists");
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/hosts",
            Some(json!({ "name": "Web_1" })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("name"), "{v}");
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/hosts",
            Some(json!({ "name": "web-2", "labels": { "": "x" } })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).starts_with("labels:"), "{v}");
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/hosts",
            Some(READ_TOKEN),
            Some(json!({ "name": "web-3" })),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The refusals registered nothing.
    let names: Vec<String> = api
        .store
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name.to_string())
        .filter(|n| n != "local")
        .collect();
    assert_eq!(names, ["web-1.dc"]);
    assert_eq!(
        host_events(&api, "web-1.dc").await,
        [("host.added".to_owned(), "ops-alice".to_owned())]
    );
}

#[tokio::test]
async fn a_workspace_is_placed_on_a_registered_host_and_never_moved() {
    let api = TestApi::start().await;
    api.store
        .ensure_builtin_host(&HostName::local(), SystemClock.now())
        .await
        .unwrap();
    for h in ["a", "b"] {
        let (s, v) = api
            .admin(Method::POST, "/api/v1/hosts", Some(json!({ "name": h })))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let name = unique("placed");
    let body = |host: Option<&str>| {
        let mut b = json!({ "name": name, "image": fixture_image() });
        if let Some(h) = host {
            b["host"] = json!(h);
        }
        b
    };
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body(None)))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "host_required");
    assert!(
        message(&v).starts_with("host: required when more than one host is registered"),
        "{v}"
    );
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body(Some("zz"))))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "unknown_host");
    assert!(
        message(&v).starts_with("host: `zz` is not a registered host (registered: a, b, local)"),
        "{v}"
    );
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(Some("Not A Host"))),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).contains("host"), "{v}");
    // None of the refusals created anything.
    let (_, list) = api.admin(Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");

    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body(Some("b"))))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["host"], "b");
    let path = format!("/api/v1/workspaces/{name}");
    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({ "host": "a", "env": { "K": "V" } })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "move_not_supported");
    assert!(
        message(&v).starts_with(&format!("host: workspace `{name}` runs on `b`")),
        "{v}"
    );
    let (_, v) = api.admin(Method::GET, &path, None).await;
    assert_eq!(v["host"], "b", "not moved");
    assert!(
        v["spec"]["env"].get("K").is_none(),
        "nothing of the refused patch: {v}"
    );
    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({ "host": "b", "update_mode": "manual" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "naming its own host is no move: {v}");
    assert_eq!(v["update_mode"], "manual");

    // b's agent says it can run one workspace: a second is refused, and nothing is made.
    let hb = sluice::store::Heartbeat {
        host: &HostName::parse("b").unwrap(),
        instance: "b@test",
        version: "0",
        capacity: Some(1),
    };
    api.store.heartbeat(&hb, SystemClock.now()).await.unwrap();
    let other = unique("placed2");
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(json!({ "name": other, "image": fixture_image(), "host": "b" })),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "host_full");
    assert!(
        message(&v).starts_with("host: `b` already runs 1 workspaces"),
        "{v}"
    );
    let (_, list) = api.admin(Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn a_lone_host_takes_every_new_workspace() {
    // A control plane that converges no host itself registers none.
    let api = TestApi::start_with(|s| s.agent.in_process = false).await;
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/hosts",
            Some(json!({ "name": "only" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(api.store.hosts().await.unwrap().len(), 1);
    let name = unique("lone");
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(json!({ "name": name, "image": fixture_image() })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["host"], "only", "the only registered host");
}

#[tokio::test]
async fn cordon_drain_and_uncordon_are_audited_and_exported() {
    let api = TestApi::start().await;
    for h in ["a", "b"] {
        let (s, _) = api
            .admin(Method::POST, "/api/v1/hosts", Some(json!({ "name": h })))
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, v) = api
        .admin(Method::POST, "/api/v1/hosts/a/cordon", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedule"], "cordoned");
    let (s, v) = api.admin(Method::POST, "/api/v1/hosts/a/drain", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["schedule"].as_str(), v["updating"].as_i64()),
        (Some("draining"), Some(0))
    );
    let (s, v) = api
        .admin(Method::POST, "/api/v1/hosts/a/uncordon", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["schedule"], "active");
    let (s, v) = api
        .admin(Method::POST, "/api/v1/hosts/zz/cordon", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/hosts/b/cordon",
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        host_events(&api, "a").await,
        [
            "host.added",
            "host.cordoned",
            "host.drained",
            "host.uncordoned"
        ]
        .map(|a| (a.to_owned(), "ops-alice".to_owned()))
    );
    assert_eq!(host_events(&api, "b").await.len(), 1, "b is only added");

    // A heartbeat makes b ready; a stale one would make it down.
    let hb = sluice::store::Heartbeat {
        host: &HostName::parse("b").unwrap(),
        instance: "b@test",
        version: "9.9.9",
        capacity: None,
    };
    api.store.heartbeat(&hb, SystemClock.now()).await.unwrap();
    let (_, v) = api.admin(Method::GET, "/api/v1/hosts/b", None).await;
    assert_eq!(
        (v["state"].as_str(), v["agent_version"].as_str()),
        (Some("ready"), Some("9.9.9")),
        "{v}"
    );
    let text = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("sluice_agent_heartbeat_age_seconds{host=\"b\"}"),
        "{text}"
    );
    assert!(
        !text.contains("sluice_agent_heartbeat_age_seconds{host=\"a\"}"),
        "a never heartbeated"
    );
    assert!(text.contains("sluice_hosts{state=\"unseen\"} 1"), "{text}");
}
