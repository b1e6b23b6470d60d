//! The API contract as a black box: the served OpenAPI document against the routes the
//! daemon answers, a real validator (Python's `openapi-spec-validator`) on the document,
//! and live responses checked against their documented schemas (Python's `jsonschema`).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::api::{ADMIN_TOKEN, TestApi};

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// Query strings are input like bodies: a bad one is a JSON error naming the parameter,
/// never the framework's plain-text rejection.
#[tokio::test]
async fn bad_query_strings_get_the_error_schema_naming_the_parameter() {
    let api = TestApi::start().await;
    for (m, path, want, field) in [
        (
            Method::DELETE,
            "/api/v1/workspaces/nosuch?purge=maybe",
            "invalid_body",
            "purge",
        ),
        (
            Method::GET,
            "/api/v1/releases?colour=red",
            "unknown_field",
            "colour",
        ),
        (
            Method::GET,
            "/api/v1/releases?status=shipped",
            "invalid_status",
            "status",
        ),
        (
            Method::GET,
            "/api/v1/events?limit=lots",
            "invalid_body",
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/snapshots?workspace=a&x=1",
            "unknown_field",
            "x",
        ),
    ] {
        let (s, v) = api.call(m.clone(), path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{m} {path}: {v}");
        assert_eq!(code(&v), want, "{m} {path}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{m} {path}: {message}");
    }
    // A wrong method on a served path is a JSON 405, not an empty body.
    let (s, v) = api
        .call(Method::PUT, "/api/v1/workspaces", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(code(&v), "method_not_allowed", "{v}");
}

/// One answer, as the checker reads it: the documented template it was asked through.
struct Sample {
    verb: &'static str,
    path: String,
    status: u16,
    content_type: String,
    body: Value,
}

/// Sends requests and keeps every answer for the checker.
struct Recorder<'a> {
    api: &'a TestApi,
    samples: Vec<Sample>,
}

impl Recorder<'_> {
    async fn send(
        &mut self,
        verb: &'static str,
        template: &str,
        concrete: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = Method::from_bytes(verb.to_uppercase().as_bytes()).unwrap();
        let mut req = self.api.client.request(method, self.api.url(concrete));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // An event stream never ends: its answer is checked by its status and type only.
        let text = if content_type.starts_with("text/event-stream") {
            String::new()
        } else {
            r.text().await.unwrap()
        };
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        self.samples.push(Sample {
            verb,
            path: template.to_owned(),
            status: status.as_u16(),
            content_type,
            body: body.clone(),
        });
        (status, body)
    }

    async fn admin(&mut self, verb: &'static str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.send(verb, path, path, Some(ADMIN_TOKEN), body).await;
        assert!(s.is_success(), "{verb} {path}: {s} {v}");
        v
    }
}

/// Runs `tests/env/openapi_check.py` on the document and the samples.
fn check_with_python(doc: &Value, samples: &[Sample]) {
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    std::fs::write(&doc_path, doc.to_string()).unwrap();
    let samples: Vec<Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({ "verb": s.verb, "path": s.path, "status": s.status,
                                "content_type": s.content_type, "body": s.body })
        })
        .collect();
    let samples_path = dir.path().join("samples.json");
    std::fs::write(&samples_path, Value::from(samples).to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(crate::support::repo_root().join("tests/env/openapi_check.py"))
        .arg(&doc_path)
        .arg(&samples_path)
        .output()
        .expect("python3 runs (tests/env/up.sh installs the validators)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the OpenAPI check failed:\n{text}");
    assert!(text.contains("document valid"), "{text}");
}

/// The fields the request body's Rust type accepts — serde lists them when it refuses an
/// unknown one — are exactly the properties its documented schema declares.
fn body_fields_match(doc: &Value, op: &Value, refusal: &Value, what: &str) {
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    let accepted: std::collections::BTreeSet<String> = match message.split_once("expected") {
        Some((_, list)) => list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect(),
        None => {
            assert!(message.contains("there are no fields"), "{what}: {message}");
            Default::default()
        }
    };
    let reference = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap_or_default();
    let name = reference.trim_start_matches("#/components/schemas/");
    let documented: std::collections::BTreeSet<String> =
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
    assert_eq!(
        accepted, documented,
        "{what}: the fields the body accepts (left) against schema {name} (right)"
    );
}

