//! Operator restores (`snapshot restore ID`) and recoveries (`workspace recover NAME`)
//! are journal rows like any update: kind `restore` or `recover`, phase `pulling`, with
//! exactly the snapshots to restore in `restore_snapshot_ids`. The reconciler picks such a
//! row up and runs it as a saga (stop, snapshot the current volumes, restore those
//! snapshots, start `to_digest`, health-check; a failure rolls back).
//!
//! This module only *queues*: it chooses the snapshots and the digest, then writes the row
//! and its audit event in one transaction whose insert carries every check (no open row
//! for the workspace, the workspace in the expected state, every snapshot still
//! `complete`), so a refusal leaves nothing behind and two requests cannot both win.
//! The workspace's `state` is left to the reconciler, which changes it when it starts
//! the row.

use chrono::{DateTime, Utc};

use super::events::append_event_in;
use super::{NewEvent, QueryContext, SnapshotRow, Store, StoreError, UpdateKind, UpdateRow};
use crate::clock::to_millis;
use crate::domain::{Digest, SnapshotId, WorkspaceName, WorkspaceState};

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
    SnapshotNotComplete { id: SnapshotId, state: String },
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

const OPEN: &str = "('succeeded', 'rolled_back', 'failed', 'quarantined')";

/// For each volume the workspace mounts, the snapshot a recovery restores: `chosen` for
/// its own volume, otherwise the newest complete one among `taken` (the source update's
/// snapshots). `Err((volume, detail))` names the first volume without one.
pub(crate) fn recovery_set(
    volumes: &[&str],
    taken: &[SnapshotRow],
    chosen: Option<&SnapshotRow>,
) -> Result<Vec<SnapshotId>, (String, String)> {
    let mut out = Vec::with_capacity(volumes.len());
    for volume in volumes {
        if let Some(c) = chosen.filter(|c| c.volume == *volume) {
            out.push(c.id.clone());
            continue;
        }
        let mut of_volume: Vec<&SnapshotRow> =
            taken.iter().filter(|s| s.volume == *volume).collect();
        of_volume.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        match of_volume.iter().find(|s| s.state == "complete") {
            Some(s) => out.push(s.id.clone()),
            None => {
                let detail = match of_volume.first() {
                    Some(s) => format!("its snapshot `{}` is `{}`", s.id, s.state),
                    None => "none was taken".to_owned(),
                };
                return Err(((*volume).to_owned(), detail));
            }
        }
    }
    Ok(out)
}

