//! The restore side of a volume's tree: emptying it, unpacking an archive into it (names
//! checked, nothing followed out of the root, hard links made within it, mtimes set last),
//! and flushing it to disk. See the parent module for what is kept.

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::xattrs;

/// Removes everything inside `root`, keeping `root` itself.
pub fn clear_dir(root: &Path) -> io::Result<()> {
    for e in fs::read_dir(root)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Sets the mtime (to the nanosecond) of `path` without following a symlink.
pub(in crate::snapshot) fn set_mtime(path: &Path, sec: i64, nsec: i64) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` holds two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn parse_mtime(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((sec.parse().ok()?, digits.parse().ok()?))
}

/// Extracts an archive made by [`write_tar`] into `root` (an empty directory: call
/// [`clear_dir`] first), with owners, modes, xattrs, holes and hard links, then sets
/// every mtime (directories last, so writing their children does not move them).
///
/// Every name is checked: no `..`, nothing absolute, and nothing below a symlink the
/// archive itself created, so no entry can land outside `root`.
pub fn unpack_tar<R: Read>(src: R, root: &Path) -> io::Result<()> {
    let mut ar = tar::Archive::new(src);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(false);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let mut times: Vec<(PathBuf, i64, i64)> = Vec::new();
    let mut symlinks: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = inside(&entry.path()?, &symlinks)?;
        let dst = root.join(&rel);
        let mtime = entry
            .pax_extensions()?
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .find(|e| e.key_bytes() == b"mtime")
            .and_then(|e| parse_mtime(e.value_bytes()));
        let header_mtime = entry.header().mtime()?;
        let (sec, nsec) = mtime.unwrap_or((i64::try_from(header_mtime).unwrap_or(0), 0));
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            apply_root(&mut entry, root)?;
        } else if kind == tar::EntryType::Link {
            let target = entry.link_name()?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "hard link without a target")
            })?;
            let target = inside(&target, &symlinks)?;
            fs::hard_link(root.join(target), &dst)?;
            continue;
        } else {
            if kind == tar::EntryType::Symlink {
                symlinks.insert(rel.clone());
            }
            entry.unpack(&dst)?;
        }
        times.push((dst, sec, nsec));
    }
    for (path, sec, nsec) in times.iter().rev() {
        set_mtime(path, *sec, *nsec)?;
    }
    Ok(())
}

/// `name` (from the archive) as a path relative to the volume: `.` components dropped,
/// refused when it climbs (`..`), is absolute, or passes through a symlink the archive
/// made (`symlinks`).
fn inside(name: &Path, symlinks: &std::collections::HashSet<PathBuf>) -> io::Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in name.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::Normal(p) => rel.push(p),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("archive entry {} leaves the volume", name.display()),
                ));
            }
        }
    }
    if rel.ancestors().skip(1).any(|a| symlinks.contains(a)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "archive entry {} leaves the volume through a symlink",
                name.display()
            ),
        ));
    }
    Ok(rel)
}

/// The archive's root entry describes the volume's own directory: its mode, owner and
/// xattrs are applied to `root` (which exists: it is the volume).
fn apply_root<R: Read>(entry: &mut tar::Entry<'_, R>, root: &Path) -> io::Result<()> {
    let h = entry.header();
    let mode = h.mode()?;
    let uid = h.uid()?;
    let gid = h.gid()?;
    let c = CString::new(root.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (uid, gid) = (
        libc::uid_t::try_from(uid).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        libc::gid_t::try_from(gid).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
    );
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    for (k, _) in xattrs(root)? {
        xattr::remove(root, &k)?;
    }
    if let Some(exts) = entry.pax_extensions()? {
        for e in exts.flatten() {
            if let Some(name) = e.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                xattr::set(root, OsStr::from_bytes(name), e.value_bytes())?;
            }
        }
    }
    Ok(())
}

/// Flushes the filesystem holding `path` to disk.
pub fn sync_fs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    // SAFETY: `f` is an open file descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
