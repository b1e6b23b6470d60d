//! Table `workspace_updates`, operator restores and recoveries: written by the API.
//! `snapshot restore ID` and `workspace recover NAME` are journal rows like any update:
//! kind `restore` or `recover`, phase `pulling`, with exactly the snapshots to restore in
//! `restore_snapshot_ids`. The reconciler picks such a row up and runs it as a saga (stop,
//! snapshot the current volumes, restore those snapshots, start `to_digest`,
//! health-check; a failure rolls back).
//!
//! This module only *queues* what `recovery` decided: it writes the row and its audit
//! event in one transaction whose insert carries every check (no open row for the
//! workspace, the workspace in the expected state, every snapshot still `complete`), so
//! a refusal leaves nothing behind and two requests cannot both win. The workspaces
//! table is not written: its `state` is left to the reconciler, which changes it when it
//! starts the row.

use chrono::{DateTime, Utc};

use super::phase_log::log_phase_in;
use super::{UpdateKind, UpdateRow};
use crate::clock::to_millis;
use crate::domain::{
    Digest, SnapshotId, SnapshotState, UpdatePhase, WorkspaceName, WorkspaceState,
};
use crate::store::events::append_event_in;
use crate::store::{FINISHED_PHASES, NewEvent, QueryContext, Store, StoreError};

/// A restore or recovery, fully decided, ready to be queued by [`Store::queue_restore`].
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreRequest {
    pub workspace_id: i64,
    pub workspace: WorkspaceName,
    /// [`UpdateKind::Restore`] or [`UpdateKind::Recover`].
    pub kind: UpdateKind,
    /// What runs now (the journal row's `from_digest`).
    pub from_digest: Option<Digest>,
    /// What runs once the snapshots are restored.
    pub to_digest: Digest,
    /// Exactly the snapshots to restore, at most one per volume.
    pub snapshots: Vec<SnapshotId>,
    /// A recovery: the journal row whose snapshots are restored.
    pub source_update: Option<i64>,
    /// The operator (token name), for the audit trail.
    pub actor: String,
}

/// Why a restore or recovery was not queued. Every variant but `Store` is a refusal that
/// changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "workspace `{workspace}` has an unfinished update (journal row {update_id}); retry when it ends"
    )]
    UpdateInProgress { workspace: String, update_id: i64 },
    #[error("snapshot `{id}` is `{state}`; only a complete snapshot can be restored")]
    SnapshotNotComplete {
        id: SnapshotId,
        state: SnapshotState,
    },
    #[error(
        "workspace `{workspace}` is `{state}`, not quarantined; `recover` is for a quarantined workspace (use `snapshot restore` otherwise)"
    )]
    NotQuarantined {
        workspace: String,
        state: WorkspaceState,
    },
    #[error(
        "workspace `{workspace}` is quarantined; bring it back with `sluice workspace recover {workspace}{}`",
        .id.as_ref().map(|id| format!(" --snapshot {id}")).unwrap_or_default()
    )]
    Quarantined {
        workspace: String,
        id: Option<SnapshotId>,
    },
    #[error("the workspace of snapshot `{id}` was deleted; there is nothing to restore it into")]
    WorkspaceDeleted { id: SnapshotId },
    #[error("snapshot `{id}` belongs to workspace `{owner}`, not `{workspace}`")]
    OtherWorkspace {
        id: SnapshotId,
        owner: String,
        workspace: String,
    },
    #[error(
        "snapshot `{id}` is of volume `{volume}`, which workspace `{workspace}` does not mount"
    )]
    VolumeNotMounted {
        id: SnapshotId,
        volume: String,
        workspace: String,
    },
    #[error("no usable snapshot of volume `{volume}` from journal row {update_id}: {detail}")]
    NoUsableSnapshot {
        volume: String,
        update_id: i64,
        detail: String,
    },
    #[error("{0}")]
    NoSource(String),
    #[error("workspace `{workspace}`: {why}")]
    NoDigest { workspace: String, why: String },
}

