//! `/api/v1/hosts`: the fleet's Docker hosts. `GET` lists each host's derived state,
//! heartbeat age, workspaces and agent version; `POST` registers a host for an agent and
//! answers its token once (only its sha256 is stored); `cordon`, `drain` and `uncordon`
//! set whether new updates start there (audited). Draining is a cordon whose operator
//! waits until no update runs on the host (`sluice host drain` polls `updating`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::domain::{HostName, HostSchedule, HostState, host_state};
use crate::store::HostRow;

#[derive(Debug, Serialize)]
pub struct HostView {
    pub name: HostName,
    pub state: HostState,
    pub schedule: HostSchedule,
    pub labels: BTreeMap<String, String>,
    pub capacity: Option<i64>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Seconds since the last heartbeat (`null`: never seen).
    pub heartbeat_age_seconds: Option<f64>,
    pub agent_instance: Option<String>,
    pub agent_version: Option<String>,
    /// Live workspaces placed on the host.
    pub workspaces: i64,
    /// Of those, how many are in an open update right now.
    pub updating: i64,
}

/// The sha256 (hex) under which an agent token is stored and checked.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(super) fn view(
    row: HostRow,
    counts: &BTreeMap<String, (i64, i64)>,
    now: DateTime<Utc>,
    down_after: chrono::Duration,
) -> HostView {
    let (workspaces, updating) = counts.get(row.name.as_str()).copied().unwrap_or((0, 0));
    #[allow(clippy::cast_precision_loss)] // reason: ages in ms are far below 2^52
    let age = row
        .heartbeat_at
        .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
    HostView {
        state: host_state(row.schedule, row.heartbeat_at, now, down_after),
        name: row.name,
        schedule: row.schedule,
        labels: row.labels,
        capacity: row.capacity,
        heartbeat_at: row.heartbeat_at,
        heartbeat_age_seconds: age,
        agent_instance: row.agent_instance,
        agent_version: row.agent_version,
        workspaces,
        updating,
    }
}

async fn one(state: &AppState, name: &HostName) -> Result<HostView, ApiError> {
    let row = state.store.host(name).await?;
    let counts = state.store.host_workspace_counts().await?;
    Ok(view(
        row,
        &counts,
        state.clock.now(),
        state.api.host_down_after,
    ))
}

fn parse_host(raw: &str) -> Result<HostName, ApiError> {
    HostName::parse(raw).map_err(|_| ApiError::not_found(format!("host `{raw}` not found")))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<HostView>>, ApiError> {
    let rows = state.store.hosts().await?;
    let counts = state.store.host_workspace_counts().await?;
    let now = state.clock.now();
    Ok(Json(
        rows.into_iter()
            .map(|r| view(r, &counts, now, state.api.host_down_after))
            .collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    Ok(Json(one(&state, &parse_host(&name)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddHost {
    pub name: HostName,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct AddedHost {
    pub host: HostView,
    /// The agent's token: shown once, stored only as its sha256.
    pub token: String,
}

pub async fn add(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    ApiJson(body): ApiJson<AddHost>,
) -> Result<(StatusCode, Json<AddedHost>), ApiError> {
    if let Some(k) = body.labels.keys().find(|k| k.is_empty() || k.len() > 128) {
        return Err(ApiError::bad_request(
            "invalid_labels",
            format!("labels: key `{k}` must be 1 to 128 characters"),
        ));
    }
    let token = format!("slh_{}", hex::encode(rand::rng().random::<[u8; 24]>()));
    let now = state.clock.now();
    state
        .store
        .add_host(
            &body.name,
            &body.labels,
            &token_sha256(&token),
            &actor.name,
            now,
        )
        .await?;
    tracing::info!(host = %body.name, actor = %actor.name, "host added");
    let host = one(&state, &body.name).await?;
    Ok((StatusCode::CREATED, Json(AddedHost { host, token })))
}

async fn set_schedule(
    state: &AppState,
    actor: &Actor,
    raw: &str,
    schedule: HostSchedule,
) -> Result<Json<HostView>, ApiError> {
    let name = parse_host(raw)?;
    let before = state
        .store
        .set_host_schedule(&name, schedule, &actor.name, state.clock.now())
        .await?;
    tracing::info!(host = %name, before = %before, after = %schedule, actor = %actor.name, "host schedule changed");
    state.wakers.controller.notify_one();
    state.wakers.reconciler.notify_one();
    Ok(Json(one(state, &name).await?))
}

pub async fn cordon(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    set_schedule(&state, &actor, &name, HostSchedule::Cordoned).await
}

pub async fn drain(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    set_schedule(&state, &actor, &name, HostSchedule::Draining).await
}

pub async fn uncordon(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
) -> Result<Json<HostView>, ApiError> {
    set_schedule(&state, &actor, &name, HostSchedule::Active).await
}
