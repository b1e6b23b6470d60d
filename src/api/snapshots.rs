//! `/api/v1/snapshots` (list, show, restore, release, delete) and
//! `POST /api/v1/workspaces/{name}/recover`.
//!
//! Snapshot ids are parsed at the edge ([`SnapshotId::parse`]): a malformed one is a 400
//! naming the field (`id` in the path, `snapshot` in a body), an unknown one a 404. Every
//! write is audited in the same transaction as the change; restores and recoveries only
//! *queue* a journal row (202), which the reconciler runs.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::domain::{Digest, SnapshotId, SnapshotState, UpdateKind, UpdatePhase, WorkspaceName};
use crate::store::{Released, RestoreError, SnapshotInfo, UpdateRow};

/// A snapshot as the API returns it.
#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub id: SnapshotId,
    pub workspace: String,
    pub volume: String,
    /// Where the volume was mounted when the snapshot was taken (null: older snapshots).
    pub mount_path: Option<String>,
    /// The file on the daemon's host.
    pub path: String,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub manifest_sha256: Option<String>,
    pub entries: Option<i64>,
    /// `host` or `archive`.
    pub method: Option<String>,
    /// `writing`, `complete`, `failed` or `deleted`.
    pub state: SnapshotState,
    pub created_at: DateTime<Utc>,
    /// The journal row that took it.
    pub update: Option<UpdateRef>,
    /// Retention keeps it until an operator releases it.
    pub protected: bool,
    /// Why it is protected (`workspace quarantined`, ...).
    pub reason: Option<String>,
    /// An unfinished journal row took it or is to restore it: it cannot be deleted.
    pub in_use: bool,
    pub released_at: Option<DateTime<Utc>>,
    pub released_by: Option<String>,
}

/// The journal row a snapshot belongs to.
#[derive(Debug, Serialize)]
pub struct UpdateRef {
    pub id: i64,
    pub kind: UpdateKind,
    pub phase: UpdatePhase,
    pub from_digest: Option<Digest>,
    pub to_digest: Option<Digest>,
}

impl SnapshotView {
    pub fn new(i: SnapshotInfo) -> Self {
        let reason = i.facts.protection(&i.row);
        Self {
            id: i.row.id,
            workspace: i.workspace,
            volume: i.row.volume,
            mount_path: i.row.mount_path,
            path: i.row.path,
            size_bytes: i.row.size_bytes,
            sha256: i.row.sha256,
            manifest_sha256: i.row.manifest_sha256,
            entries: i.row.entries,
            method: i.row.method,
            state: i.row.state,
            created_at: i.row.created_at,
            update: i.update.map(|u| UpdateRef {
                id: u.id,
                kind: u.kind,
                phase: u.phase,
                from_digest: u.from_digest,
                to_digest: u.to_digest,
            }),
            protected: reason.is_some(),
            reason: reason.map(|r| r.to_string()),
            in_use: i.facts.needed,
            released_at: i.row.released_at,
            released_by: i.released_by,
        }
    }
}

/// The answer to a queued restore or recovery (202).
#[derive(Debug, Serialize)]
pub struct Queued {
    pub update_id: i64,
    pub workspace: String,
    /// `restore` or `recover`.
    pub kind: &'static str,
    pub phase: &'static str,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub snapshots: Vec<SnapshotId>,
    pub warning: &'static str,
}

impl Queued {
    fn new(row: UpdateRow, workspace: String) -> Self {
        Self {
            update_id: row.id,
            workspace,
            kind: row.kind.as_str(),
            phase: row.phase.as_str(),
            from_digest: row.from_digest,
            to_digest: row.to_digest,
            snapshots: row.restore_snapshot_ids,
            warning: "the workspace is stopped, its current volumes are snapshotted, then \
                      replaced by the restored data; writes made since the restored \
                      snapshots were taken are lost",
        }
    }
}

