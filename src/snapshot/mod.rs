//! Volume snapshots through the container runtime's archive API (so they work against a
//! remote Docker host too). A snapshot is taken from a *stopped* container: the tar of
//! the volume's mount path is streamed to `<dir>/.<id>.tar.partial`, hashed on the way,
//! fsynced, renamed to `<dir>/<id>.tar`, and only then marked `complete` with its
//! sha256. Restores verify the checksum first. Retention is a pure function
//! ([`retention_victims`]) applied by [`Snapshots::cleanup`].

mod host;
pub mod incremental;
mod retention;
mod staged;
mod staged_helper;
mod staged_restore;
pub mod tree;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use host::*;
pub use retention::retention_victims;
pub use staged::{HELPER_STORE, HELPER_VOLUME, METHOD_STORE, VolumeTarget};

use crate::config::SnapshotSettings;
use crate::domain::{HostName, ParseError, SnapshotId, SnapshotState, WorkspaceName};
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::store::{SnapshotDone, SnapshotRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Id(#[from] ParseError),
    #[error("snapshot file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not enough free space in {dir}: {available} bytes available, {required} required")]
    NoSpace {
        dir: String,
        available: u64,
        required: u64,
    },
    #[error("snapshot {id} is not usable: {reason}")]
    Invalid { id: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let path = path.display().to_string();
    move |source| SnapshotError::Io { path, source }
}

/// Snapshot storage: files under one directory, rows in the store.
#[derive(Clone, Debug)]
pub struct Snapshots {
    dir: PathBuf,
    settings: SnapshotSettings,
    store: Store,
    /// The Docker host whose snapshot files live in `dir`: retention only touches these.
    host: HostName,
    /// The snapshot directory's filesystem clones files (found when this is made).
    reflink: bool,
}

impl Snapshots {
    pub fn new(dir: PathBuf, settings: SnapshotSettings, store: Store) -> Self {
        let reflink = incremental::reflink::supported(&dir);
        Self {
            dir,
            settings,
            store,
            host: HostName::local(),
            reflink,
        }
    }

    /// Whether snapshots clone files instead of copying them (copy-on-write filesystem).
    pub fn reflink(&self) -> bool {
        self.reflink
    }

    /// The same, for the snapshots of `host` (an agent's, or `[agent] host` in-process).
    #[must_use]
    pub fn for_host(mut self, host: HostName) -> Self {
        self.host = host;
        self
    }

    /// Free space that must remain in the directory (`[snapshots] min_free_bytes`).
    pub fn min_free_bytes(&self) -> u64 {
        self.settings.min_free_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a snapshot; `id` is validated, so this never leaves the directory.
    pub fn path_of(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!("{id}.tar"))
    }

    fn partial_of(&self, id: &SnapshotId) -> PathBuf {
        self.dir.join(format!(".{id}.tar.partial"))
    }

    /// Bytes available to unprivileged writers in the snapshot directory.
    pub fn free_bytes(&self) -> Result<u64, SnapshotError> {
        free_bytes(&self.dir).map_err(io(&self.dir))
    }

    /// Archives `mount` of the stopped `container` (volume `volume`) for update `update_id`.
    #[allow(clippy::too_many_arguments)] // reason: each names a distinct piece of the row
    pub async fn take<R: ContainerRuntime>(
        &self,
        rt: &R,
        container: &str,
        workspace_id: i64,
        workspace: &WorkspaceName,
        update_id: i64,
        index: usize,
        volume: &str,
        mount: &str,
        now: DateTime<Utc>,
    ) -> Result<SnapshotRow, SnapshotError> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        let available = self.free_bytes()?;
        if available < self.settings.min_free_bytes {
            return Err(SnapshotError::NoSpace {
                dir: self.dir.display().to_string(),
                available,
                required: self.settings.min_free_bytes,
            });
        }
        if self.incremental() {
            let t = VolumeTarget {
                workspace_id,
                workspace,
                update_id,
                index,
                volume,
                mount,
            };
            return self.take_store(rt, &t, now).await;
        }
        let id = SnapshotId::parse(&format!(
            "{workspace}-u{update_id}-v{index}-{}",
            now.timestamp_millis()
        ))?;
        let path = self.path_of(&id);
        let partial = self.partial_of(&id);
        self.store
            .insert_snapshot(
                &id,
                workspace_id,
                Some(update_id),
                volume,
                mount,
                &path.display().to_string(),
                now,
            )
            .await?;
        let written = match rt.volume_host_path(volume).await {
            Ok(Some(dir)) => archive_host_tree(dir, partial.clone()).await,
            Ok(None) => rt
                .archive_download(container, mount, &partial)
                .await
                .map(|(size, sha)| SnapshotDone {
                    size,
                    sha256: sha,
                    manifest_sha256: None,
                    entries: None,
                    method: METHOD_ARCHIVE,
                })
                .map_err(SnapshotError::from),
            Err(e) => Err(e.into()),
        };
        let done = match written {
            Ok(v) => v,
            Err(e) => {
                self.abandon(&id, &partial).await?;
                return Err(e);
            }
        };
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(io(&path))?;
        crate::fault::point("snapshot.renamed").await;
        // The rename must be durable before the row says `complete`.
        let synced = match tokio::fs::File::open(&self.dir).await {
            Ok(d) => d.sync_all().await,
            Err(e) => Err(e),
        };
        if let Err(e) = synced {
            self.abandon(&id, &path).await?;
            return Err(SnapshotError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::new(
                    e.kind(),
                    format!("fsync of the snapshot directory after renaming {id}: {e}"),
                ),
            });
        }
        self.store.complete_snapshot(&id, &done).await?;
        tracing::info!(workspace = %workspace, snapshot = %id, volume, size = done.size, method = done.method, "snapshot complete");
        self.store.snapshot(&id).await.map_err(Into::into)
    }

    /// Checks that a snapshot is complete and its file still has the recorded sha256.
    pub async fn verify(&self, row: &SnapshotRow) -> Result<PathBuf, SnapshotError> {
        let invalid = |reason: &str| SnapshotError::Invalid {
            id: row.id.to_string(),
            reason: reason.to_owned(),
        };
        if row.state != SnapshotState::Complete {
            return Err(invalid(&format!("state is {}", row.state)));
        }
        if row.method.as_deref() == Some(METHOD_STORE) {
            return self.verify_store(row).await;
        }
        let path = self.path_of(&row.id);
        let mut f = tokio::fs::File::open(&path).await.map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(io(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let sha = hex::encode(hasher.finalize());
        if row.sha256.as_deref() != Some(sha.as_str()) {
            return Err(invalid("checksum mismatch"));
        }
        Ok(path)
    }

    /// Refills the snapshot's own volume (`row.volume`) with it.
    ///
    /// A `host` snapshot empties the volume's directory, extracts into it while hashing
    /// the file (callers verify the whole file first, before anything is stopped; this
    /// catches a change since), flushes it to disk and compares the restored tree's
    /// manifest with the recorded one: either mismatch is a failed restore. An `archive`
    /// snapshot's file is verified, then uploaded through `container`, which must mount
    /// the volume under the same directory name it had when the snapshot was taken (the
    /// archive is rooted at that name); it is refused otherwise, never extracted
    /// somewhere else.
    pub async fn restore<R: ContainerRuntime>(
        &self,
        rt: &R,
        container: &str,
        row: &SnapshotRow,
        target_mount: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let invalid = |reason: String| SnapshotError::Invalid {
            id: row.id.to_string(),
            reason,
        };
        if row.method.as_deref() == Some(METHOD_STORE) {
            return self.restore_store(rt, row).await;
        }
        if row.method.as_deref() == Some(METHOD_HOST) {
            if row.state != SnapshotState::Complete {
                return Err(invalid(format!("state is {}", row.state)));
            }
            let path = self.path_of(&row.id);
            let sha = row.sha256.clone().unwrap_or_default();
            let id = row.id.to_string();
            let dir = rt.volume_host_path(&row.volume).await?.ok_or_else(|| {
                invalid(format!(
                    "volume {} is not reachable on this host; a host snapshot is restored \
                     only into its own local volume",
                    row.volume
                ))
            })?;
            let expected = row.manifest_sha256.clone();
            let restored = {
                let phase = crate::fault::phase();
                tokio::task::spawn_blocking(move || {
                    restore_host_tree(phase, &id, &path, &sha, &dir)
                })
            }
            .await
            .map_err(|e| invalid(format!("restore task: {e}")))??;
            if Some(&restored.sha256) != expected.as_ref() {
                return Err(invalid(format!(
                    "volume {} does not match the snapshot after restore (manifest {}, \
                     expected {}); the restore failed",
                    row.volume,
                    restored.sha256,
                    expected.as_deref().unwrap_or("none")
                )));
            }
            return Ok(());
        }
        let path = self.verify(row).await?;
        let mount = target_mount.ok_or_else(|| {
            invalid(format!(
                "volume {} is not mounted in the container it is restored through",
                row.volume
            ))
        })?;
        let taken_at = row.mount_path.as_deref().unwrap_or(mount);
        if Path::new(taken_at).file_name() != Path::new(mount).file_name() {
            return Err(invalid(format!(
                "volume {} was mounted at {taken_at} when the snapshot was taken and is now \
                 mounted at {mount}; an archive snapshot is restored only under its own \
                 directory name",
                row.volume
            )));
        }
        let parent = Path::new(mount)
            .parent()
            .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
        rt.archive_upload(container, &parent, &path).await?;
        Ok(())
    }

    /// A snapshot that cannot be finished: its file removed, its row `failed`.
    pub(super) async fn abandon(&self, id: &SnapshotId, file: &Path) -> Result<(), SnapshotError> {
        let _ = tokio::fs::remove_file(file).await;
        self.store
            .set_snapshot_state(id, SnapshotState::Failed)
            .await?;
        Ok(())
    }

    /// Marks an update's `writing` snapshots failed (an interrupted attempt) and removes
    /// their partial files. With `keep_precopies`, a store snapshot's pre-copy is kept
    /// for the delta to go on with.
    pub async fn discard_incomplete(
        &self,
        update_id: i64,
        keep_precopies: bool,
    ) -> Result<(), SnapshotError> {
        for s in self.store.snapshots_of_update(update_id).await? {
            let store = s.method.as_deref() == Some(METHOD_STORE);
            if s.state != SnapshotState::Writing || (store && keep_precopies) {
                continue;
            }
            let _ = tokio::fs::remove_file(self.partial_of(&s.id)).await;
            let _ = tokio::fs::remove_file(self.path_of(&s.id)).await;
            let layout = self.layout();
            let _ = tokio::fs::remove_file(layout.precopy(s.id.as_str())).await;
            let _ = tokio::fs::remove_file(layout.manifest(s.id.as_str())).await;
            self.store
                .set_snapshot_state(&s.id, SnapshotState::Failed)
                .await?;
        }
        Ok(())
    }

    /// Applies retention; returns how many snapshots were deleted.
    pub async fn cleanup(&self, now: DateTime<Utc>) -> Result<usize, SnapshotError> {
        let live = self.store.live_snapshots(&self.host).await?;
        let max_age =
            chrono::Duration::from_std(self.settings.max_age).unwrap_or(chrono::Duration::MAX);
        let victims = retention_victims(&live, self.settings.keep_last as usize, max_age, now);
        for id in &victims {
            let _ = tokio::fs::remove_file(self.partial_of(id)).await;
            match tokio::fs::remove_file(self.path_of(id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&self.path_of(id))(e)),
            }
            self.store
                .set_snapshot_state(id, SnapshotState::Deleted)
                .await?;
            tracing::info!(snapshot = %id, "snapshot deleted by retention");
        }
        let freed = self.collect().await?;
        if freed != incremental::Collected::default() {
            tracing::info!(
                manifests = freed.manifests_removed,
                objects = freed.objects_removed,
                bytes = freed.bytes_freed,
                "snapshot store: unreferenced data removed"
            );
        }
        Ok(victims.len())
    }
}

/// `Snapshot.method` of a tree read on the Docker host.
pub const METHOD_HOST: &str = "host";
/// `Snapshot.method` of a tree read through the runtime's archive API.
pub const METHOD_ARCHIVE: &str = "archive";
