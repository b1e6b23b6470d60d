//! Reading back from the incremental store: the check before a restore, the restore,
//! the collection of what no snapshot references, and the space a snapshot will add.

use std::collections::HashSet;
use std::path::PathBuf;

use super::incremental::{self as inc, RestoreReport, StoreLock};
use super::staged::{Reach, blocking_err};
use super::{SnapshotError, Snapshots, io};
use crate::domain::SnapshotState;
use crate::runtime::ContainerRuntime;
use crate::store::SnapshotRow;

impl Snapshots {
    /// Checks a store snapshot before anything is stopped: its manifest still hashes to
    /// the recorded sha256 and every object it names is there and intact.
    pub(super) async fn verify_store(&self, row: &SnapshotRow) -> Result<PathBuf, SnapshotError> {
        let path = self.layout().manifest(row.id.as_str());
        let sha = row.sha256.clone().unwrap_or_default();
        let layout = self.layout();
        let at = path.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let m = inc::read_manifest(&at, Some(&sha))?;
            let _lock = StoreLock::shared(&layout.dir)?;
            inc::verify_objects(&layout, &m)
        })
        .await
        .map_err(blocking_err(&path))?
        .map_err(|e| SnapshotError::Invalid {
            id: row.id.to_string(),
            reason: e.to_string(),
        })?;
        Ok(path)
    }

    /// Refills the snapshot's own volume from the store and compares the result with the
    /// snapshot's tree digest: a mismatch is a failed restore.
    pub(super) async fn restore_store<R: ContainerRuntime>(
        &self,
        rt: &R,
        row: &SnapshotRow,
    ) -> Result<(), SnapshotError> {
        let invalid = |reason: String| SnapshotError::Invalid {
            id: row.id.to_string(),
            reason,
        };
        if row.state != SnapshotState::Complete {
            return Err(invalid(format!("state is {}", row.state)));
        }
        let manifest = self.layout().manifest(row.id.as_str());
        let sha = row.sha256.clone().unwrap_or_default();
        let report: RestoreReport = match self.reach(rt, &row.volume).await? {
            Reach::Direct(dir) => {
                let store = self.dir.clone();
                let at = manifest.clone();
                let reflink = self.reflink;
                let phase = crate::fault::phase();
                tokio::task::spawn_blocking(move || {
                    inc::run_restore(
                        &store,
                        &dir,
                        &at,
                        &sha,
                        reflink,
                        Some((phase, "restore.cleared", "refill.mid")),
                    )
                })
                .await
                .map_err(blocking_err(&manifest))?
                .map_err(|e| invalid(format!("restoring volume {}: {e}", row.volume)))?
            }
            Reach::Helper => {
                let args = vec![
                    "snapshot-helper".to_owned(),
                    "restore".to_owned(),
                    "--manifest".to_owned(),
                    self.inside(&manifest)?,
                    "--sha256".to_owned(),
                    sha,
                ];
                self.helper(
                    rt,
                    &format!("sluice-restore-{}", row.id),
                    &row.volume,
                    false,
                    args,
                )
                .await?
            }
        };
        if Some(&report.tree_sha256) != row.manifest_sha256.as_ref() {
            return Err(invalid(format!(
                "volume {} does not match the snapshot after restore (manifest {}, expected \
                 {}); the restore failed",
                row.volume,
                report.tree_sha256,
                row.manifest_sha256.as_deref().unwrap_or("none")
            )));
        }
        Ok(())
    }

    /// Removes what no live snapshot of this host references: manifests of deleted and
    /// failed snapshots, then objects no remaining manifest names. Skipped while a
    /// snapshot or restore holds the store (the next cleanup does it).
    pub(super) async fn collect(&self) -> Result<inc::Collected, SnapshotError> {
        // No store yet (only tar snapshots, or none): nothing to collect, nothing made.
        if !tokio::fs::try_exists(self.layout().objects())
            .await
            .unwrap_or(false)
        {
            return Ok(inc::Collected::default());
        }
        let dir = self.dir.clone();
        let lock = tokio::task::spawn_blocking(move || StoreLock::try_exclusive(&dir))
            .await
            .map_err(blocking_err(&self.dir))?
            .map_err(io(&self.dir))?;
        let Some(lock) = lock else {
            return Ok(inc::Collected::default());
        };
        // Read under the lock: a snapshot that starts now waits for it before writing.
        // Only what the database says is deleted or failed goes; an id it does not know
        // (another host's, by a mistaken shared directory) stays.
        let layout = self.layout();
        let ids = {
            let layout = layout.clone();
            tokio::task::spawn_blocking(move || inc::manifest_ids(&layout))
                .await
                .map_err(blocking_err(&self.dir))?
                .map_err(io(&self.dir))?
        };
        let mut gone = HashSet::new();
        for id in ids {
            let Ok(sid) = crate::domain::SnapshotId::parse(&id) else {
                continue;
            };
            match self.store.snapshot(&sid).await {
                Ok(row) if matches!(row.state, SnapshotState::Deleted | SnapshotState::Failed) => {
                    gone.insert(id);
                }
                Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tokio::task::spawn_blocking(move || inc::collect_garbage(&layout, &lock, &gone))
            .await
            .map_err(blocking_err(&self.dir))?
            .map_err(io(&self.dir))
    }

    /// About how many bytes a snapshot of `volume` will add. Where the volume is reachable
    /// on this host: for the incremental store, the allocated size of every file its
    /// newest snapshot does not hold unchanged; for an archive, its tree's size. Else the
    /// size of its newest complete snapshot (0 for a volume never snapshotted).
    pub async fn estimate<R: ContainerRuntime>(
        &self,
        rt: &R,
        workspace_id: i64,
        volume: &str,
    ) -> Result<u64, SnapshotError> {
        if let Some(dir) = rt.volume_host_path(volume).await? {
            let previous = if self.incremental() {
                Some(self.previous(workspace_id, volume).await?)
            } else {
                None
            };
            let at = dir.clone();
            return tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                match previous {
                    Some(prev) => {
                        let base =
                            prev.and_then(|(p, sha)| inc::read_manifest(&p, Some(&sha)).ok());
                        inc::changed_bytes(&dir, base.as_ref())
                    }
                    None => super::tree::archive_size(&dir),
                }
            })
            .await
            .map_err(blocking_err(&at))?
            .map_err(io(&at));
        }
        let last = self
            .store
            .newest_complete_snapshot(workspace_id, volume)
            .await?;
        Ok(last.map_or(0, |s| u64::try_from(s.size_bytes).unwrap_or(0)))
    }
}
