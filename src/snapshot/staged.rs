//! Snapshots into the incremental store (`method = "store"`, see [`super::incremental`]):
//! the pre-copy while the container runs, the delta once it is stopped, the restore, the
//! check before a restore and the collection of unreferenced objects. A volume is
//! reached through its directory on this host when sluice can (`[snapshots] access =
//! "auto"`, root, local engine), else through a helper container running this same code
//! (`sluice snapshot-helper`) with the volume and the snapshot directory mounted.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::incremental::{self as inc, Layout, StageReport};
use super::{SnapshotError, Snapshots, io};
use crate::config::SnapshotAccess;
use crate::domain::{SnapshotId, SnapshotState, WorkspaceName};
use crate::runtime::ContainerRuntime;
use crate::store::{SnapshotDone, SnapshotRow};

pub use super::staged_helper::{HELPER_STORE, HELPER_VOLUME};

/// `Snapshot.method` of a snapshot in the incremental store.
pub const METHOD_STORE: &str = "store";

/// One volume of one update, as the saga names it.
#[derive(Clone, Copy, Debug)]
pub struct VolumeTarget<'a> {
    pub workspace_id: i64,
    pub workspace: &'a WorkspaceName,
    pub update_id: i64,
    pub index: usize,
    pub volume: &'a str,
    pub mount: &'a str,
}

pub(super) enum Reach {
    Direct(PathBuf),
    Helper,
}

pub(super) fn blocking_err(at: &Path) -> impl FnOnce(tokio::task::JoinError) -> SnapshotError {
    let path = at.display().to_string();
    move |e| SnapshotError::Io {
        path,
        source: std::io::Error::other(e),
    }
}

impl Snapshots {
    pub(super) fn layout(&self) -> Layout {
        Layout::new(&self.dir)
    }

    /// New snapshots go to the incremental store (every `access` but `archive`).
    pub fn incremental(&self) -> bool {
        self.settings.access != SnapshotAccess::Archive
    }

    pub(super) async fn reach<R: ContainerRuntime>(
        &self,
        rt: &R,
        volume: &str,
    ) -> Result<Reach, SnapshotError> {
        if self.settings.access == SnapshotAccess::Auto
            && let Some(dir) = rt.volume_host_path(volume).await?
        {
            return Ok(Reach::Direct(dir));
        }
        Ok(Reach::Helper)
    }

    /// The `writing` store snapshot of `volume` an interrupted attempt of this update
    /// left (its pre-copy, perhaps), to go on with.
    async fn open_row(
        &self,
        update_id: i64,
        volume: &str,
    ) -> Result<Option<SnapshotRow>, SnapshotError> {
        Ok(self
            .store
            .snapshots_of_update(update_id)
            .await?
            .into_iter()
            .find(|s| {
                s.volume == volume
                    && s.state == SnapshotState::Writing
                    && s.method.as_deref() == Some(METHOD_STORE)
            }))
    }

    async fn new_row(
        &self,
        t: &VolumeTarget<'_>,
        now: DateTime<Utc>,
    ) -> Result<SnapshotId, SnapshotError> {
        let id = SnapshotId::parse(&format!(
            "{}-u{}-v{}-{}",
            t.workspace,
            t.update_id,
            t.index,
            now.timestamp_millis()
        ))?;
        let path = self.layout().manifest(id.as_str());
        self.store
            .insert_snapshot(
                &id,
                t.workspace_id,
                Some(t.update_id),
                t.volume,
                t.mount,
                &path.display().to_string(),
                now,
            )
            .await?;
        self.store.set_snapshot_method(&id, METHOD_STORE).await?;
        Ok(id)
    }

    /// The manifest of the volume's newest complete store snapshot and its sha256.
    pub(super) async fn previous(
        &self,
        workspace_id: i64,
        volume: &str,
    ) -> Result<Option<(PathBuf, String)>, SnapshotError> {
        let row = self
            .store
            .newest_complete_snapshot(workspace_id, volume)
            .await?;
        Ok(row
            .filter(|r| r.method.as_deref() == Some(METHOD_STORE))
            .and_then(|r| Some((self.layout().manifest(r.id.as_str()), r.sha256?))))
    }

    /// Stage one, while the container still runs: copies the volume into the store,
    /// reading only what changed since its previous snapshot, and records in the journal
    /// (the snapshot row, `writing`, `precopied_at`) that it is done. What it copies may
    /// be inconsistent: it is never restored, only compared with by the delta. A pre-copy
    /// already recorded for this attempt is not repeated.
    pub async fn precopy<R: ContainerRuntime>(
        &self,
        rt: &R,
        t: &VolumeTarget<'_>,
        now: DateTime<Utc>,
    ) -> Result<(), SnapshotError> {
        if !self.incremental() {
            return Ok(());
        }
        let id = match self.open_row(t.update_id, t.volume).await? {
            Some(row) if self.store.snapshot_precopied_at(&row.id).await?.is_some() => {
                return Ok(());
            }
            Some(row) => row.id,
            None => self.new_row(t, now).await?,
        };
        let base = self.previous(t.workspace_id, t.volume).await?;
        let out = self.layout().precopy(id.as_str());
        let base = base
            .as_ref()
            .map(|(p, sha)| (p.as_path(), Some(sha.as_str())));
        let report = self.stage(rt, &id, t.volume, &out, base, true).await?;
        crate::fault::point("precopy.written").await;
        self.store.mark_snapshot_precopied(&id, now).await?;
        tracing::info!(workspace = %t.workspace, snapshot = %id, volume = t.volume, new_bytes = report.new_bytes, files_read = report.files_read, files_reused = report.files_reused, "snapshot pre-copy written");
        Ok(())
    }

