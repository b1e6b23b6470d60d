//! A stage and a restore as whole operations on paths, with a report that crosses a
//! process boundary as one JSON line: the daemon calls these in-process when it reaches
//! the volume's directory itself, and `sluice snapshot-helper` calls them inside the
//! helper container when it does not. Same code, same results.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Capture, Layout, capture, read_manifest, refill, write_manifest};

/// What a stage wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageReport {
    /// sha256 of the manifest file written.
    pub sha256: String,
    /// The tree's metadata digest (`tree::manifest_of`).
    pub tree_sha256: String,
    pub entries: u64,
    pub logical_bytes: u64,
    pub new_bytes: u64,
    pub files_read: u64,
    pub files_reused: u64,
}

/// One stage's inputs.
pub struct Stage<'a> {
    pub store: &'a Path,
    pub volume: &'a Path,
    /// Where the manifest goes (inside `store`).
    pub out: &'a Path,
    /// The manifest to compare with, and its recorded sha256 when it is a complete one.
    /// One that is missing or damaged is ignored: everything is read.
    pub base: Option<(&'a Path, Option<&'a str>)>,
    pub min_free: u64,
    pub precopy: bool,
    pub reflink: bool,
    pub fault: Option<(Option<&'static str>, &'static str)>,
}

/// Captures the volume and writes the manifest atomically.
pub fn run_stage(s: &Stage<'_>) -> io::Result<StageReport> {
    let layout = Layout::new(s.store);
    let base = s.base.and_then(|(p, sha)| read_manifest(p, sha).ok());
    let c = capture(&Capture {
        root: s.volume,
        layout: &layout,
        base: base.as_ref(),
        min_free: s.min_free,
        reflink: s.reflink,
        precopy: s.precopy,
        fault: s.fault,
    })?;
    let sha256 = write_manifest(&c.manifest, s.out)?;
    Ok(StageReport {
        sha256,
        tree_sha256: c.manifest.tree_sha256,
        entries: c.manifest.entries.len() as u64,
        logical_bytes: c.manifest.logical_bytes,
        new_bytes: c.new_bytes,
        files_read: c.files_read,
        files_reused: c.files_reused,
    })
}

/// What a restore left in the volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    /// The restored tree's metadata digest, to compare with the snapshot's.
    pub tree_sha256: String,
    pub entries: u64,
}

/// Empties `volume` and refills it from the manifest at `manifest` (which must still
/// hash to `sha256`); returns the restored tree's digest. The objects are checked by the
/// caller beforehand ([`super::verify_objects`]), before anything was stopped.
pub fn run_restore(
    store: &Path,
    volume: &Path,
    manifest: &Path,
    sha256: &str,
    reflink: bool,
    fault: Option<(Option<&'static str>, &'static str, &'static str)>,
) -> io::Result<RestoreReport> {
    let layout = Layout::new(store);
    let m = read_manifest(manifest, Some(sha256))?;
    refill(&layout, &m, volume, reflink, fault)?;
    let got = crate::snapshot::tree::manifest_of(volume)?;
    Ok(RestoreReport {
        tree_sha256: got.sha256,
        entries: got.entries,
    })
}