impl Store {
    /// Decides and queues `snapshot restore ID`: restore that snapshot into its volume,
    /// then run what runs now (`actual_digest`, or `desired_digest` when nothing runs).
    /// Refused for a snapshot that is not complete, whose workspace is gone, quarantined
    /// (that is `recover`'s job) or no longer mounts its volume, and while the workspace
    /// has an open journal row.
    pub async fn queue_snapshot_restore(
        &self,
        id: &SnapshotId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, RestoreError> {
        let snap = self.snapshot(id).await?;
        if snap.state != "complete" {
            return Err(RestoreError::SnapshotNotComplete {
                id: id.clone(),
                state: snap.state,
            });
        }
        let name = match self.workspace_name(snap.workspace_id).await {
            Ok(n) => n,
            Err(StoreError::NotFound { .. }) => {
                return Err(RestoreError::WorkspaceDeleted { id: id.clone() });
            }
            Err(e) => return Err(e.into()),
        };
        let name = WorkspaceName::parse(&name).map_err(|e| StoreError::Corrupt {
            what: "workspace",
            message: e.to_string(),
        })?;
        let w = self.workspace(&name).await?;
        if w.state == WorkspaceState::Quarantined {
            return Err(RestoreError::Quarantined {
                workspace: name.to_string(),
                id: Some(id.clone()),
            });
        }
        if !w.spec.volumes.iter().any(|v| v.name == snap.volume) {
            return Err(RestoreError::VolumeNotMounted {
                id: id.clone(),
                volume: snap.volume,
                workspace: name.to_string(),
            });
        }
        let to = w
            .actual_digest
            .clone()
            .or_else(|| w.desired_digest.clone())
            .ok_or_else(|| RestoreError::NoDigest {
                workspace: name.to_string(),
                why: "it has neither an actual nor a desired digest to run after the restore"
                    .to_owned(),
            })?;
        let req = RestoreRequest {
            workspace_id: w.id,
            workspace: name,
            kind: UpdateKind::Restore,
            from_digest: w.actual_digest,
            to_digest: to,
            snapshots: vec![id.clone()],
            source_update: snap.update_id,
            actor: actor.to_owned(),
        };
        self.queue_restore(&req, now).await
    }

    /// Decides and queues `workspace recover NAME [--snapshot ID]` for a quarantined
    /// workspace: restore, for every volume it mounts, the newest complete snapshot taken
    /// by the journal row that quarantined it — or by the row snapshot `chosen` belongs
    /// to, with `chosen` itself for its volume — then run that row's `from_digest` (what
    /// ran before it). Refused naming the volume when one has no usable snapshot.
    pub async fn queue_workspace_recover(
        &self,
        name: &WorkspaceName,
        chosen: Option<&SnapshotId>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, RestoreError> {
        let w = self.workspace(name).await?;
        if w.state != WorkspaceState::Quarantined {
            return Err(RestoreError::NotQuarantined {
                workspace: name.to_string(),
                state: w.state,
            });
        }
        let chosen = match chosen {
            Some(id) => Some(self.snapshot(id).await?),
            None => None,
        };
        let source_id = match &chosen {
            Some(c) => {
                if c.workspace_id != w.id {
                    let owner = self
                        .workspace_name(c.workspace_id)
                        .await
                        .unwrap_or_else(|_| format!("#{} (deleted)", c.workspace_id));
                    return Err(RestoreError::OtherWorkspace {
                        id: c.id.clone(),
                        owner,
                        workspace: name.to_string(),
                    });
                }
                if c.state != "complete" {
                    return Err(RestoreError::SnapshotNotComplete {
                        id: c.id.clone(),
                        state: c.state.clone(),
                    });
                }
                if !w.spec.volumes.iter().any(|v| v.name == c.volume) {
                    return Err(RestoreError::VolumeNotMounted {
                        id: c.id.clone(),
                        volume: c.volume.clone(),
                        workspace: name.to_string(),
                    });
                }
                c.update_id.ok_or_else(|| {
                    RestoreError::NoSource(format!(
                        "snapshot `{}` belongs to no journal row, so the digest to run with it is unknown",
                        c.id
                    ))
                })?
            }
            None => self.last_quarantining_update(w.id).await?.ok_or_else(|| {
                RestoreError::NoSource(format!(
                    "no journal row of workspace `{name}` ended quarantined; name a snapshot to recover from (`--snapshot ID`)"
                ))
            })?,
        };
        let source = self.update_by_id(source_id).await?;
        let to = source
            .from_digest
            .clone()
            .ok_or_else(|| RestoreError::NoDigest {
                workspace: name.to_string(),
                why: format!(
                    "journal row {source_id} has no previous digest (nothing ran before it) to recover to"
                ),
            })?;
        let taken = self.snapshots_of_update(source_id).await?;
        let volumes: Vec<&str> = w.spec.volumes.iter().map(|v| v.name.as_str()).collect();
        let snapshots =
            recovery_set(&volumes, &taken, chosen.as_ref()).map_err(|(volume, detail)| {
                RestoreError::NoUsableSnapshot {
                    volume,
                    update_id: source_id,
                    detail,
                }
            })?;
        let req = RestoreRequest {
            workspace_id: w.id,
            workspace: name.clone(),
            kind: UpdateKind::Recover,
            from_digest: w.actual_digest,
            to_digest: to,
            snapshots,
            source_update: Some(source_id),
            actor: actor.to_owned(),
        };
        self.queue_restore(&req, now).await
    }

    /// The newest journal row of a workspace that ended `quarantined`.
    async fn last_quarantining_update(&self, workspace_id: i64) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM workspace_updates WHERE workspace_id = $1 AND phase = 'quarantined' \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await
        .ctx("find quarantining update")
    }

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
             AND u.phase NOT IN {OPEN}) \
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
            "SELECT id FROM workspace_updates WHERE workspace_id = $1 AND phase NOT IN {OPEN} \
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
            if s.state != "complete" {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn snap(id: &str, volume: &str, state: &str, age_s: i64) -> SnapshotRow {
        SnapshotRow {
            id: SnapshotId::parse(id).unwrap(),
            workspace_id: 1,
            update_id: Some(7),
            volume: volume.into(),
            path: String::new(),
            size_bytes: 0,
            sha256: None,
            state: state.into(),
            created_at: chrono::DateTime::UNIX_EPOCH + Duration::days(1) - Duration::seconds(age_s),
            mount_path: None,
            method: None,
            manifest_sha256: None,
            entries: None,
            released_at: None,
        }
    }

    fn ids(v: &[SnapshotId]) -> Vec<&str> {
        v.iter().map(SnapshotId::as_str).collect()
    }

    #[test]
    fn newest_complete_per_volume() {
        let taken = [
            snap("a-old", "a", "complete", 10),
            snap("a-new", "a", "complete", 1),
            snap("b-bad", "b", "failed", 0),
            snap("b-ok", "b", "complete", 5),
        ];
        let set = recovery_set(&["a", "b"], &taken, None).unwrap();
        assert_eq!(ids(&set), ["a-new", "b-ok"]);
    }

    #[test]
    fn the_chosen_snapshot_wins_for_its_volume() {
        let taken = [
            snap("a-old", "a", "complete", 10),
            snap("a-new", "a", "complete", 1),
            snap("b-ok", "b", "complete", 5),
        ];
        let set = recovery_set(&["a", "b"], &taken, Some(&taken[0])).unwrap();
        assert_eq!(ids(&set), ["a-old", "b-ok"]);
    }

    #[test]
    fn a_volume_without_a_usable_snapshot_is_named() {
        let taken = [
            snap("a-new", "a", "complete", 1),
            snap("b-del", "b", "deleted", 1),
        ];
        let (volume, detail) = recovery_set(&["a", "b"], &taken, None).unwrap_err();
        assert_eq!(volume, "b");
        assert!(detail.contains("`b-del` is `deleted`"), "{detail}");
        let (volume, detail) = recovery_set(&["a", "c"], &taken, None).unwrap_err();
        assert_eq!((volume.as_str(), detail.as_str()), ("c", "none was taken"));
        assert!(recovery_set(&[], &taken, None).unwrap().is_empty());
    }
}
