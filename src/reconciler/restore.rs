//! Rollback with `restore_data` (see docs/reconciler.md): a convergence that a
//! `rollout_targets` row marks for restore (`restore_snapshot_of_update_id` set,
//! `restore_done_at` NULL, `from_digest` = the digest converged to) runs the ordinary
//! saga — stop, snapshot the *current* volumes (so the restore itself can be undone),
//! then in `recreating` restores the snapshots taken before that earlier update instead
//! of keeping the volumes, creates the old digest's container, starts and health-gates
//! it. A failure after the current volumes were snapshotted rolls back to exactly those
//! snapshots and the digest that ran. `restore_done_at` is stamped with `succeeded`.

use super::Inner;
use super::saga::Ctx;
use super::step_error::StepError;
use crate::domain::{SnapshotId, SnapshotState};
use crate::runtime::ContainerRuntime;
use crate::store::SnapshotRow;

/// The snapshots to restore for update `source`: per volume its newest complete one.
/// Refuses (naming the snapshot and its state) when a volume has none left, e.g. one
/// deleted by retention, or when the update took no snapshot although the workspace has
/// volumes. `rows` are that update's snapshot rows, oldest first.
pub(super) fn restore_set(
    source: i64,
    rows: Vec<SnapshotRow>,
    has_volumes: bool,
) -> Result<Vec<SnapshotRow>, String> {
    if rows.is_empty() && has_volumes {
        return Err(format!(
            "restore_data: update {source} took no snapshot; nothing to restore from"
        ));
    }
    let mut volumes: Vec<String> = Vec::new();
    for r in &rows {
        if !volumes.contains(&r.volume) {
            volumes.push(r.volume.clone());
        }
    }
    let mut set = Vec::new();
    for v in volumes {
        let of_volume: Vec<&SnapshotRow> = rows.iter().filter(|r| r.volume == v).collect();
        match of_volume
            .iter()
            .rev()
            .find(|r| r.state == SnapshotState::Complete)
        {
            Some(r) => set.push((*r).clone()),
            None => {
                let last = of_volume
                    .last()
                    .map_or_else(|| "none".to_owned(), |r| format!("{} is {}", r.id, r.state));
                return Err(format!(
                    "restore_data: no usable snapshot of volume {v} from update {source} \
                     (snapshot {last}); refusing to restore"
                ));
            }
        }
    }
    Ok(set)
}

/// What a restoring attempt puts back.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum RestoreSource {
    /// A rollout's rollback with `restore_data`: the snapshots taken before this update.
    Update(i64),
    /// An operator's `snapshot restore` or `workspace recover`: exactly these snapshots.
    Snapshots(Vec<SnapshotId>),
}

impl RestoreSource {
    /// The update a rollout rollback restores (stamped on its target when done).
    pub(super) fn update(&self) -> Option<i64> {
        match self {
            Self::Update(u) => Some(*u),
            Self::Snapshots(_) => None,
        }
    }
}

impl std::fmt::Display for RestoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Update(u) => write!(f, "update {u}"),
            Self::Snapshots(ids) => {
                let ids: Vec<&str> = ids.iter().map(SnapshotId::as_str).collect();
                write!(f, "snapshots {}", ids.join(", "))
            }
        }
    }
}

/// Every named snapshot, each `complete`; refuses (naming it) otherwise.
pub(super) fn named_set(rows: Vec<SnapshotRow>) -> Result<Vec<SnapshotRow>, String> {
    if let Some(r) = rows.iter().find(|r| r.state != SnapshotState::Complete) {
        return Err(format!(
            "snapshot {} of volume {} is {}; refusing to restore",
            r.id, r.volume, r.state
        ));
    }
    Ok(rows)
}

impl<R: ContainerRuntime> Inner<R> {
    async fn restore_snapshots(
        &self,
        ctx: &Ctx<'_>,
        source: &RestoreSource,
    ) -> Result<Vec<SnapshotRow>, String> {
        match source {
            RestoreSource::Update(u) => {
                let rows = self
                    .store
                    .snapshots_of_update(*u)
                    .await
                    .map_err(|e| e.to_string())?;
                restore_set(*u, rows, !ctx.to.volumes.is_empty())
            }
            RestoreSource::Snapshots(ids) => {
                let mut rows = Vec::new();
                for id in ids {
                    rows.push(self.store.snapshot(id).await.map_err(|e| e.to_string())?);
                }
                named_set(rows)
            }
        }
    }

    /// Before anything is stopped: every snapshot to restore has a complete row and a
    /// file with its recorded checksum (checked again when restoring). Ok when no
    /// restore is asked.
    pub(super) async fn restore_source_present(&self, ctx: &Ctx<'_>) -> Result<(), String> {
        let Some(source) = &ctx.restore else {
            return Ok(());
        };
        for s in self.restore_snapshots(ctx, source).await? {
            if let Err(e) = self.snaps.verify(&s).await {
                return Err(format!(
                    "restore_data: snapshot {} of {source} (volume {}): {e}; refusing to restore",
                    s.id, s.volume
                ));
            }
        }
        Ok(())
    }

    /// The `recreating` step of a restore: verifies every snapshot of `source` first
    /// (nothing is touched when one is missing or corrupt), then recreates the volumes
    /// from them under the digest being returned to (not started).
    pub(super) async fn restore_data(
        &self,
        ctx: &Ctx<'_>,
        source: &RestoreSource,
    ) -> Result<(), StepError> {
        let set = self.restore_snapshots(ctx, source).await?;
        self.restore_volumes(ctx, &set, &ctx.to)
            .await
            .map_err(|e| format!("restore_data from update {source}: {e}"))?;
        // Nothing to restore (no volumes) still means the old digest's container.
        self.ensure_container(&ctx.name, &ctx.to, ctx.w).await?;
        tracing::info!(workspace = %ctx.w.name, update = ctx.row.id, source = %source, "data restored");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, vol: &str, state: &str) -> SnapshotRow {
        SnapshotRow {
            id: SnapshotId::parse(id).unwrap(),
            workspace_id: 1,
            update_id: Some(7),
            volume: vol.into(),
            path: String::new(),
            size_bytes: 0,
            sha256: None,
            state: crate::domain::SnapshotState::parse(state).unwrap(),
            created_at: chrono::Utc::now(),
            mount_path: None,
            method: None,
            manifest_sha256: None,
            entries: None,
            released_at: None,
        }
    }

    #[test]
    fn picks_the_complete_snapshot_of_each_volume() {
        let rows = vec![
            row("a0", "a", "failed"),
            row("a1", "a", "complete"),
            row("b1", "b", "complete"),
        ];
        let ids: Vec<_> = restore_set(7, rows, true)
            .unwrap()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        assert_eq!(ids, ["a1", "b1"]);
    }

    #[test]
    fn refuses_when_a_volume_lost_its_snapshot() {
        let rows = vec![row("a1", "a", "complete"), row("b1", "b", "deleted")];
        let e = restore_set(7, rows, true).unwrap_err();
        assert!(e.contains("volume b") && e.contains("b1 is deleted"), "{e}");
        let e = restore_set(7, vec![], true).unwrap_err();
        assert!(e.contains("update 7 took no snapshot"), "{e}");
        assert!(restore_set(7, vec![], false).unwrap().is_empty());
    }
}
