//! `/healthz` (the process answers), `/readyz` (store and Docker answer), `/metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let limit = Duration::from_secs(3);
    let store = match tokio::time::timeout(limit, state.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    let docker = match state.docker.get() {
        None => Err("not connected yet".to_owned()),
        Some(d) => match tokio::time::timeout(limit, d.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        },
    };
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!({ "ok": true }),
        Err(e) => json!({ "ok": false, "error": e }),
    };
    let body = json!({
        "store": show(&store),
        "docker": show(&docker),
        "instance": super::fleet::instance_view(&state),
        "snapshots": snapshots_view(&state),
    });
    let code = if store.is_ok() && docker.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// How snapshots are taken here: the store, how volumes are reached, whether files are
/// cloned (a copy-on-write snapshot directory) or copied.
fn snapshots_view(state: &AppState) -> serde_json::Value {
    use crate::config::SnapshotAccess;
    let access = state.api.snapshot_access;
    json!({
        "store": if access == SnapshotAccess::Archive { "archive" } else { "incremental" },
        "access": match access {
            SnapshotAccess::Auto => "auto",
            SnapshotAccess::Helper => "helper",
            SnapshotAccess::Archive => "archive",
        },
        "reflink": state.api.snapshot_reflink,
    })
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(g) = &state.api.workspace_gauge {
        match tokio::time::timeout(Duration::from_secs(3), g.refresh(&state.store)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh sluice_workspaces"),
            Err(_) => tracing::warn!("refreshing sluice_workspaces timed out"),
        }
    }
    if let Some(g) = &state.api.host_gauge {
        let refresh = g.refresh(&state.store, state.clock.now(), state.api.host_down_after);
        match tokio::time::timeout(Duration::from_secs(3), refresh).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot refresh sluice_hosts"),
            Err(_) => tracing::warn!("refreshing sluice_hosts timed out"),
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
