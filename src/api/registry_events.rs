//! `POST /api/v1/registry/events`: the distribution registry's notification envelope.
//! Authenticated by `[registries] webhook_token` (`Authorization: Bearer …`). Push
//! events are only hints: they make the watcher probe the pushed repository now, and
//! the probe's answer decides whether anything changed.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::config::Secret;
use crate::watcher::Hints;

/// What the handler needs: the token and the watcher's hint queue.
#[derive(Clone, Debug, Default)]
pub struct RegistryEvents {
    pub token: Option<Secret>,
    pub hints: Hints,
}

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    repository: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// Compares without leaking, through timing, how much of the token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let cfg = &state.registry_events;
    let Some(token) = cfg.token.as_ref().filter(|t| !t.expose().is_empty()) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "registry notifications are disabled: set [registries] webhook_token",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(presented.as_bytes(), token.expose().as_bytes()) {
        tracing::warn!("registry notification refused: bad or missing token");
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token for registry notifications",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is larger than api.body_limit",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_envelope",
                &format!("cannot read body: {e}"),
            );
        }
    };
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_envelope",
                &format!("expected a registry notification envelope `{{\"events\": [...]}}`: {e}"),
            );
        }
    };
    let mut hinted = Vec::new();
    for ev in envelope.events {
        if ev.action != "push" {
            continue;
        }
        if let Some(t) = ev.target
            && !t.repository.is_empty()
            && !hinted.contains(&t.repository)
        {
            hinted.push(t.repository);
        }
    }
    for repo in &hinted {
        tracing::info!(repository = %repo, "registry push notification: probing now");
        cfg.hints.push(repo);
    }
    (StatusCode::OK, Json(json!({ "probing": hinted }))).into_response()
}
