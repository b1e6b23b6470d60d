//! `/api/v1/rollouts` and `POST /api/v1/releases/{id}/apply` and
//! `POST /api/v1/workspaces/{name}/update`: thin wrappers over `rollout::ops`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::ApiJson;
use super::releases::parse_id;
use crate::domain::{
    ApplyTier, Digest, HostName, HostState, RolloutState, TargetStatus, WorkspaceName,
};
use crate::rollout::hosts::HostStates;
use crate::rollout::ops::{OpError, OpOutcome};
use crate::rollout::record::Rollout;
use crate::store::{StoreError, TargetRow};

/// Operator operation errors as HTTP (status and `error.code`): 400 bad input, 404
/// unknown release, rollout or workspace, 409 a state that does not allow the operation
/// (or a lost race), else 500.
pub fn op_error_status(e: &OpError) -> (StatusCode, &'static str) {
    match e {
        OpError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_input"),
        OpError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        OpError::Conflict(_)
        | OpError::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
            (StatusCode::CONFLICT, "invalid_state")
        }
        OpError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let (status, code) = op_error_status(&e);
        ApiError::new(status, code, e.to_string())
    }
}

/// The status shown for a `pending` or `updating` target whose host is not ready. Derived
/// when the view is built, never stored.
pub const WAITING_FOR_HOST: &str = "waiting_for_host";

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub tier: String,
    /// The stored status, or `waiting_for_host` (derived) while the host is not ready.
    pub status: String,
    pub host: HostName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub wave: i64,
    pub attempts: i64,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub updated_at: DateTime<Utc>,
}

/// A rollout as the API returns it.
#[derive(Debug, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub release_id: i64,
    pub image: String,
    pub digest: Digest,
    pub state: RolloutState,
    pub paused_from: Option<RolloutState>,
    pub applied: Vec<ApplyTier>,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
    pub strategy: serde_json::Value,
    pub workspaces: Vec<TargetView>,
    pub counts: BTreeMap<String, usize>,
    /// Per host of the rollout's targets, by host name.
    pub hosts: Vec<HostSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_op: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One host's share of a rollout. `pending` and `updating` leave out the targets
/// counted in `waiting_for_host`; `failed` includes `rolled_back`.
#[derive(Debug, Serialize)]
pub struct HostSummary {
    pub host: HostName,
    pub state: HostState,
    pub total: usize,
    pub updated: usize,
    pub updating: usize,
    pub pending: usize,
    pub waiting_for_host: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The status a target is shown with (see [`WAITING_FOR_HOST`]).
fn shown_status(t: &TargetRow, hosts: &HostStates) -> &'static str {
    let waiting = matches!(t.status, TargetStatus::Pending | TargetStatus::Updating)
        && hosts.of(&t.host).state != HostState::Ready;
    if waiting {
        WAITING_FOR_HOST
    } else {
        t.status.as_str()
    }
}

fn host_summaries(targets: &[TargetRow], hosts: &HostStates) -> Vec<HostSummary> {
    let mut out: BTreeMap<&HostName, HostSummary> = BTreeMap::new();
    for t in targets {
        let h = out.entry(&t.host).or_insert_with(|| HostSummary {
            host: t.host.clone(),
            state: hosts.of(&t.host).state,
            total: 0,
            updated: 0,
            updating: 0,
            pending: 0,
            waiting_for_host: 0,
            failed: 0,
            skipped: 0,
        });
        h.total += 1;
        match shown_status(t, hosts) {
            WAITING_FOR_HOST => h.waiting_for_host += 1,
            _ => match t.status {
                TargetStatus::Pending => h.pending += 1,
                TargetStatus::Updating => h.updating += 1,
                TargetStatus::Updated => h.updated += 1,
                TargetStatus::Failed | TargetStatus::RolledBack => h.failed += 1,
                TargetStatus::Skipped => h.skipped += 1,
            },
        }
    }
    out.into_values().collect()
}

