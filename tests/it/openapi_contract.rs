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
