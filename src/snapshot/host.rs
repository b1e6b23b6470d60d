//! The byte-level helpers of snapshots: archiving and restoring a volume directory on
//! this host (in `spawn_blocking`), a reader and a writer that hash what passes through,
//! and the free space of the snapshot directory.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::*;

/// Archives the volume directory `dir` into `partial`: sha256 of the file, manifest of
/// the tree, fsynced.
pub(super) async fn archive_host_tree(
    dir: PathBuf,
    partial: PathBuf,
) -> Result<SnapshotDone, SnapshotError> {
    let at = partial.clone();
    let phase = crate::fault::phase();
    tokio::task::spawn_blocking(move || -> std::io::Result<SnapshotDone> {
        let file = std::fs::File::create(&partial)?;
        let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        out.midway = Some(phase);
        let (out, manifest) = tree::write_tar(&dir, out)?;
        let (buf, size, sha256) = out.finish();
        let file = buf
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all().map_err(|e| {
            std::io::Error::new(e.kind(), format!("fsync of the snapshot file: {e}"))
        })?;
        Ok(SnapshotDone {
            size,
            sha256,
            manifest_sha256: Some(manifest.sha256),
            entries: Some(manifest.entries),
            method: METHOD_HOST,
        })
    })
    .await
    .map_err(|e| SnapshotError::Io {
        path: at.display().to_string(),
        source: std::io::Error::other(e),
    })?
    .map_err(io(&at))
}

/// Empties `dir`, extracts `file` into it (hashing what it reads: a file that no longer
/// has the sha256 `expected_sha` fails the restore), flushes it and returns the restored
/// manifest. Callers check the whole file before anything is stopped (see the saga's
/// `restore_volumes`); the hash here catches a file changed since, in the same read.
pub(super) fn restore_host_tree(
    phase: Option<&'static str>,
    id: &str,
    file: &Path,
    expected_sha: &str,
    dir: &Path,
) -> Result<tree::Manifest, SnapshotError> {
    let f = std::fs::File::open(file).map_err(io(file))?;
    tree::clear_dir(dir).map_err(io(dir))?;
    crate::fault::point_blocking(phase, "restore.cleared");
    let mut reader = HashingReader::new(std::io::BufReader::with_capacity(1 << 20, f));
    reader.midway = Some(phase);
    tree::unpack_tar(&mut reader, dir).map_err(io(dir))?;
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io(file))?;
    if reader.finish() != expected_sha {
        return Err(SnapshotError::Invalid {
            id: id.to_owned(),
            reason: "checksum mismatch while restoring; the volume is incomplete".to_owned(),
        });
    }
    tree::sync_fs(dir).map_err(io(dir))?;
    tree::manifest_of(dir).map_err(io(dir))
}

/// Hashes what is read through it.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    /// The fault point `unpack.mid` of this phase is still ahead.
    midway: Option<Option<&'static str>>,
}

impl<R: std::io::Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            read: 0,
            midway: None,
        }
    }
    fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read >= MIDWAY
            && let Some(phase) = self.midway.take()
        {
            crate::fault::point_blocking(phase, "unpack.mid");
        }
        Ok(n)
    }
}

/// Bytes into a stream at which its fault point (`…/archive.mid`, `…/unpack.mid`) sits.
pub(super) const MIDWAY: u64 = 32 << 20;

/// Counts and hashes what passes through to the inner writer.
pub(super) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
    /// The fault point `archive.mid` of this phase is still ahead.
    midway: Option<Option<&'static str>>,
}

impl<W: std::io::Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
            midway: None,
        }
    }
    fn finish(mut self) -> (W, u64, String) {
        let _ = self.inner.flush();
        (self.inner, self.size, hex::encode(self.hasher.finalize()))
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        if self.size >= MIDWAY
            && let Some(phase) = self.midway.take()
        {
            crate::fault::point_blocking(phase, "archive.mid");
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
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
