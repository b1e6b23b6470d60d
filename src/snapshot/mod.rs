//! Volume snapshots through the container runtime's archive API (so they work against a
//! remote Docker host too). A snapshot is taken from a *stopped* container: the tar of
//! the volume's mount path is streamed to `<dir>/.<id>.tar.partial`, hashed on the way,
//! fsynced, renamed to `<dir>/<id>.tar`, and only then marked `complete` with its
//! sha256. Restores verify the checksum first. Retention is a pure function
//! ([`retention_victims`]) applied by [`Snapshots::cleanup`].

mod retention;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

pub use retention::retention_victims;

use crate::config::SnapshotSettings;
use crate::domain::{ParseError, SnapshotId, WorkspaceName};
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
}

impl Snapshots {
    pub fn new(dir: PathBuf, settings: SnapshotSettings, store: Store) -> Self {
        Self {
            dir,
            settings,
            store,
        }
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
        let written = rt.archive_download(container, mount, &partial).await;
        let (size, sha) = match written {
            Ok(v) => v,
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                self.store.set_snapshot_state(&id, "failed").await?;
                return Err(e.into());
            }
        };
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(io(&path))?;
        if let Ok(d) = tokio::fs::File::open(&self.dir).await {
            let _ = d.sync_all().await;
        }
        let done = SnapshotDone {
            size,
            sha256: sha,
            manifest_sha256: None,
            entries: None,
            method: "archive",
        };
        self.store.complete_snapshot(&id, &done).await?;
        tracing::info!(workspace = %workspace, snapshot = %id, volume, size, "snapshot complete");
        self.store.snapshot(&id).await.map_err(Into::into)
    }

    /// Checks that a snapshot is complete and its file still has the recorded sha256.
    pub async fn verify(&self, row: &SnapshotRow) -> Result<PathBuf, SnapshotError> {
        let invalid = |reason: &str| SnapshotError::Invalid {
            id: row.id.to_string(),
            reason: reason.to_owned(),
        };
        if row.state != "complete" {
            return Err(invalid(&format!("state is {}", row.state)));
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

    /// Verifies, then extracts the snapshot into `mount`'s parent in `container` (whose
    /// volume must be freshly created, so files made since the snapshot are gone).
    pub async fn restore<R: ContainerRuntime>(
        &self,
        rt: &R,
        container: &str,
        row: &SnapshotRow,
        mount: &str,
    ) -> Result<(), SnapshotError> {
        let path = self.verify(row).await?;
        let parent = Path::new(mount)
            .parent()
            .map_or_else(|| "/".to_owned(), |p| p.display().to_string());
        rt.archive_upload(container, &parent, &path).await?;
        Ok(())
    }

    /// Marks an update's `writing` snapshots failed (an interrupted attempt) and removes
    /// their partial files.
    pub async fn discard_incomplete(&self, update_id: i64) -> Result<(), SnapshotError> {
        for s in self.store.snapshots_of_update(update_id).await? {
            if s.state == "writing" {
                let _ = tokio::fs::remove_file(self.partial_of(&s.id)).await;
                let _ = tokio::fs::remove_file(self.path_of(&s.id)).await;
                self.store.set_snapshot_state(&s.id, "failed").await?;
            }
        }
        Ok(())
    }

    /// Applies retention; returns how many snapshots were deleted.
    pub async fn cleanup(&self, now: DateTime<Utc>) -> Result<usize, SnapshotError> {
        let live = self.store.live_snapshots().await?;
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
            self.store.set_snapshot_state(id, "deleted").await?;
            tracing::info!(snapshot = %id, "snapshot deleted by retention");
        }
        Ok(victims.len())
    }
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` is a properly sized out-param.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; statvfs only writes into `st`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // reason: field widths differ between platforms
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
