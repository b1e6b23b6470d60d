//! `/api/v1/fleet` (mode) and `/api/v1/events` (the audit trail).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::{FleetMode, WorkspaceState};
use crate::store::Event;

#[derive(Debug, Serialize)]
pub struct FleetView {
    pub mode: FleetMode,
    pub workspaces: usize,
    pub by_state: std::collections::BTreeMap<String, usize>,
    /// The instance that answered: its name, role and epoch.
    pub instance: InstanceView,
    /// The stored lease (PostgreSQL; `null` on SQLite, where the one daemon leads).
    pub leader: Option<crate::store::LeaseRow>,
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub name: String,
    pub role: &'static str,
    pub epoch: Option<i64>,
    pub engine: &'static str,
}

pub fn instance_view(state: &AppState) -> InstanceView {
    let role = state.leader.role();
    InstanceView {
        name: state.leader.instance().to_owned(),
        role: role.name(),
        epoch: role.epoch(),
        engine: state.store.engine().as_str(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFleet {
    pub mode: FleetMode,
}

async fn fleet_view(state: &AppState) -> Result<FleetView, ApiError> {
    let mode = state.store.fleet_mode().await?;
    let all = state.store.workspaces().await?;
    let mut by_state = std::collections::BTreeMap::new();
    for s in WorkspaceState::ALL {
        by_state.insert(s.as_str().to_owned(), 0);
    }
    for w in &all {
        *by_state.entry(w.state.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(FleetView {
        mode,
        workspaces: all.len(),
        by_state,
        instance: instance_view(state),
        leader: state.store.lease().await?,
    })
}

pub async fn show(State(state): State<AppState>) -> Result<Json<FleetView>, ApiError> {
    Ok(Json(fleet_view(&state).await?))
}

pub async fn set(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    ApiJson(body): ApiJson<SetFleet>,
) -> Result<Json<FleetView>, ApiError> {
    let now = state.clock.now();
    state
        .store
        .set_fleet_mode(body.mode, &actor.name, now)
        .await?;
    tracing::info!(mode = %body.mode, actor = %actor.name, "fleet mode set");
    state.wakers.controller.notify_one();
    state.wakers.reconciler.notify_one();
    Ok(Json(fleet_view(&state).await?))
}

/// Largest page of `/api/v1/events`.
pub const MAX_EVENTS: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub since: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

pub async fn events(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit: must be 1-{MAX_EVENTS}, got {limit}"),
        ));
    }
    Ok(Json(state.store.events(since, limit).await?))
}