/// A path id: malformed → 400 naming `id`.
fn parse_id(raw: &str) -> Result<SnapshotId, ApiError> {
    SnapshotId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_snapshot_id", format!("id: {e}")))
}

impl From<RestoreError> for ApiError {
    fn from(e: RestoreError) -> Self {
        let code = match e {
            RestoreError::Store(s) => return s.into(),
            e @ RestoreError::OtherWorkspace { .. } => {
                return ApiError::bad_request("invalid_snapshot", format!("snapshot: {e}"));
            }
            RestoreError::UpdateInProgress { .. } => "update_in_progress",
            RestoreError::SnapshotNotComplete { .. } => "snapshot_not_complete",
            RestoreError::NotQuarantined { .. } => "not_quarantined",
            RestoreError::Quarantined { .. } => "quarantined",
            RestoreError::WorkspaceDeleted { .. } => "workspace_deleted",
            RestoreError::VolumeNotMounted { .. } => "volume_not_mounted",
            RestoreError::NoUsableSnapshot { .. } | RestoreError::NoSource(_) => {
                "no_usable_snapshot"
            }
            RestoreError::NoDigest { .. } => "no_digest",
        };
        ApiError::conflict(code, e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub workspace: Option<String>,
}

/// `GET /api/v1/snapshots[?workspace=NAME]`: snapshots not yet deleted.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<SnapshotView>>, ApiError> {
    let workspace_id = match q.workspace {
        Some(raw) => {
            let name = WorkspaceName::parse(&raw)
                .map_err(|e| ApiError::bad_request("invalid_name", format!("workspace: {e}")))?;
            Some(state.store.workspace(&name).await?.id)
        }
        None => None,
    };
    let all = state.store.snapshot_infos(workspace_id).await?;
    Ok(Json(all.into_iter().map(SnapshotView::new).collect()))
}

/// `GET /api/v1/snapshots/{id}`.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SnapshotView>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(SnapshotView::new(
        state.store.snapshot_info(&id).await?,
    )))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `POST /api/v1/snapshots/{id}/restore`: queues a `restore` journal row (202).
pub async fn restore(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<EmptyBody>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock.now();
    let row = state
        .store
        .queue_snapshot_restore(&id, &actor.name, now)
        .await?;
    let workspace = state.store.workspace_name(row.workspace_id).await?;
    tracing::warn!(
        workspace = %workspace, snapshot = %id, update = row.id, actor = %actor.name,
        "snapshot restore queued"
    );
    state.wakers.reconciler.notify_one();
    Ok((StatusCode::ACCEPTED, Json(Queued::new(row, workspace))))
}

/// `POST /api/v1/snapshots/{id}/release`: lifts the snapshot's protection from retention.
pub async fn release(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
    ApiJson(_): ApiJson<EmptyBody>,
) -> Result<Json<SnapshotView>, ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock.now();
    match state.store.release_snapshot(&id, &actor.name, now).await? {
        Released::Now => {
            tracing::info!(snapshot = %id, actor = %actor.name, "snapshot released");
        }
        Released::Already => {}
        Released::Deleted => {
            return Err(ApiError::conflict(
                "snapshot_deleted",
                format!("snapshot `{id}` is deleted; there is nothing to release"),
            ));
        }
    }
    Ok(Json(SnapshotView::new(
        state.store.snapshot_info(&id).await?,
    )))
}

/// Why a snapshot may not be deleted now.
enum Refusal {
    Protected(String),
    InUse,
    OutsideDir(String),
}

