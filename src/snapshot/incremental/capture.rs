//! One stage of a snapshot: walk the volume, keep each file whose inode, size, mtime and
//! ctime equal the base manifest's record (its object is already stored), read and store
//! every other, and describe everything in a new manifest. With the container running
//! this is the pre-copy; stopped, the same walk over the pre-copy is the delta, which
//! reads only what changed since and leaves out what was deleted.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::objects::put;
use super::{Entry, Kind, Layout, Stat, StoreLock, VolumeManifest, bad_data};
use crate::snapshot::tree::{Found, ManifestBuilder, kind, walk, xattrs};

/// What a stage reads and where it writes.
pub struct Capture<'a> {
    /// The volume's directory.
    pub root: &'a std::path::Path,
    pub layout: &'a Layout,
    /// The manifest whose unchanged files need no reading (the pre-copy, or the
    /// volume's previous snapshot).
    pub base: Option<&'a VolumeManifest>,
    /// Free bytes the store must keep (`[snapshots] min_free_bytes`).
    pub min_free: u64,
    pub reflink: bool,
    /// The pre-copy (the container runs): a file that changes under the read is kept as
    /// read, marked untrusted, instead of read again.
    pub precopy: bool,
    /// The fault point reached once the first file is stored: (phase, label).
    pub fault: Option<(Option<&'static str>, &'static str)>,
}

/// A stage's result.
#[derive(Debug)]
pub struct Captured {
    pub manifest: VolumeManifest,
    /// Bytes added to the store by this stage.
    pub new_bytes: u64,
    pub files_read: u64,
    pub files_reused: u64,
}

fn stat_of(m: &fs::Metadata) -> Stat {
    Stat {
        ino: m.ino(),
        size: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    }
}

