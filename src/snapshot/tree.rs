//! A volume's tree on the Docker host: archived to a tar file, restored from one, and
//! described by a manifest that both sides compute the same way.
//!
//! What is kept, for every entry: contents, type, permission bits (with setuid, setgid,
//! sticky), owner and group, mtime to the nanosecond, symlink targets, hard links (one
//! inode, one data copy, the link count within the tree), empty directories, holes in
//! sparse files (GNU sparse entries: a hole is written back as a hole), names that are not
//! UTF-8, FIFOs and device nodes, and extended attributes where the filesystem has them.
//! Sockets are skipped, as GNU tar does: they cannot be restored meaningfully.
//!
//! The manifest is a sha256 over one record per entry, in walk order (name order, parents
//! first): path, type, mode, owner, group, size (files), mtime, link target, the first path
//! of its hard-link group, and the names and value hashes of its xattrs. Contents are not
//! in the manifest: they are covered by the archive's own sha256, checked before any
//! restore. Two trees with equal manifests hold the same names with the same metadata.
//!
//! Everything here is synchronous (run it in `spawn_blocking`) and never follows a symlink.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

mod unpack;
pub(super) use unpack::set_mtime;
pub use unpack::{clear_dir, sync_fs, unpack_tar};

/// What a tree holds, in short: the manifest digest and how many entries it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub sha256: String,
    pub entries: u64,
}

/// One entry found by the walk.
pub(super) struct Found {
    /// Relative to the root; empty for the root itself.
    pub(super) rel: PathBuf,
    pub(super) abs: PathBuf,
    pub(super) meta: fs::Metadata,
}

/// Visits `root` and everything below it, parents before children, names in byte order.
/// Sockets are skipped.
pub(super) fn walk(root: &Path, mut visit: impl FnMut(&Found) -> io::Result<()>) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut stack = vec![Found {
        rel: PathBuf::new(),
        abs: root.to_path_buf(),
        meta,
    }];
    while let Some(f) = stack.pop() {
        if f.meta.file_type().is_socket() {
            continue;
        }
        visit(&f)?;
        if f.meta.is_dir() {
            let mut children: Vec<_> = fs::read_dir(&f.abs)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?;
            children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in children.into_iter().rev() {
                let abs = f.abs.join(&name);
                let meta = fs::symlink_metadata(&abs)?;
                stack.push(Found {
                    rel: f.rel.join(&name),
                    abs,
                    meta,
                });
            }
        }
    }
    Ok(())
}

pub(super) fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else {
        "other"
    }
}

