//! `/api/v1/rollouts` and `POST /api/v1/releases/{id}/apply` and
//! `POST /api/v1/workspaces/{name}/update`: thin wrappers over `rollout::ops`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::ApiJson;
use super::releases::parse_id;
pub use super::rollout_view::{
    AnalysisView, HostSummary, RolloutView, TargetView, WAITING_FOR_HOST, rollout_view,
};
use crate::domain::{ApplyTier, Digest, WorkspaceName};
use crate::rollout::ops::{OpError, OpOutcome};
use crate::rollout::record::Rollout;
use crate::store::StoreError;

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

async fn load(state: &AppState, id: i64) -> Result<RolloutView, ApiError> {
    let r = state.rollout_ops.rollout(id).await?;
    let targets = state.store.rollout_targets(id).await?;
    let hosts = state.rollout_ops.host_states().await?;
    let analysis = state.store.latest_analysis(id).await?;
    Ok(rollout_view(r, targets, &hosts, analysis))
}

async fn outcome(state: &AppState, o: OpOutcome) -> Result<Json<RolloutView>, ApiError> {
    let targets = state.store.rollout_targets(o.rollout.id).await?;
    let hosts = state.rollout_ops.host_states().await?;
    let analysis = state.store.latest_analysis(o.rollout.id).await?;
    let mut v = rollout_view(o.rollout, targets, &hosts, analysis);
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
            state.store.latest_analysis(id).await?,
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

/// The newest results first, at most this many.
const HISTORY: i64 = 500;

/// Every evaluation of a rollout's metric checks, newest first.
#[derive(Debug, Serialize)]
pub struct AnalysisHistory {
    pub rollout: i64,
    /// How many the rollout has in all (`results` holds at most 500).
    pub total: i64,
    pub results: Vec<AnalysisView>,
}

pub async fn analysis(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AnalysisHistory>, ApiError> {
    let id = parse_id("rollout", &id)?;
    state.rollout_ops.rollout(id).await?;
    let (results, total) = state.store.analysis_history(id, HISTORY).await?;
    Ok(Json(AnalysisHistory {
        rollout: id,
        total,
        results: results.into_iter().map(AnalysisView::from).collect(),
    }))
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