/// `DELETE /api/v1/snapshots/{id}`: marks the row `deleted` (audited), then removes the
/// file. Refused while the snapshot is protected or an unfinished update needs it.
pub async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(id): Path<String>,
) -> Result<Json<SnapshotView>, ApiError> {
    let id = parse_id(&id)?;
    let dir = state.api.snapshot_dir.clone();
    let now = state.clock.now();
    let outcome = state
        .store
        .delete_snapshot_audited(&id, &actor.name, now, |info| {
            if info.facts.needed {
                return Some(Refusal::InUse);
            }
            if let Some(reason) = info.facts.protection(&info.row) {
                return Some(Refusal::Protected(reason.to_string()));
            }
            if !inside(&dir, &id, FsPath::new(&info.row.path)) {
                return Some(Refusal::OutsideDir(info.row.path.clone()));
            }
            None
        })
        .await?;
    match outcome {
        Ok(true) => {
            remove_files(&dir, &id).await.map_err(|e| {
                ApiError::internal(format!(
                    "snapshot `{id}` is marked deleted but its file could not be removed ({e}); remove it by hand"
                ))
            })?;
            tracing::info!(snapshot = %id, actor = %actor.name, "snapshot deleted");
        }
        Ok(false) => {}
        Err(Refusal::InUse) => {
            return Err(ApiError::conflict(
                "snapshot_in_use",
                format!(
                    "snapshot `{id}` is needed by an unfinished update or a pending restore; retry when it ends"
                ),
            ));
        }
        Err(Refusal::Protected(reason)) => {
            return Err(ApiError::conflict(
                "snapshot_protected",
                format!(
                    "snapshot `{id}` is protected ({reason}); release it first (`sluice snapshot release {id}`)"
                ),
            ));
        }
        Err(Refusal::OutsideDir(path)) => {
            return Err(ApiError::conflict(
                "snapshot_outside_dir",
                format!(
                    "snapshot `{id}` is recorded at `{path}`, outside the configured snapshot directory `{}`; nothing was deleted",
                    dir.display()
                ),
            ));
        }
    }
    Ok(Json(SnapshotView::new(
        state.store.snapshot_info(&id).await?,
    )))
}

/// True when `path` is `<dir>/<id>.tar`: the only file a snapshot row may name.
fn inside(dir: &FsPath, id: &SnapshotId, path: &FsPath) -> bool {
    let canon = |p: &FsPath| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let tar = path.file_name() == Some(std::ffi::OsStr::new(&format!("{id}.tar")))
        && path.parent().map(canon) == Some(canon(dir));
    // A snapshot of the incremental store: its manifest; its objects are freed by the
    // next cleanup once no other snapshot names them.
    let manifest = path.file_name() == Some(std::ffi::OsStr::new(&format!("{id}.json")))
        && path.parent().map(canon) == Some(canon(&dir.join("manifests")));
    tar || manifest
}

/// Removes `<dir>/<id>.tar` and a leftover `<dir>/.<id>.tar.partial`, or a store
/// snapshot's manifests; absent is fine.
async fn remove_files(dir: &FsPath, id: &SnapshotId) -> Result<(), String> {
    let files: [PathBuf; 4] = [
        dir.join(format!("{id}.tar")),
        dir.join(format!(".{id}.tar.partial")),
        dir.join("manifests").join(format!("{id}.json")),
        dir.join("manifests").join(format!("{id}.precopy.json")),
    ];
    for f in files {
        match tokio::fs::remove_file(&f).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", f.display())),
        }
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// `POST /api/v1/workspaces/{name}/recover` (`{"snapshot": ID}` optional): queues a
/// `recover` journal row for a quarantined workspace (202).
pub async fn recover(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<RecoverBody>,
) -> Result<(StatusCode, Json<Queued>), ApiError> {
    let name = WorkspaceName::parse(&name)
        .map_err(|_| ApiError::not_found(format!("workspace `{name}` not found")))?;
    let chosen = body
        .snapshot
        .as_deref()
        .map(SnapshotId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_snapshot_id", format!("snapshot: {e}")))?;
    let now = state.clock.now();
    let row = state
        .store
        .queue_workspace_recover(&name, chosen.as_ref(), &actor.name, now)
        .await?;
    tracing::warn!(
        workspace = %name, update = row.id, to_digest = %row.to_digest, actor = %actor.name,
        "workspace recovery queued"
    );
    state.wakers.reconciler.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued::new(row, name.to_string())),
    ))
}
