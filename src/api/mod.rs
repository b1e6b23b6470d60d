//! The HTTP surface: probes, metrics and the `/api/v1` admin API.
//!
//! Architecture invariant: handlers parse input into domain types and call the store or
//! the loops; they hold no business rules of their own.

mod adopt;
mod adopt_all;
pub mod auth;
pub mod error;
pub mod event_stream;
pub mod extract;
pub mod first_token;
mod fleet;
mod gauges;
mod health;
pub mod hosts;
pub mod openapi;
mod placement;
pub mod registry_events;
pub mod releases;
pub mod rollout_view;
pub mod rollouts;
pub mod routes;
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

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::wake::Wakers;

pub use auth::{Actor, AuthError, Tokens};
pub use error::ApiError;
pub use gauges::{HostGauge, WorkspaceGauge};
use routes::Access;

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
    /// The open `GET /api/v1/events/stream` connections: their limit, and their end at
    /// shutdown.
    pub streams: event_stream::EventStreams,
    /// The dashboard's signed-in sessions (`src/ui/`).
    pub ui: crate::ui::Sessions,
}

/// The admin API's settings, resolved at startup.
pub struct ApiContext {
    pub tokens: Tokens,
    /// `[images] allow`: image reference prefixes; empty = all.
    pub images_allow: Vec<String>,
    /// `[workspaces]`: bind prefixes and whether privileged-equivalents are allowed.
    pub workspace_policy: crate::domain::spec::Policy,
    pub metrics_require_token: bool,
    pub body_limit: usize,
    pub request_timeout: Duration,
    pub workspace_gauge: Option<WorkspaceGauge>,
    pub host_gauge: Option<HostGauge>,
    /// `[snapshots] dir`: the only directory `DELETE /api/v1/snapshots/{id}` removes from.
    pub snapshot_dir: std::path::PathBuf,
    /// How snapshots are stored and reach volumes, for `/readyz`: `[snapshots] access`
    /// and whether the snapshot directory's filesystem clones files (found at start).
    pub snapshot_access: crate::config::SnapshotAccess,
    pub snapshot_reflink: bool,
    /// `[hosts] down_after`: a host without a heartbeat for this long is `down`.
    pub host_down_after: chrono::Duration,
    /// The host whose engine this instance's Docker connection reaches (`[agent] host`
    /// when the host loops run in-process): where adopted containers live.
    pub local_host: Option<crate::domain::HostName>,
}

/// The HTTP surface, built from [`routes::all`], the table the OpenAPI document is built
/// from too. API routes sit behind a token; probes are open; `/metrics` is open unless
/// `[api] metrics_require_token`; registry notifications carry their own token.
pub fn router(state: AppState) -> Router {
    let auth = middleware::from_fn_with_state(state.clone(), auth::require_token);
    let (mut open, mut token, mut metrics) = (Router::new(), Router::new(), Router::new());
    for op in routes::all() {
        let handler = (op.handler)();
        match op.access {
            Access::Open | Access::RegistryToken => open = open.route(op.path, handler),
            Access::Token => token = token.route(op.path, handler),
            Access::Metrics => metrics = metrics.route(op.path, handler),
        }
    }
    let token = token.route_layer(auth.clone());
    let metrics = if state.api.metrics_require_token {
        metrics.route_layer(auth)
    } else {
        metrics
    };
    Router::new()
        .merge(open)
        .merge(metrics)
        .merge(token)
        .merge(crate::ui::router())
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