/// A rollout and its targets as the API shows them, with host states at read time.
pub fn rollout_view(r: Rollout, targets: Vec<TargetRow>, hosts: &HostStates) -> RolloutView {
    let mut counts: BTreeMap<String, usize> = TargetStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .chain([(WAITING_FOR_HOST.to_owned(), 0)])
        .collect();
    for t in &targets {
        *counts.entry(shown_status(t, hosts).to_owned()).or_insert(0) += 1;
    }
    let summaries = host_summaries(&targets, hosts);
    RolloutView {
        id: r.id,
        release_id: r.release_id,
        image: r.image,
        digest: r.digest,
        state: r.status.state,
        paused_from: r.status.paused_from,
        applied: r.data.applied,
        soak_started_at: r.status.soak_started_at,
        soak_ends_at: r.status.soak_ends_at,
        finished_at: r.status.finished_at,
        started_by: r.started_by,
        strategy: serde_json::to_value(&r.strategy).unwrap_or_default(),
        workspaces: targets
            .into_iter()
            .map(|t| TargetView {
                status: shown_status(&t, hosts).to_owned(),
                name: t.name,
                tier: t.tier.as_str().to_owned(),
                host: t.host,
                status_reason: t.status_reason,
                wave: t.wave,
                attempts: t.attempts,
                from_digest: t.from_digest,
                to_digest: t.to_digest,
                updated_at: t.updated_at,
            })
            .collect(),
        counts,
        hosts: summaries,
        no_op: None,
        warning: None,
    }
}

async fn load(state: &AppState, id: i64) -> Result<RolloutView, ApiError> {
    let r = state.rollout_ops.rollout(id).await?;
    let targets = state.store.rollout_targets(id).await?;
    let hosts = state.rollout_ops.host_states().await?;
    Ok(rollout_view(r, targets, &hosts))
}

async fn outcome(state: &AppState, o: OpOutcome) -> Result<Json<RolloutView>, ApiError> {
    let targets = state.store.rollout_targets(o.rollout.id).await?;
    let hosts = state.rollout_ops.host_states().await?;
    let mut v = rollout_view(o.rollout, targets, &hosts);
    v.no_op = Some(o.no_op);
    v.warning = o.warning;
    Ok(Json(v))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<RolloutView>>, ApiError> {
    let mut out = Vec::new();
    let hosts = state.rollout_ops.host_states().await?;
    for row in state.store.rollout_rows().await? {
        let id = row.id;
        let r = Rollout::from_row(row)?;
        out.push(rollout_view(
            r,
            state.store.rollout_targets(id).await?,
            &hosts,
        ));
    }
    Ok(Json(out))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RolloutView>, ApiError> {
    Ok(Json(load(&state, parse_id("rollout", &id)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    pub tier: ApplyTier,
    #[serde(default)]
    pub force: bool,
}

pub async fn apply(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApplyBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("release", &id)?;
    if body.tier == ApplyTier::All && body.force {
        tracing::warn!(release = id, actor = %actor.name, "applying a release to all tiers at once (forced)");
    }
    let o = state
        .rollout_ops
        .apply(id, body.tier, body.force, &actor.name)
        .await?;
    outcome(&state, o).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteBody {
    #[serde(default)]
    pub force: bool,
}

pub async fn promote(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PromoteBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("rollout", &id)?;
    let o = state
        .rollout_ops
        .promote(id, body.force, &actor.name)
        .await?;
    outcome(&state, o).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

pub async fn pause(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<EmptyBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("rollout", &id)?;
    let o = state.rollout_ops.pause(id, &actor.name).await?;
    outcome(&state, o).await
}

pub async fn resume(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<EmptyBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("rollout", &id)?;
    let o = state.rollout_ops.resume(id, &actor.name).await?;
    outcome(&state, o).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortBody {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn abort(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AbortBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("rollout", &id)?;
    let o = state
        .rollout_ops
        .abort(id, body.reason.as_deref(), &actor.name)
        .await?;
    outcome(&state, o).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    #[serde(default)]
    pub restore_data: bool,
}

pub async fn rollback(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RollbackBody>,
) -> Result<Json<RolloutView>, ApiError> {
    let id = parse_id("rollout", &id)?;
    let o = state
        .rollout_ops
        .rollback(id, body.restore_data, &actor.name)
        .await?;
    outcome(&state, o).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNowBody {
    #[serde(default)]
    pub digest: Option<Digest>,
}

#[derive(Debug, Serialize)]
pub struct UpdateNow {
    pub name: String,
    pub desired_digest: Digest,
}

pub async fn update_now(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateNowBody>,
) -> Result<Json<UpdateNow>, ApiError> {
    let ws = WorkspaceName::parse(&name).map_err(|e| OpError::Invalid(e.to_string()))?;
    let d = state
        .rollout_ops
        .update_workspace_now(&ws, body.digest.as_ref(), &actor.name)
        .await?;
    Ok(Json(UpdateNow {
        name,
        desired_digest: d,
    }))
}