    /// Stage two, with the container stopped: compares the volume with the pre-copy (or,
    /// without one, the previous snapshot), reads only what differs, and writes the
    /// manifest that restores use; the row turns `complete` only then.
    pub(super) async fn take_store<R: ContainerRuntime>(
        &self,
        rt: &R,
        t: &VolumeTarget<'_>,
        now: DateTime<Utc>,
    ) -> Result<SnapshotRow, SnapshotError> {
        let id = match self.open_row(t.update_id, t.volume).await? {
            Some(row) => row.id,
            None => self.new_row(t, now).await?,
        };
        let layout = self.layout();
        let precopy = layout.precopy(id.as_str());
        let previous = self.previous(t.workspace_id, t.volume).await?;
        let base = if tokio::fs::try_exists(&precopy).await.unwrap_or(false) {
            Some((precopy.as_path(), None))
        } else {
            previous
                .as_ref()
                .map(|(p, sha)| (p.as_path(), Some(sha.as_str())))
        };
        let out = layout.manifest(id.as_str());
        let report = match self.stage(rt, &id, t.volume, &out, base, false).await {
            Ok(r) => r,
            Err(e) => {
                self.abandon(&id, &out).await?;
                return Err(e);
            }
        };
        crate::fault::point("snapshot.renamed").await;
        let _ = tokio::fs::remove_file(&precopy).await;
        let done = SnapshotDone {
            size: report.logical_bytes,
            sha256: report.sha256.clone(),
            manifest_sha256: Some(report.tree_sha256.clone()),
            entries: Some(report.entries),
            method: METHOD_STORE,
        };
        self.store.complete_snapshot(&id, &done).await?;
        tracing::info!(workspace = %t.workspace, snapshot = %id, volume = t.volume, size = report.logical_bytes, new_bytes = report.new_bytes, files_read = report.files_read, files_reused = report.files_reused, "snapshot complete");
        Ok(self.store.snapshot(&id).await?)
    }

    /// Runs one stage where the volume is reachable.
    async fn stage<R: ContainerRuntime>(
        &self,
        rt: &R,
        id: &SnapshotId,
        volume: &str,
        out: &Path,
        base: Option<(&Path, Option<&str>)>,
        precopy: bool,
    ) -> Result<StageReport, SnapshotError> {
        let label = if precopy { "precopy.mid" } else { "delta.mid" };
        match self.reach(rt, volume).await? {
            Reach::Direct(dir) => {
                let store = self.dir.clone();
                let out_owned = out.to_path_buf();
                let base = base.map(|(p, s)| (p.to_path_buf(), s.map(str::to_owned)));
                let (min_free, reflink) = (self.settings.min_free_bytes, self.reflink);
                let phase = crate::fault::phase();
                tokio::task::spawn_blocking(move || {
                    inc::run_stage(&inc::Stage {
                        store: &store,
                        volume: &dir,
                        out: &out_owned,
                        base: base.as_ref().map(|(p, s)| (p.as_path(), s.as_deref())),
                        min_free,
                        precopy,
                        reflink,
                        fault: Some((phase, label)),
                    })
                })
                .await
                .map_err(blocking_err(out))?
                .map_err(io(out))
            }
            Reach::Helper => {
                let mut args = vec![
                    "snapshot-helper".to_owned(),
                    "capture".to_owned(),
                    "--out".to_owned(),
                    self.inside(out)?,
                    "--min-free".to_owned(),
                    self.settings.min_free_bytes.to_string(),
                ];
                if let Some((p, sha)) = base {
                    args.extend(["--base".to_owned(), self.inside(p)?]);
                    if let Some(sha) = sha {
                        args.extend(["--base-sha256".to_owned(), sha.to_owned()]);
                    }
                }
                if precopy {
                    args.push("--precopy".to_owned());
                }
                let report: StageReport = self
                    .helper(rt, &format!("sluice-snap-{id}"), volume, true, args)
                    .await?;
                // The helper wrote into the snapshot directory as the engine's host sees
                // it: unless this process reads back exactly that manifest, the directory
                // is not shared with the engine and nothing could be restored from it.
                let at = out.to_path_buf();
                let sha = report.sha256.clone();
                tokio::task::spawn_blocking(move || inc::read_manifest(&at, Some(&sha)))
                    .await
                    .map_err(blocking_err(out))?
                    .map_err(|e| SnapshotError::Invalid {
                        id: id.to_string(),
                        reason: format!(
                            "the snapshot helper's manifest cannot be read back here ({e}): \
                             the snapshot directory must be on the Docker host (an agent per \
                             host), or set [snapshots] access = \"archive\""
                        ),
                    })?;
                Ok(report)
            }
        }
    }
}