/// The ctime the kernel gives a file made now in the store: later changes to any file
/// get a ctime at least this (same kernel clock, coarse ticks).
fn scan_ctime(layout: &Layout) -> io::Result<(i64, i64)> {
    let marker = layout.tmp().join(format!(
        ".scan-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let f = File::create(&marker)?;
    let m = f.metadata()?;
    drop(f);
    fs::remove_file(&marker)?;
    Ok((m.ctime(), m.ctime_nsec()))
}

/// Runs one stage (holding the store's lock shared) and syncs the store.
pub fn capture(c: &Capture<'_>) -> io::Result<Captured> {
    c.layout.create()?;
    let _lock = StoreLock::shared(&c.layout.dir)?;
    let scan = scan_ctime(c.layout)?;
    let base: HashMap<&str, &Entry> = c
        .base
        .map(|b| {
            b.entries
                .iter()
                .filter(|e| e.kind == Kind::File && e.stat.is_some() && e.object.is_some())
                .map(|e| (e.path.as_str(), e))
                .collect()
        })
        .unwrap_or_default();
    let mut builder = ManifestBuilder::new();
    let mut out = Captured {
        manifest: VolumeManifest {
            format: super::FORMAT,
            tree_sha256: String::new(),
            logical_bytes: 0,
            scan_ctime: scan,
            entries: Vec::new(),
        },
        new_bytes: 0,
        files_read: 0,
        files_reused: 0,
    };
    let mut fault = c.fault;
    walk(c.root, |f| {
        let path = hex::encode(f.rel.as_os_str().as_bytes());
        let (entry, found) = if f.meta.is_file() {
            file_entry(c, f, path, &base, scan, &mut out)?
        } else {
            (other_entry(f, path)?, None)
        };
        let found = found.as_ref().unwrap_or(f);
        let x = xattrs(&found.abs)?;
        let first = if entry.kind == Kind::File {
            builder.add_sized(found, &x, entry.size)?
        } else {
            builder.add(found, &x)?
        };
        let mut entry = entry;
        entry.xattrs = x.into_iter().map(|(k, v)| (k, hex::encode(v))).collect();
        if let Some(p) = first {
            entry.kind = Kind::Link;
            entry.target = Some(hex::encode(p.as_os_str().as_bytes()));
            entry.object = None;
            entry.extents = None;
            entry.stat = None;
        } else if entry.kind == Kind::File {
            out.manifest.logical_bytes += entry.size;
            if let Some((phase, label)) = fault.take() {
                crate::fault::point_blocking(phase, label);
            }
        }
        out.manifest.entries.push(entry);
        Ok(())
    })?;
    out.manifest.tree_sha256 = builder.finish().sha256;
    crate::snapshot::tree::sync_fs(&c.layout.dir)?;
    Ok(out)
}

fn meta_entry(m: &fs::Metadata, path: String, kind: Kind) -> Entry {
    Entry {
        path,
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        size: 0,
        object: None,
        extents: None,
        target: None,
        rdev: None,
        xattrs: Vec::new(),
        stat: None,
    }
}

fn other_entry(f: &Found, path: String) -> io::Result<Entry> {
    let k = match kind(&f.meta) {
        "dir" => Kind::Dir,
        "symlink" => Kind::Symlink,
        "fifo" => Kind::Fifo,
        "char" => Kind::Char,
        "block" => Kind::Block,
        other => {
            return Err(bad_data(format!(
                "{}: cannot snapshot an entry of type {other}",
                f.abs.display()
            )));
        }
    };
    let mut e = meta_entry(&f.meta, path, k);
    match k {
        Kind::Symlink => {
            e.target = Some(hex::encode(fs::read_link(&f.abs)?.as_os_str().as_bytes()));
        }
        Kind::Char | Kind::Block => e.rdev = Some(f.meta.rdev()),
        _ => {}
    }
    Ok(e)
}

/// A regular file's entry: its object reused when the base recorded it unchanged, else
/// read now (again, up to three times, while it changes under the read). Returns the
/// metadata the entry was made from when it differs from the walk's.
fn file_entry(
    c: &Capture<'_>,
    f: &Found,
    path: String,
    base: &HashMap<&str, &Entry>,
    scan: (i64, i64),
    out: &mut Captured,
) -> io::Result<(Entry, Option<Found>)> {
    let now = stat_of(&f.meta);
    if let Some(b) = base.get(path.as_str())
        && b.stat == Some(now)
        && let Some(sha) = &b.object
        && fs::symlink_metadata(c.layout.object(sha)).is_ok()
    {
        let mut e = meta_entry(&f.meta, path, Kind::File);
        e.size = now.size;
        e.object = Some(sha.clone());
        e.extents = b.extents.clone();
        e.stat = Some(now);
        out.files_reused += 1;
        return Ok((e, None));
    }
    let mut last_err = None;
    for attempt in 0..3 {
        // A file that keeps changing under a stopped container (another writer on a shared
        // volume) is finally kept as read, as an archive would: recorded as it was read,
        // never trusted by a later stage.
        let lenient = c.precopy || attempt == 2;
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
            .open(&f.abs)
            .or_else(|_| {
                File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&f.abs)
            })?;
        let before = file.metadata()?;
        if !before.is_file() || (before.ino() != f.meta.ino() && !lenient) {
            last_err = Some("replaced while read");
            continue;
        }
        let stored = put(c.layout, &file, before.len(), c.min_free, c.reflink)?;
        let after = file.metadata()?;
        let stable = stat_of(&after) == stat_of(&before) && stored.len == after.len();
        out.new_bytes += stored.new_bytes;
        out.files_read += 1;
        if !stable && !lenient {
            last_err = Some("changed while read");
            continue;
        }
        if !stable && !c.precopy {
            tracing::warn!(file = %f.abs.display(), "file kept changing while snapshotted; kept as last read");
        }
        let mut e = meta_entry(&after, path, Kind::File);
        e.size = stored.len;
        e.object = Some(stored.sha);
        e.extents = stored.extents;
        let s = stat_of(&after);
        e.stat = (stable && s.ctime < scan).then_some(s);
        let found = Found {
            rel: f.rel.clone(),
            abs: f.abs.clone(),
            meta: after,
        };
        return Ok((e, Some(found)));
    }
    Err(io::Error::other(format!(
        "{}: {} three times in a row",
        f.abs.display(),
        last_err.unwrap_or("unreadable")
    )))
}

/// Allocated bytes of the files under `root` that `base` does not record unchanged: about
/// what a snapshot taken now would add to the store.
pub fn changed_bytes(root: &std::path::Path, base: Option<&VolumeManifest>) -> io::Result<u64> {
    let known: HashMap<&str, Stat> = base
        .map(|b| {
            b.entries
                .iter()
                .filter_map(|e| Some((e.path.as_str(), e.stat?)))
                .collect()
        })
        .unwrap_or_default();
    let mut total = 0u64;
    walk(root, |f| {
        if f.meta.is_file() {
            let path = hex::encode(f.rel.as_os_str().as_bytes());
            if known.get(path.as_str()) != Some(&stat_of(&f.meta)) {
                total += f.meta.len().min(f.meta.blocks() * 512);
            }
        }
        Ok(())
    })?;
    Ok(total)
}
