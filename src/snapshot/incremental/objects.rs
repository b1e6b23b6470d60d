//! Content-addressed objects: a regular file's contents stored once under the sha256 of
//! those contents, written to `objects/tmp/` and renamed into place (an object that
//! exists is complete), holes kept as holes; checking every object a manifest names
//! before a restore; and collecting the objects no kept manifest names.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::{Kind, Layout, StoreLock, VolumeManifest, bad_data, reflink};

const CHUNK: usize = 1 << 20;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// An object stored (or found stored) for one file.
pub(super) struct Stored {
    pub sha: String,
    /// Data extents when the file has holes.
    pub extents: Option<Vec<(u64, u64)>>,
    /// The object's size: the file's length when it was read.
    pub len: u64,
    /// Bytes this call added to the store (0 when the object was there).
    pub new_bytes: u64,
}

/// Data extents of `f` (`SEEK_DATA`/`SEEK_HOLE`) up to `len`.
fn data_extents(f: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos: i64 = 0;
    let len_i = i64::try_from(len).map_err(bad_data)?;
    while pos < len_i {
        // SAFETY: `fd` is open for the duration of the call.
        let data = unsafe { libc::lseek(fd, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(e);
        }
        if data >= len_i {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let end = hole.min(len_i);
        out.push((data as u64, (end - data) as u64));
        pos = end;
    }
    Ok(out)
}

fn hash_zeros(h: &mut Sha256, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Copies `[off, off+len)` of `src` to the same place in `dst` (when given), hashing it;
/// a source shorter than expected is hashed as zeros to `off+len` (the caller sets the
/// length, so the object reads back as what was hashed).
fn copy_range(
    src: &File,
    dst: Option<&File>,
    off: u64,
    len: u64,
    h: &mut Sha256,
    buf: &mut [u8],
) -> io::Result<()> {
    let mut at = off;
    let end = off + len;
    while at < end {
        let want = usize::try_from((end - at).min(buf.len() as u64)).map_err(bad_data)?;
        let n = src.read_at(&mut buf[..want], at)?;
        if n == 0 {
            hash_zeros(h, end - at);
            return Ok(());
        }
        h.update(&buf[..n]);
        if let Some(d) = dst {
            d.write_all_at(&buf[..n], at)?;
        }
        at += n as u64;
    }
    Ok(())
}

/// Hashes `f`'s logical contents (holes as zeros) over `len` bytes, reading only its data.
fn hash_file(f: &File, len: u64, sparse: bool, h: &mut Sha256, buf: &mut [u8]) -> io::Result<()> {
    let extents = if sparse {
        data_extents(f, len)?
    } else {
        vec![(0, len)]
    };
    let mut pos = 0;
    for (off, n) in extents {
        hash_zeros(h, off - pos);
        copy_range(f, None, off, n, h, buf)?;
        pos = off + n;
    }
    hash_zeros(h, len - pos);
    Ok(())
}

fn tmp_name(layout: &Layout) -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    layout.tmp().join(format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Stores the contents of `src` (open, `len` bytes as stat said) as an object.
///
/// Refuses before writing when the store would keep less than `min_free` bytes free.
pub(super) fn put(
    layout: &Layout,
    src: &File,
    len: u64,
    min_free: u64,
    use_reflink: bool,
) -> io::Result<Stored> {
    let meta = src.metadata()?;
    let sparse = meta.blocks() * 512 < meta.len();
    let free = crate::snapshot::host::free_bytes(&layout.dir)?;
    let need = meta.blocks() * 512;
    if free < need.saturating_add(min_free) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "not enough space in the snapshot directory: {free} bytes free, a file of \
                 {need} bytes and snapshots.min_free_bytes {min_free} needed"
            ),
        ));
    }
    let tmp = tmp_name(layout);
    let out = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = (|| -> io::Result<Stored> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let extents;
        let len = if use_reflink && reflink::clone_file(src, &out).is_ok() {
            // The clone is a fixed copy: hash it, not the live file.
            let len = out.metadata()?.len();
            extents = if sparse {
                Some(data_extents(&out, len)?)
            } else {
                None
            };
            hash_file(&out, len, sparse, &mut h, &mut buf)?;
            len
        } else {
            let ext = if sparse {
                data_extents(src, len)?
            } else {
                vec![(0, len)]
            };
            let mut pos = 0;
            for &(off, n) in &ext {
                hash_zeros(&mut h, off - pos);
                copy_range(src, Some(&out), off, n, &mut h, &mut buf)?;
                pos = off + n;
            }
            hash_zeros(&mut h, len - pos);
            out.set_len(len)?;
            extents = sparse.then_some(ext);
            len
        };
        let sha = hex::encode(h.finalize());
        let dest = layout.object(&sha);
        if fs::symlink_metadata(&dest).is_ok() {
            fs::remove_file(&tmp)?;
            return Ok(Stored {
                sha,
                extents,
                len,
                new_bytes: 0,
            });
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        let new_bytes = out.metadata()?.blocks() * 512;
        fs::rename(&tmp, &dest)?;
        Ok(Stored {
            sha,
            extents,
            len,
            new_bytes,
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Checks that every object `m` names is present, has its file's size and still hashes
/// to its name. Nothing is written.
pub fn verify_objects(layout: &Layout, m: &VolumeManifest) -> io::Result<()> {
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; CHUNK];
    for e in &m.entries {
        let (Kind::File, Some(sha)) = (e.kind, e.object.as_ref()) else {
            continue;
        };
        if !seen.insert(sha.as_str()) {
            continue;
        }
        let name = String::from_utf8_lossy(&hex::decode(&e.path).unwrap_or_default()).into_owned();
        let path = layout.object(sha);
        let f = File::open(&path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("object {sha} (file {name}) cannot be read: {err}"),
            )
        })?;
        let len = f.metadata()?.len();
        if len != e.size {
            return Err(bad_data(format!(
                "object {sha} (file {name}) holds {len} bytes, the manifest says {}",
                e.size
            )));
        }
        let mut h = Sha256::new();
        hash_file(&f, len, e.extents.is_some(), &mut h, &mut buf)?;
        let got = hex::encode(h.finalize());
        if &got != sha {
            return Err(bad_data(format!(
                "object {sha} (file {name}) is damaged: its contents hash to {got}"
            )));
        }
    }
    Ok(())
}

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    pub manifests_removed: u64,
    pub objects_removed: u64,
    pub bytes_freed: u64,
}

/// The snapshot id a manifest file belongs to (`None`: a partial write).
fn manifest_id(name: &str) -> Option<&str> {
    if name.ends_with(".partial") {
        return None;
    }
    name.strip_suffix(".precopy.json")
        .or_else(|| name.strip_suffix(".json"))
}

/// The ids of the snapshots whose manifests are in the store.
pub fn manifest_ids(layout: &Layout) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    if !layout.manifests().exists() {
        return Ok(out);
    }
    for e in fs::read_dir(layout.manifests())? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(id) = manifest_id(&name) {
            out.push(id.to_owned());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// With the store's exclusive `lock` held: removes the manifests of the snapshots in
/// `gone` (deleted or failed ones) and of interrupted writes, then every object that no
/// remaining manifest names, and any leftover of an interrupted object write. A
/// manifest that cannot be read stops it before any object is removed. A manifest of a
/// snapshot not named in `gone` is kept whatever it is: a store shared by mistake with
/// another host loses nothing.
pub fn collect_garbage(
    layout: &Layout,
    _lock: &StoreLock,
    gone: &HashSet<String>,
) -> io::Result<Collected> {
    let mut done = Collected::default();
    if !layout.manifests().exists() {
        return Ok(done);
    }
    let mut referenced: HashSet<String> = HashSet::new();
    let mut drop_list = Vec::new();
    for e in fs::read_dir(layout.manifests())? {
        let path = e?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        match manifest_id(&name) {
            Some(id) if !gone.contains(id) => {
                let m = super::read_manifest(&path, None)?;
                referenced.extend(m.entries.into_iter().filter_map(|e| e.object));
            }
            _ => drop_list.push(path),
        }
    }
    for path in drop_list {
        fs::remove_file(&path)?;
        done.manifests_removed += 1;
    }
    for dir in fs::read_dir(layout.objects())? {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            continue;
        }
        let is_tmp = dir.file_name() == "tmp";
        for obj in fs::read_dir(dir.path())? {
            let obj = obj?;
            let name = obj.file_name();
            if is_tmp || !referenced.contains(name.to_string_lossy().as_ref()) {
                let size = obj.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
                fs::remove_file(obj.path())?;
                if !is_tmp {
                    done.objects_removed += 1;
                    done.bytes_freed += size;
                }
            }
        }
    }
    Ok(done)
}