/// The extended attributes of `path` (not following a symlink), sorted by name. A
/// filesystem without xattr support has none.
pub(super) fn xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(key) = name.to_str() else { continue };
        if let Some(v) = xattr::get(path, &name)? {
            out.push((key.to_owned(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// Builds the manifest record by record.
pub(super) struct ManifestBuilder {
    hasher: Sha256,
    entries: u64,
    /// (dev, inode) → first path, for files with more than one link.
    links: HashMap<(u64, u64), PathBuf>,
}

impl ManifestBuilder {
    pub(super) fn new() -> Self {
        Self {
            hasher: Sha256::new(),
            entries: 0,
            links: HashMap::new(),
        }
    }

    /// Adds `f`; returns the first path of its hard-link group when `f` is a later link.
    pub(super) fn add(
        &mut self,
        f: &Found,
        xattrs: &[(String, Vec<u8>)],
    ) -> io::Result<Option<PathBuf>> {
        let size = if f.meta.is_file() { f.meta.len() } else { 0 };
        self.add_sized(f, xattrs, size)
    }

    /// [`Self::add`] recording `size` for a regular file: the bytes actually read when the
    /// file grew or shrank under the read.
    pub(super) fn add_sized(
        &mut self,
        f: &Found,
        xattrs: &[(String, Vec<u8>)],
        size: u64,
    ) -> io::Result<Option<PathBuf>> {
        let m = &f.meta;
        let mut first = None;
        if m.is_file() && m.nlink() > 1 {
            match self.links.get(&(m.dev(), m.ino())) {
                Some(p) => first = Some(p.clone()),
                None => {
                    self.links.insert((m.dev(), m.ino()), f.rel.clone());
                }
            }
        }
        let h = &mut self.hasher;
        h.update(f.rel.as_os_str().as_bytes());
        h.update([0]);
        let size = if m.is_file() { size } else { 0 };
        h.update(
            format!(
                "{}\0{:o}\0{}\0{}\0{size}\0{}.{:09}\0",
                kind(m),
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec(),
            )
            .as_bytes(),
        );
        if m.file_type().is_symlink() {
            h.update(fs::read_link(&f.abs)?.as_os_str().as_bytes());
        }
        h.update([0]);
        if let Some(p) = &first {
            h.update(p.as_os_str().as_bytes());
        }
        h.update([0]);
        if m.file_type().is_char_device() || m.file_type().is_block_device() {
            h.update(m.rdev().to_string().as_bytes());
        }
        for (k, v) in xattrs {
            h.update(k.as_bytes());
            h.update(b"=");
            h.update(Sha256::digest(v));
            h.update([0]);
        }
        h.update(b"\n");
        self.entries += 1;
        Ok(first)
    }

    pub(super) fn finish(self) -> Manifest {
        Manifest {
            sha256: hex::encode(self.hasher.finalize()),
            entries: self.entries,
        }
    }
}

/// The manifest of the tree at `root`.
pub fn manifest_of(root: &Path) -> io::Result<Manifest> {
    let mut b = ManifestBuilder::new();
    walk(root, |f| {
        let x = xattrs(&f.abs)?;
        b.add(f, &x).map(drop)
    })?;
    Ok(b.finish())
}

/// About the size of the archive [`write_tar`] makes of `root`: a header per entry and
/// the allocated data of each file (holes are not archived).
pub fn archive_size(root: &Path) -> io::Result<u64> {
    let mut total = 1024u64;
    walk(root, |f| {
        total += 1024;
        if f.meta.is_file() {
            total += f.meta.len().min(f.meta.blocks() * 512);
        }
        Ok(())
    })?;
    Ok(total)
}

/// The manifest of `root` together with a hash of every file's contents (test build
/// only: what a step run twice must leave unchanged).
#[cfg(feature = "fault-injection")]
pub fn content_fingerprint(root: &Path) -> io::Result<String> {
    let mut h = Sha256::new();
    walk(root, |f| {
        if f.meta.is_file() {
            h.update(f.rel.as_os_str().as_bytes());
            io::copy(&mut File::open(&f.abs)?, &mut h)?;
        }
        Ok(())
    })?;
    Ok(format!(
        "{} {}",
        manifest_of(root)?.sha256,
        hex::encode(h.finalize())
    ))
}

/// The path an entry has inside the archive: `./` for the root, `./rel` below it.
fn archive_name(rel: &Path) -> PathBuf {
    Path::new(".").join(rel)
}

/// Archives the tree at `root` into `out` and returns its manifest.
pub fn write_tar<W: Write>(root: &Path, out: W) -> io::Result<(W, Manifest)> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.sparse(true);
    tar.mode(tar::HeaderMode::Complete);
    let mut manifest = ManifestBuilder::new();
    walk(root, |f| {
        let x = xattrs(&f.abs)?;
        let first_link = manifest.add(f, &x)?;
        let mut pax: Vec<(String, Vec<u8>)> = vec![(
            "mtime".to_owned(),
            format!("{}.{:09}", f.meta.mtime(), f.meta.mtime_nsec()).into_bytes(),
        )];
        pax.extend(x.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)));
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        let name = archive_name(&f.rel);
        match first_link {
            Some(target) => {
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&f.meta, tar::HeaderMode::Complete);
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                tar.append_link(&mut h, &name, archive_name(&target))
            }
            None if f.meta.is_file() => {
                // Looking for holes costs syscalls: only where blocks say there are some.
                tar.sparse(f.meta.blocks() * 512 < f.meta.len());
                tar.append_file(&name, &mut File::open(&f.abs)?)
            }
            None => tar.append_path_with_name(&f.abs, &name),
        }
    })?;
    let out = tar.into_inner()?;
    Ok((out, manifest.finish()))
}

#[cfg(test)]
#[path = "tree_tests.rs"]
pub(super) mod tests;