impl Store {
    /// Queues a decided restore or recovery in one transaction: the insert itself checks
    /// that the workspace has no open journal row, is live and quarantined exactly when
    /// `req.kind` is `recover`, and that every snapshot in `req.snapshots` is still a
    /// complete snapshot of it; then the audit event (`snapshot_restore_requested` or
    /// `workspace_recover_requested`) is written and both commit together. A refusal
    /// (any [`RestoreError`] but `Store`) writes nothing.
    pub async fn queue_restore(
        &self,
        req: &RestoreRequest,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, RestoreError> {
        let ids: Vec<&str> = req.snapshots.iter().map(SnapshotId::as_str).collect();
        let json = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt {
            what: "restore request",
            message: e.to_string(),
        })?;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let all_complete = if distinct.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..distinct.len()).map(|i| format!("${}", i + 9)).collect();
            format!(
                " AND (SELECT COUNT(*) FROM snapshots s WHERE s.workspace_id = $1 \
                 AND s.state = 'complete' AND s.id IN ({})) = $8",
                marks.join(", ")
            )
        };
        let sql = format!(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, \
             phase, started_at, updated_at, kind, restore_snapshot_ids) \
             SELECT $1, NULL, $2, $3, 'pulling', $4, $4, $5, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM workspace_updates u WHERE u.workspace_id = $1 \
             AND u.phase NOT IN {FINISHED_PHASES}) \
             AND EXISTS (SELECT 1 FROM workspaces w WHERE w.id = $1 AND w.deleted_at IS NULL \
             AND (w.state = 'quarantined') = $7){all_complete} \
             RETURNING id"
        );
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .bind(req.workspace_id)
            .bind(req.from_digest.as_ref().map(Digest::as_str))
            .bind(req.to_digest.as_str())
            .bind(to_millis(now))
            .bind(req.kind.as_str())
            .bind(&json)
            .bind(req.kind == UpdateKind::Recover)
            .bind(i64::try_from(distinct.len()).unwrap_or(i64::MAX));
        for id in &distinct {
            q = q.bind(*id);
        }
        let mut tx = self.pool.begin().await.ctx("begin queue restore")?;
        let Some(update_id) = q.fetch_optional(&mut *tx).await.ctx("queue restore")? else {
            drop(tx);
            return Err(self.why_not_queued(req).await);
        };
        log_phase_in(&mut tx, update_id, UpdatePhase::Pulling.as_str(), now).await?;
        let action = match req.kind {
            UpdateKind::Recover => "workspace_recover_requested",
            _ => "snapshot_restore_requested",
        };
        let ev = NewEvent {
            actor: req.actor.clone(),
            subject: format!("workspace:{}", req.workspace),
            action: action.to_owned(),
            detail: serde_json::json!({
                "update_id": update_id,
                "kind": req.kind.as_str(),
                "from": req.from_digest,
                "to": req.to_digest,
                "snapshots": ids,
                "source_update": req.source_update,
            }),
            rollout_id: None,
            workspace: Some(req.workspace.to_string()),
        };
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit queue restore")?;
        Ok(self.update_by_id(update_id).await?)
    }

    /// Names the check a refused [`Store::queue_restore`] failed, read after the fact.
    async fn why_not_queued(&self, req: &RestoreRequest) -> RestoreError {
        match self.diagnose(req).await {
            Ok(e) | Err(e) => e,
        }
    }

    async fn diagnose(&self, req: &RestoreRequest) -> Result<RestoreError, RestoreError> {
        let open: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM workspace_updates WHERE workspace_id = $1 AND phase NOT IN {FINISHED_PHASES} \
             ORDER BY id LIMIT 1"
        )))
        .bind(req.workspace_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("find open update")?;
        if let Some(update_id) = open {
            return Ok(RestoreError::UpdateInProgress {
                workspace: req.workspace.to_string(),
                update_id,
            });
        }
        let w = match self.workspace(&req.workspace).await {
            Ok(w) if w.id == req.workspace_id => w,
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                return Ok(StoreError::NotFound {
                    what: "workspace",
                    key: req.workspace.to_string(),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let quarantined = w.state == WorkspaceState::Quarantined;
        match (req.kind, quarantined) {
            (UpdateKind::Recover, false) => {
                return Ok(RestoreError::NotQuarantined {
                    workspace: req.workspace.to_string(),
                    state: w.state,
                });
            }
            (UpdateKind::Restore | UpdateKind::Update, true) => {
                return Ok(RestoreError::Quarantined {
                    workspace: req.workspace.to_string(),
                    id: req.snapshots.first().cloned(),
                });
            }
            _ => {}
        }
        for id in &req.snapshots {
            let s = self.snapshot(id).await?;
            if s.workspace_id != req.workspace_id {
                return Ok(RestoreError::OtherWorkspace {
                    id: id.clone(),
                    owner: format!("#{}", s.workspace_id),
                    workspace: req.workspace.to_string(),
                });
            }
            if s.state != SnapshotState::Complete {
                return Ok(RestoreError::SnapshotNotComplete {
                    id: id.clone(),
                    state: s.state,
                });
            }
        }
        Ok(StoreError::Conflict {
            what: "workspace",
            key: req.workspace.to_string(),
        }
        .into())
    }
}
