//! `/api/v1/releases`: list, show, reject. (`apply` goes through `rollout::ops`.)

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use serde::Deserialize;

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::ReleaseStatus;
use crate::store::{RejectOutcome, Release};

/// Largest page of `GET /api/v1/releases`.
const MAX_RELEASES: i64 = 1000;

/// A path id that is not a number names nothing: 404.
pub fn parse_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("{what} `{raw}` not found")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub status: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<Release>>, ApiError> {
    let status = q
        .status
        .map(|s| ReleaseStatus::parse(&s))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_status", format!("status: {e}")))?;
    Ok(Json(state.store.list_releases(status, MAX_RELEASES).await?))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Release>, ApiError> {
    let id = parse_id("release", &id)?;
    Ok(Json(state.store.release(id).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn reject(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Json<Release>, ApiError> {
    let id = parse_id("release", &id)?;
    let now = state.clock.now();
    match state
        .store
        .reject_release(id, body.reason.as_deref(), &actor.name, now)
        .await?
    {
        RejectOutcome::Rejected(r) => {
            tracing::info!(release = id, actor = %actor.name, "release rejected");
            state.wakers.controller.notify_one();
            Ok(Json(r))
        }
        RejectOutcome::AlreadyRejected(r) => Ok(Json(r)),
        RejectOutcome::NotRejectable(st) => Err(ApiError::conflict(
            "invalid_state",
            format!("release {id} is `{st}`; abort or roll back its rollout instead"),
        )),
    }
}
