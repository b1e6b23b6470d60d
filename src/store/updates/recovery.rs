//! Table `workspace_updates`, operator restores and recoveries, the decisions: which
//! snapshots and which digest a `snapshot restore ID` or a `workspace recover NAME`
//! brings back, read from the `workspaces`, `snapshots` and `workspace_updates` tables.
//! Called by the API; writes nothing itself: the decided [`RestoreRequest`] is queued by
//! [`Store::queue_restore`] (`restore_queue`).

use chrono::{DateTime, Utc};

use super::restore_queue::{RestoreError, RestoreRequest};
use super::{UpdateKind, UpdateRow};
use crate::domain::{SnapshotId, SnapshotState, WorkspaceName, WorkspaceState};
use crate::store::{QueryContext, SnapshotRow, Store, StoreError};

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
        match of_volume
            .iter()
            .find(|s| s.state == SnapshotState::Complete)
        {
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
        if snap.state != SnapshotState::Complete {
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
                if c.state != SnapshotState::Complete {
                    return Err(RestoreError::SnapshotNotComplete {
                        id: c.id.clone(),
                        state: c.state,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn snap(id: &str, volume: &str, state: &str, age_s: i64) -> SnapshotRow {
        let state = SnapshotState::parse(state).unwrap();
        SnapshotRow {
            id: SnapshotId::parse(id).unwrap(),
            workspace_id: 1,
            update_id: Some(7),
            volume: volume.into(),
            path: String::new(),
            size_bytes: 0,
            sha256: None,
            state,
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
