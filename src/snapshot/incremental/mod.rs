//! The incremental snapshot store: a volume's tree is kept as one manifest per snapshot
//! (every entry's name, type and metadata, in walk order) plus content-addressed objects
//! (a regular file's contents, named by their sha256, stored once however many snapshots
//! and volumes hold them). See `docs/reconciler.md` → "Snapshots" for why this layout.
//!
//! ```text
//! <dir>/.lock                        shared by writers, exclusive for the collector
//! <dir>/objects/<aa>/<sha256>        a file's contents (holes kept as holes)
//! <dir>/objects/tmp/                 objects being written
//! <dir>/manifests/<id>.json          a complete snapshot (its sha256 is in the row)
//! <dir>/manifests/<id>.precopy.json  the pre-copy of a snapshot still being taken
//! ```
//!
//! A snapshot is taken in two stages over the same walk ([`capture`]): a pre-copy while
//! the container still runs (inconsistent, never restored: it only saves reading), then,
//! stopped, a delta that re-reads exactly the files whose inode, size, mtime or ctime
//! differ from the pre-copy and drops what was deleted. Everything here is synchronous;
//! the helper container runs the same code through `sluice snapshot-helper`.

mod capture;
mod lock;
mod objects;
mod refill;
pub mod reflink;
mod stage;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use capture::{Capture, Captured, capture, changed_bytes};
pub use lock::StoreLock;
pub use objects::{Collected, collect_garbage, manifest_ids, verify_objects};
pub use refill::refill;
pub use stage::{RestoreReport, Stage, StageReport, run_restore, run_stage};

/// Version of the manifest format written here.
pub const FORMAT: u32 = 1;

/// One snapshot of a volume's tree.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolumeManifest {
    pub format: u32,
    /// The tree's metadata digest, as `tree::manifest_of` computes it for the volume.
    pub tree_sha256: String,
    /// Sum of the regular files' sizes.
    pub logical_bytes: u64,
    /// ctime of a file made in the store just before the walk: an entry changed at or
    /// after it is not trusted by a later stage's comparison (timestamps are coarse).
    pub scan_ctime: (i64, i64),
    pub entries: Vec<Entry>,
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A further name of a file met earlier in the walk (`target`).
    Link,
    Fifo,
    Char,
    Block,
}

/// One entry of the tree, root first (`path` empty), parents before children.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Hex of the path's bytes relative to the root (names need not be UTF-8).
    pub path: String,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    #[serde(default)]
    pub size: u64,
    /// sha256 of a file's contents (the object's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Data extents `(offset, length)` of a file with holes; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extents: Option<Vec<(u64, u64)>>,
    /// Hex: a symlink's target, or the first path of a hard link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Extended attributes: name, hex value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<(String, String)>,
    /// What the file looked like when read; absent when it may have changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
}

/// The fields a later stage compares to decide a file is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Entry {
    pub fn rel_path(&self) -> io::Result<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = hex::decode(&self.path).map_err(bad_data)?;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))
    }
}

pub(super) fn bad_data(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Where things live in a store directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }
    pub fn object(&self, sha: &str) -> PathBuf {
        let prefix = sha.get(..2).unwrap_or("00");
        self.objects().join(prefix).join(sha)
    }
    pub fn tmp(&self) -> PathBuf {
        self.objects().join("tmp")
    }
    pub fn manifests(&self) -> PathBuf {
        self.dir.join("manifests")
    }
    /// The manifest of a complete snapshot.
    pub fn manifest(&self, id: &str) -> PathBuf {
        self.manifests().join(format!("{id}.json"))
    }
    /// The pre-copy manifest of a snapshot being taken.
    pub fn precopy(&self, id: &str) -> PathBuf {
        self.manifests().join(format!("{id}.precopy.json"))
    }
    pub fn create(&self) -> io::Result<()> {
        std::fs::create_dir_all(self.tmp())?;
        std::fs::create_dir_all(self.manifests())
    }
}

/// Writes `m` to `path` atomically (a partial file, synced, renamed, the directory
/// synced); returns the sha256 of the bytes written.
pub fn write_manifest(m: &VolumeManifest, path: &Path) -> io::Result<String> {
    let bytes = serde_json::to_vec(m).map_err(bad_data)?;
    let partial = path.with_extension("json.partial");
    {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&partial, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Reads a manifest; with `expected`, refuses one whose bytes no longer hash to it.
pub fn read_manifest(path: &Path, expected: Option<&str>) -> io::Result<VolumeManifest> {
    let bytes = std::fs::read(path)?;
    if let Some(want) = expected {
        let got = hex::encode(Sha256::digest(&bytes));
        if got != want {
            return Err(bad_data(format!(
                "manifest {} has sha256 {got}, recorded {want}: it was changed or damaged",
                path.display()
            )));
        }
    }
    let m: VolumeManifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad_data(format!("manifest {}: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(bad_data(format!(
            "manifest {} has format {}, this version reads {FORMAT}",
            path.display(),
            m.format
        )));
    }
    Ok(m)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