const VERBS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The document, served. Every documented operation answers (with a bogus id or name and
/// a body with an unknown field) a status and code it documents; every other method on a
/// documented path is 405; a `read` token is refused exactly the `admin` operations. Then
/// a walk through real objects — a workspace, a host, releases, a rollout paused, resumed
/// and aborted, probes — and every answer is checked against its documented schema by
/// real validators.
#[tokio::test]
async fn the_served_document_is_valid_and_every_answer_matches_it() {
    let api = TestApi::start_with(|s| {
        s.registries.webhook_token = Some(sluice::config::Secret::new("registry-token-0123456789"));
    })
    .await;
    let mut rec = Recorder {
        api: &api,
        samples: Vec::new(),
    };
    let doc = rec.admin("get", "/api/v1/openapi.json", None).await;
    let printed = std::process::Command::new(crate::support::sluice_bin())
        .arg("openapi")
        .output()
        .expect("sluice openapi runs");
    assert!(printed.status.success(), "{printed:?}");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("JSON");
    assert_eq!(printed, doc, "`sluice openapi` prints the served document");

    // Every documented operation, with input that names nothing.
    let paths = doc["paths"].as_object().unwrap().clone();
    let mut checked_bodies = 0;
    for (template, ops) in &paths {
        let concrete = template.replace("{name}", "no-such-thing").replace(
            "{id}",
            if template.contains("snapshots") {
                "no-such-snap"
            } else {
                "999999"
            },
        );
        for verb in VERBS {
            let Some(op) = ops.get(verb) else {
                let (s, v) = rec
                    .send(verb, template, &concrete, Some(ADMIN_TOKEN), None)
                    .await;
                assert_eq!(
                    s,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{verb} {template} is served but not documented: {v}"
                );
                rec.samples.pop();
                continue;
            };
            let body = op
                .get("requestBody")
                .map(|_| serde_json::json!({ "x_unknown_field": 1 }));
            let (s, v) = rec
                .send(verb, template, &concrete, Some(ADMIN_TOKEN), body.clone())
                .await;
            assert_ne!(
                s,
                StatusCode::METHOD_NOT_ALLOWED,
                "{verb} {template} documented but not served: {v}"
            );
            if code(&v) == "unknown_field" {
                body_fields_match(&doc, op, &v, &format!("{verb} {template}"));
                checked_bodies += 1;
            }
            if op["x-sluice-role"] == "admin" {
                let (s, v) = rec
                    .send(
                        verb,
                        template,
                        &concrete,
                        Some(crate::api::READ_TOKEN),
                        body,
                    )
                    .await;
                assert_eq!(
                    s,
                    StatusCode::FORBIDDEN,
                    "{verb} {template} with a read token: {v}"
                );
            } else if op["x-sluice-role"] == "read" {
                let (s, v) = rec.send(verb, template, &concrete, None, None).await;
                assert_eq!(
                    s,
                    StatusCode::UNAUTHORIZED,
                    "{verb} {template} without a token: {v}"
                );
            }
        }
    }

    // Real objects.
    let ws = crate::support::unique("contract");
    api.track_workspace(&ws);
    let (s, v) = rec
        .send(
            "post",
            "/api/v1/workspaces",
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(
                serde_json::json!({ "name": ws, "image": crate::api::fixture_image(),
                "update_tier": "canary", "update_mode": "manual",
                "health": {"http": {"port": 8080, "path": "/health"}} }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = rec
        .send(
            "post",
            "/api/v1/workspaces",
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(
                serde_json::json!({ "name": ws, "image": crate::api::fixture_image(),
                                     "update_tier": "canary-ish" }),
            ),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_tier"),
        "{v}"
    );
    let one = format!("/api/v1/workspaces/{ws}");
    rec.send(
        "get",
        "/api/v1/workspaces/{name}",
        &one,
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    rec.send(
        "patch",
        "/api/v1/workspaces/{name}",
        &one,
        Some(ADMIN_TOKEN),
        Some(serde_json::json!({ "maintenance_window": "02:00-04:00", "env": {"K": "V"} })),
    )
    .await;
    rec.admin("get", "/api/v1/workspaces", None).await;
    rec.admin(
        "put",
        "/api/v1/fleet",
        Some(serde_json::json!({ "mode": "manual" })),
    )
    .await;
    rec.admin("get", "/api/v1/fleet", None).await;
    let added = rec
        .admin(
            "post",
            "/api/v1/hosts",
            Some(serde_json::json!({ "name": "contract-b", "labels": {"zone": "z1"} })),
        )
        .await;
    assert!(added["token"].is_string(), "{added}");
    for (verb, template, concrete) in [
        ("get", "/api/v1/hosts", "/api/v1/hosts".to_owned()),
        (
            "get",
            "/api/v1/hosts/{name}",
            "/api/v1/hosts/contract-b".to_owned(),
        ),
        (
            "post",
            "/api/v1/hosts/{name}/cordon",
            "/api/v1/hosts/contract-b/cordon".to_owned(),
        ),
        (
            "post",
            "/api/v1/hosts/{name}/uncordon",
            "/api/v1/hosts/contract-b/uncordon".to_owned(),
        ),
        (
            "post",
            "/api/v1/hosts/{name}/drain",
            "/api/v1/hosts/contract-b/drain".to_owned(),
        ),
    ] {
        let (s, v) = rec
            .send(verb, template, &concrete, Some(ADMIN_TOKEN), None)
            .await;
        assert!(s.is_success(), "{verb} {concrete}: {v}");
    }

    // A release applied to the canary tier, its rollout paused, resumed, aborted.
    let v2 = crate::rollout_api::good_v2();
    let release: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, status, updated_at) VALUES ($1, $2, 0, 'queued', 0) RETURNING id",
    )
    .bind(crate::api::fixture_image())
    .bind(&v2)
    .fetch_one(api.store.raw_pool())
    .await
    .unwrap();
    rec.admin("get", "/api/v1/releases", None).await;
    rec.send(
        "get",
        "/api/v1/releases",
        "/api/v1/releases?status=queued",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    rec.send(
        "get",
        "/api/v1/releases/{id}",
        &format!("/api/v1/releases/{release}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let (s, rollout) = rec
        .send(
            "post",
            "/api/v1/releases/{id}/apply",
            &format!("/api/v1/releases/{release}/apply"),
            Some(ADMIN_TOKEN),
            Some(serde_json::json!({ "tier": "canary" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rollout}");
    let id = rollout["id"].as_i64().expect("a rollout id");
    let r = format!("/api/v1/rollouts/{id}");
    rec.send("get", "/api/v1/rollouts/{id}", &r, Some(ADMIN_TOKEN), None)
        .await;
    rec.admin("get", "/api/v1/rollouts", None).await;
    for step in ["pause", "resume"] {
        let (s, v) = rec
            .send(
                "post",
                &format!("/api/v1/rollouts/{{id}}/{step}"),
                &format!("{r}/{step}"),
                Some(ADMIN_TOKEN),
                None,
            )
            .await;
        assert!(s.is_success() || s == StatusCode::CONFLICT, "{step}: {v}");
    }
    let (s, v) = rec
        .send(
            "post",
            "/api/v1/rollouts/{id}/promote",
            &format!("{r}/promote"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(s == StatusCode::CONFLICT || s.is_success(), "{v}");
    rec.send(
        "post",
        "/api/v1/rollouts/{id}/abort",
        &format!("{r}/abort"),
        Some(ADMIN_TOKEN),
        Some(serde_json::json!({ "reason": "contract test" })),
    )
    .await;
    rec.send(
        "post",
        "/api/v1/releases/{id}/reject",
        &format!("/api/v1/releases/{release}/reject"),
        Some(ADMIN_TOKEN),
        Some(serde_json::json!({ "reason": "contract test" })),
    )
    .await;
    rec.send(
        "post",
        "/api/v1/workspaces/{name}/update",
        &format!("{one}/update"),
        Some(ADMIN_TOKEN),
        Some(serde_json::json!({ "digest": v2 })),
    )
    .await;

    // The rest: events, snapshots, probes, metrics, registry notifications.
    rec.send(
        "get",
        "/api/v1/events",
        "/api/v1/events?since=0&limit=50",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    rec.send(
        "get",
        "/api/v1/events",
        "/api/v1/events?limit=0",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    rec.send(
        "get",
        "/api/v1/snapshots",
        &format!("/api/v1/snapshots?workspace={ws}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    rec.send("get", "/healthz", "/healthz", None, None).await;
    let (s, v) = rec.send("get", "/readyz", "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = rec.send("get", "/metrics", "/metrics", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = rec
        .send("post", "/api/v1/registry/events", "/api/v1/registry/events",
            Some("registry-token-0123456789"),
            Some(serde_json::json!({ "events": [{ "action": "push", "target": { "repository": "sluice-fixtures/good" } }] })))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = rec
        .send(
            "post",
            "/api/v1/registry/events",
            "/api/v1/registry/events",
            Some("registry-token-0123456789"),
            Some(serde_json::json!([1])),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_envelope"),
        "{v}"
    );

    assert!(rec.samples.len() > 100, "{} answers", rec.samples.len());
    // Every body an API token sends was compared (the registry's envelope is its own).
    let token_bodies = paths
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .filter(|op| op.get("requestBody").is_some() && op.get("x-sluice-role").is_some())
        .count();
    assert_eq!(
        checked_bodies, token_bodies,
        "request bodies compared with their schemas"
    );
    assert!(token_bodies >= 13, "{token_bodies}");
    check_with_python(&doc, &rec.samples);
}
