//! The HTTP surface: probes, metrics and the `/api/v1` admin API.
//!
//! Architecture invariant: handlers parse input into domain types and call the store or
//! the loops; they hold no business rules of their own.

pub mod auth;
pub mod error;
pub mod extract;
mod fleet;
mod gauges;
mod health;
pub mod hosts;
pub mod openapi;
mod openapi_schemas;
mod placement;
pub mod registry_events;
pub mod releases;
pub mod rollouts;
pub mod snapshots;
mod volume_claims;
mod workspace_bodies;
pub mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::wake::Wakers;

pub use auth::{Actor, AuthError, Tokens};
pub use error::ApiError;
pub use gauges::{HostGauge, WorkspaceGauge};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub docker: crate::runtime::DockerHandle,
    pub metrics: Metrics,
    /// Admin-API configuration: tokens, allowlist, limits.
    pub api: Arc<ApiContext>,
    pub clock: Arc<dyn Clock>,
    pub wakers: Wakers,
    /// Resolves a new workspace's tag to the digest it starts on (None: not configured).
    pub registry: Option<Arc<crate::registry::OciRegistry>>,
    /// Release and rollout operations (apply, promote, ...), shared with the controller.
    pub rollout_ops: crate::rollout::ops::Ops,
    /// Token and hint queue for `POST /api/v1/registry/events`.
    pub registry_events: registry_events::RegistryEvents,
    /// This instance's name and role (leader or standby).
    pub leader: crate::leader::LeaderView,
}

/// The admin API's settings, resolved at startup.
pub struct ApiContext {
    pub tokens: Tokens,
    /// `[images] allow`: image reference prefixes; empty = all.
    pub images_allow: Vec<String>,
    pub metrics_require_token: bool,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub workspace_gauge: Option<WorkspaceGauge>,
    pub host_gauge: Option<HostGauge>,
    /// `[snapshots] dir`: the only directory `DELETE /api/v1/snapshots/{id}` removes from.
    pub snapshot_dir: std::path::PathBuf,
    /// `[hosts] down_after`: a host without a heartbeat for this long is `down`.
    pub host_down_after: chrono::Duration,
}

pub fn router(state: AppState) -> Router {
    let auth = middleware::from_fn_with_state(state.clone(), auth::require_token);
    let v1 = Router::new()
        .route(
            "/api/v1/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/api/v1/workspaces/{name}",
            get(workspaces::show)
                .patch(workspaces::patch)
                .delete(workspaces::delete),
        )
        .route("/api/v1/releases", get(releases::list))
        .route("/api/v1/releases/{id}", get(releases::show))
        .route("/api/v1/releases/{id}/reject", post(releases::reject))
        .route("/api/v1/releases/{id}/apply", post(rollouts::apply))
        .route("/api/v1/rollouts", get(rollouts::list))
        .route("/api/v1/rollouts/{id}", get(rollouts::show))
        .route("/api/v1/rollouts/{id}/promote", post(rollouts::promote))
        .route("/api/v1/rollouts/{id}/pause", post(rollouts::pause))
        .route("/api/v1/rollouts/{id}/resume", post(rollouts::resume))
        .route("/api/v1/rollouts/{id}/abort", post(rollouts::abort))
        .route("/api/v1/rollouts/{id}/rollback", post(rollouts::rollback))
        .route(
            "/api/v1/workspaces/{name}/update",
            post(rollouts::update_now),
        )
        .route(
            "/api/v1/workspaces/{name}/recover",
            post(snapshots::recover),
        )
        .route("/api/v1/snapshots", get(snapshots::list))
        .route(
            "/api/v1/snapshots/{id}",
            get(snapshots::show).delete(snapshots::delete),
        )
        .route("/api/v1/snapshots/{id}/restore", post(snapshots::restore))
        .route("/api/v1/snapshots/{id}/release", post(snapshots::release))
        .route("/api/v1/fleet", get(fleet::show).put(fleet::set))
        .route("/api/v1/hosts", get(hosts::list).post(hosts::add))
        .route("/api/v1/hosts/{name}", get(hosts::show))
        .route("/api/v1/hosts/{name}/cordon", post(hosts::cordon))
        .route("/api/v1/hosts/{name}/drain", post(hosts::drain))
        .route("/api/v1/hosts/{name}/uncordon", post(hosts::uncordon))
        .route("/api/v1/events", get(fleet::events))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .route_layer(auth.clone());
    let metrics = Router::new().route("/metrics", get(health::metrics));
    let metrics = if state.api.metrics_require_token {
        metrics.route_layer(auth)
    } else {
        metrics
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/registry/events", post(registry_events::receive))
        .merge(metrics)
        .merge(v1)
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            wake_the_leader,
        ))
        .layer(DefaultBodyLimit::max(state.api.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .with_state(state)
}

/// Cuts a request off at `[api] request_timeout` with a JSON 408 (`code: timeout`); the
/// handler's future is dropped, so a store transaction it held is rolled back.
async fn deadline(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limit = state.api.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error::ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request did not finish within {}",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}

/// After a successful write (any method but GET/HEAD/OPTIONS), tells the leader —
/// which may be another instance — that desired state changed (`Store::publish_wake`;
/// nothing on SQLite). Handlers that wait for the loops publish before waiting.
async fn wake_the_leader(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let write = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let response = next.run(req).await;
    if write && response.status().is_success() {
        publish_wake(&state).await;
    }
    response
}

/// [`wake_the_leader`]'s publish; a failure costs only the loops' timer, so it is logged.
pub(crate) async fn publish_wake(state: &AppState) {
    if let Err(e) = state.store.publish_wake().await {
        tracing::warn!(error = %e, "could not wake the leader; it acts at its next timer");
    }
}
