use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

use super::unpack::set_mtime;
use super::*;
use std::ffi::OsStr;

/// A tree with one of everything the module promises to keep.
pub(in crate::snapshot) fn fill(root: &Path) {
    fs::create_dir_all(root.join("nested/deeper")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::write(root.join("plain.txt"), b"hello").unwrap();
    fs::write(root.join("with space.txt"), b"spaces").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"bytes").unwrap();
    fs::write(root.join("nested/deeper/a"), vec![7u8; 100_000]).unwrap();
    fs::hard_link(root.join("nested/deeper/a"), root.join("hardlink")).unwrap();
    symlink("nested/deeper/a", root.join("rel-link")).unwrap();
    symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    // 64 MiB file with data only at the start and the end.
    let f = File::create(root.join("sparse.img")).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(root.join("sparse.img"))
        .unwrap();
    f.write_all(b"head").unwrap();
    std::io::Seek::seek(&mut f, io::SeekFrom::Start((64 << 20) - 4)).unwrap();
    f.write_all(b"tail").unwrap();
    drop(f);
    fs::set_permissions(root.join("plain.txt"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    // Owners other than the test's own (only root may give files away).
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::lchown(root.join("with space.txt"), Some(1234), Some(4321)).unwrap();
        std::os::unix::fs::lchown(root.join("rel-link"), Some(99), Some(98)).unwrap();
    }
    let _ = xattr::set(root.join("plain.txt"), "user.tenant", b"acme");
    set_mtime(&root.join("plain.txt"), 1_600_000_000, 123_456_789).unwrap();
    set_mtime(&root.join("rel-link"), 1_500_000_000, 5).unwrap();
    set_mtime(&root.join("nested"), 1_400_000_000, 42).unwrap();
}

fn roundtrip(src: &Path, dst: &Path) -> Manifest {
    let (bytes, m) = write_tar(src, Vec::new()).unwrap();
    fs::create_dir_all(dst).unwrap();
    unpack_tar(bytes.as_slice(), dst).unwrap();
    m
}

#[test]
fn a_tree_comes_back_with_the_same_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fill(&src);
    let m = roundtrip(&src, &dst);
    assert_eq!(m, manifest_of(&src).unwrap(), "walk and archive agree");
    assert_eq!(manifest_of(&dst).unwrap(), m);
    assert_eq!(m.entries, 12);
    assert_eq!(fs::read(dst.join("hardlink")).unwrap(), vec![7u8; 100_000]);
    let a = fs::metadata(dst.join("hardlink")).unwrap();
    let b = fs::metadata(dst.join("nested/deeper/a")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "one inode, two links");
    assert_eq!(
        fs::read_link(dst.join("dangling")).unwrap(),
        Path::new("/nowhere/at/all")
    );
    let p = fs::metadata(dst.join("plain.txt")).unwrap();
    assert_eq!((p.mode() & 0o7777, p.mtime_nsec()), (0o4751, 123_456_789));
}

#[test]
fn holes_stay_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fill(&src);
    let (bytes, _) = write_tar(&src, Vec::new()).unwrap();
    assert!(
        bytes.len() < 8 << 20,
        "the archive holds no hole: {}",
        bytes.len()
    );
    fs::create_dir(&dst).unwrap();
    unpack_tar(bytes.as_slice(), &dst).unwrap();
    let before = fs::metadata(src.join("sparse.img")).unwrap();
    let after = fs::metadata(dst.join("sparse.img")).unwrap();
    assert_eq!(after.len(), 64 << 20);
    assert!(
        after.blocks() <= before.blocks() + 64,
        "restored file uses {} blocks, original {}",
        after.blocks(),
        before.blocks()
    );
    let data = fs::read(dst.join("sparse.img")).unwrap();
    assert_eq!(&data[..4], b"head");
    assert_eq!(&data[data.len() - 4..], b"tail");
}

#[test]
fn a_changed_tree_has_another_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fill(&src);
    let m = manifest_of(&src).unwrap();
    fs::set_permissions(
        src.join("with space.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_ne!(manifest_of(&src).unwrap(), m, "a mode change shows");
    let m = manifest_of(&src).unwrap();
    fs::remove_file(src.join("hardlink")).unwrap();
    assert_ne!(manifest_of(&src).unwrap(), m, "a missing link shows");
}

#[test]
fn restoring_over_a_cleared_volume_removes_what_came_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs::create_dir(&src).unwrap();
    fill(&src);
    let (bytes, m) = write_tar(&src, Vec::new()).unwrap();
    fs::create_dir(&dst).unwrap();
    unpack_tar(bytes.as_slice(), &dst).unwrap();
    fs::write(dst.join("written-after"), b"x").unwrap();
    fs::remove_file(dst.join("plain.txt")).unwrap();
    clear_dir(&dst).unwrap();
    unpack_tar(bytes.as_slice(), &dst).unwrap();
    assert_eq!(manifest_of(&dst).unwrap(), m);
}

#[test]
fn an_entry_that_leaves_the_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_entry_type(tar::EntryType::Regular);
    // `append_data` refuses `..`, so write the name into the header by hand.
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let e = unpack_tar(bytes.as_slice(), &root).unwrap_err();
    assert!(e.to_string().contains("leaves the volume"), "{e}");
    assert!(!tmp.path().join("escape").exists());
}

#[test]
fn an_entry_below_a_symlink_of_the_archive_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_link(&mut h, "./escape", &outside).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_data(&mut h, "./escape/planted", &b"x"[..])
        .unwrap();
    let bytes = b.into_inner().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let e = unpack_tar(bytes.as_slice(), &root).unwrap_err();
    assert!(e.to_string().contains("through a symlink"), "{e}");
    assert!(!outside.join("planted").exists());
}
