//! Restoring a volume from a manifest and its objects: the volume's directory emptied,
//! every entry made again in walk order with its owner, mode, xattrs and (last, so
//! writing children does not move them) mtimes; file contents cloned where the
//! filesystem allows, else copied extent by extent so holes stay holes. Names are checked
//! as an archive's are: nothing climbs out of the root or passes through a symlink the
//! manifest made.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{Entry, Kind, Layout, StoreLock, VolumeManifest, bad_data, reflink};
use crate::snapshot::tree::{clear_dir, set_mtime, sync_fs};

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn mknod(p: &Path, mode: libc::mode_t, rdev: u64) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), mode, rdev as libc::dev_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_xattrs(p: &Path, e: &Entry) -> io::Result<()> {
    for (k, v) in &e.xattrs {
        xattr::set(p, OsStr::new(k), &hex::decode(v).map_err(bad_data)?)?;
    }
    Ok(())
}

/// Owner first (it clears set-id bits), then the mode; never through a symlink.
fn own(p: &Path, e: &Entry) -> io::Result<()> {
    lchown(p, e.uid, e.gid)?;
    if e.kind != Kind::Symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(e.mode))?;
    }
    set_xattrs(p, e)
}

fn checked(rel: &Path, symlinks: &HashSet<PathBuf>) -> io::Result<()> {
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(bad_data(format!(
            "manifest entry {} leaves the volume",
            rel.display()
        )));
    }
    if rel.ancestors().skip(1).any(|a| symlinks.contains(a)) {
        return Err(bad_data(format!(
            "manifest entry {} leaves the volume through a symlink",
            rel.display()
        )));
    }
    Ok(())
}

fn write_file(layout: &Layout, e: &Entry, dst: &Path, use_reflink: bool) -> io::Result<()> {
    let sha = e
        .object
        .as_deref()
        .ok_or_else(|| bad_data(format!("file {} has no object", dst.display())))?;
    let src = File::open(layout.object(sha)).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("object {sha} of {}: {err}", dst.display()),
        )
    })?;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(dst)?;
    if !(use_reflink && reflink::clone_file(&src, &out).is_ok()) {
        let whole = [(0, e.size)];
        let extents = e.extents.as_deref().unwrap_or(&whole);
        for &(off, len) in extents {
            copy_extent(&src, &out, off, len).map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("object {sha} of {}: {err}", dst.display()),
                )
            })?;
        }
    }
    out.set_len(e.size)?;
    Ok(())
}

/// Copies `[off, off+len)` of `src` to the same place in `dst`, in the kernel
/// (`copy_file_range`: no trip through user space, and a clone on filesystems that
/// share extents); by reading and writing where the kernel refuses.
fn copy_extent(src: &File, dst: &File, off: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let end = off + len;
    let mut at = off;
    while at < end {
        let mut from = i64::try_from(at).map_err(bad_data)?;
        let mut to = from;
        let want = usize::try_from((end - at).min(1 << 30)).map_err(bad_data)?;
        // SAFETY: both descriptors are open for the call; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut from,
                dst.as_raw_fd(),
                &mut to,
                want,
                0,
            )
        };
        if n > 0 {
            at += n as u64;
            continue;
        }
        if n == 0 {
            return Err(bad_data("the object is shorter than its file"));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => {
                return copy_by_reading(src, dst, at, end);
            }
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
    Ok(())
}

fn copy_by_reading(src: &File, dst: &File, mut at: u64, end: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while at < end {
        let want = usize::try_from((end - at).min(buf.len() as u64)).map_err(bad_data)?;
        let n = src.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(bad_data("the object is shorter than its file"));
        }
        dst.write_all_at(&buf[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Empties `root` and makes `m`'s tree in it from the store's objects (holding the store
/// lock shared), then flushes the filesystem. `fault` is reached after emptying
/// (`restore.cleared`) and halfway through the entries (the second label).
pub fn refill(
    layout: &Layout,
    m: &VolumeManifest,
    root: &Path,
    use_reflink: bool,
    fault: Option<(Option<&'static str>, &'static str, &'static str)>,
) -> io::Result<()> {
    let _lock = StoreLock::shared(&layout.dir)?;
    clear_dir(root)?;
    if let Some((phase, cleared, _)) = fault {
        crate::fault::point_blocking(phase, cleared);
    }
    let mut times: Vec<(PathBuf, (i64, i64))> = Vec::new();
    let mut symlinks = HashSet::new();
    let half = m.entries.len() / 2;
    for (i, e) in m.entries.iter().enumerate() {
        if i == half
            && let Some((phase, _, mid)) = fault
        {
            crate::fault::point_blocking(phase, mid);
        }
        let rel = e.rel_path()?;
        if rel.as_os_str().is_empty() {
            if e.kind != Kind::Dir {
                return Err(bad_data("the manifest's root is not a directory"));
            }
            for (k, _) in crate::snapshot::tree::xattrs(root)? {
                xattr::remove(root, &k)?;
            }
            own(root, e)?;
            times.push((root.to_path_buf(), e.mtime));
            continue;
        }
        checked(&rel, &symlinks)?;
        let dst = root.join(&rel);
        match e.kind {
            Kind::Dir => fs::create_dir(&dst)?,
            Kind::File => write_file(layout, e, &dst, use_reflink)?,
            Kind::Symlink => {
                let target =
                    hex::decode(e.target.as_deref().unwrap_or_default()).map_err(bad_data)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dst)?;
                symlinks.insert(rel.clone());
            }
            Kind::Link => {
                let target =
                    hex::decode(e.target.as_deref().unwrap_or_default()).map_err(bad_data)?;
                let target = PathBuf::from(OsStr::from_bytes(&target));
                checked(&target, &symlinks)?;
                fs::hard_link(root.join(target), &dst)?;
                continue;
            }
            Kind::Fifo => mknod(&dst, libc::S_IFIFO | e.mode, 0)?,
            Kind::Char => mknod(&dst, libc::S_IFCHR | e.mode, e.rdev.unwrap_or(0))?,
            Kind::Block => mknod(&dst, libc::S_IFBLK | e.mode, e.rdev.unwrap_or(0))?,
        }
        own(&dst, e)?;
        times.push((dst, e.mtime));
    }
    for (path, (sec, nsec)) in times.iter().rev() {
        set_mtime(path, *sec, *nsec)?;
    }
    sync_fs(root)
}
