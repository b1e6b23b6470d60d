use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::snapshot::tree::{manifest_of, set_mtime, tests::fill};

fn take(root: &Path, layout: &Layout, base: Option<&VolumeManifest>) -> Captured {
    capture(&Capture {
        root,
        layout,
        base,
        min_free: 0,
        reflink: false,
        precopy: false,
        fault: None,
    })
    .unwrap()
}

fn contents(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.is_file() {
            out.push((p.display().to_string(), fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out.into_iter()
        .map(|(p, c)| (p.replacen(&root.display().to_string(), "", 1), c))
        .collect()
}

#[test]
fn a_tree_comes_back_exactly_from_its_manifest_and_objects() {
    let t = tempfile::tempdir().unwrap();
    let (src, dst) = (t.path().join("src"), t.path().join("dst"));
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fill(&src);
    fs::write(dst.join("stale"), b"left from before").unwrap();
    let layout = Layout::new(t.path().join("store"));
    let c = take(&src, &layout, None);
    assert_eq!(c.manifest.tree_sha256, manifest_of(&src).unwrap().sha256);
    verify_objects(&layout, &c.manifest).unwrap();
    refill(&layout, &c.manifest, &dst, false, None).unwrap();
    assert_eq!(manifest_of(&dst).unwrap(), manifest_of(&src).unwrap());
    assert_eq!(contents(&dst), contents(&src));
    // The sparse file is sparse in the store and after the restore.
    let sparse = fs::metadata(dst.join("sparse.img")).unwrap();
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "holes filled: {} blocks",
        sparse.blocks()
    );
    // The same contents under two names (a hard link) are one object.
    assert!(c.new_bytes < 1 << 20, "stored {} bytes", c.new_bytes);
}

#[test]
fn a_second_snapshot_reads_and_stores_only_what_changed() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..100u8 {
        fs::write(src.join(format!("f{i}")), vec![i; 64 * 1024]).unwrap();
        set_mtime(&src.join(format!("f{i}")), 1_600_000_000, 0).unwrap();
    }
    let layout = Layout::new(t.path().join("store"));
    let first = take(&src, &layout, None);
    assert_eq!(first.files_read, 100);
    // Changed with the same size and mtime: only the ctime tells.
    fs::write(src.join("f7"), vec![99u8; 64 * 1024]).unwrap();
    set_mtime(&src.join("f7"), 1_600_000_000, 0).unwrap();
    fs::remove_file(src.join("f8")).unwrap();
    fs::write(src.join("new"), b"new file").unwrap();
    let second = take(&src, &layout, Some(&first.manifest));
    assert_eq!(second.files_read, 2, "f7 and new are read, nothing else");
    assert_eq!(second.files_reused, 98);
    assert!(
        second.new_bytes <= 2 * 64 * 1024,
        "stored {}",
        second.new_bytes
    );
    let dst = t.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    refill(&layout, &second.manifest, &dst, false, None).unwrap();
    assert_eq!(contents(&dst), contents(&src));
    assert!(!dst.join("f8").exists(), "a deleted file stays deleted");
    assert_eq!(manifest_of(&dst).unwrap(), manifest_of(&src).unwrap());
}

#[test]
fn a_change_right_after_a_stage_is_caught_by_the_next_whatever_the_clock_tick() {
    // Write, capture, rewrite with the same size and mtime at once: the rewrite may land
    // in the same coarse clock tick as the first write (same ctime); either the ctime or
    // the "changed at or after the scan began" rule must send the next stage to read it.
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let layout = Layout::new(t.path().join("store"));
    for round in 0..50u32 {
        let p = src.join("hot");
        fs::write(&p, format!("{round:08}-a")).unwrap();
        set_mtime(&p, 1_600_000_000, 0).unwrap();
        let first = take(&src, &layout, None);
        fs::write(&p, format!("{round:08}-b")).unwrap();
        set_mtime(&p, 1_600_000_000, 0).unwrap();
        let second = take(&src, &layout, Some(&first.manifest));
        let dst = t.path().join(format!("dst{round}"));
        fs::create_dir_all(&dst).unwrap();
        refill(&layout, &second.manifest, &dst, false, None).unwrap();
        assert_eq!(
            fs::read(dst.join("hot")).unwrap(),
            format!("{round:08}-b").as_bytes()
        );
    }
}

#[test]
fn a_damaged_or_missing_object_fails_the_check_and_the_restore_loudly() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"tenant data").unwrap();
    fs::write(src.join("b"), b"more tenant data").unwrap();
    let layout = Layout::new(t.path().join("store"));
    let c = take(&src, &layout, None);
    let obj = |name: &str| {
        let want = hex::encode(name);
        let e = c.manifest.entries.iter().find(|e| e.path == want).unwrap();
        layout.object(e.object.as_ref().unwrap())
    };
    // Same size, other bytes.
    let mut f = fs::OpenOptions::new().write(true).open(obj("a")).unwrap();
    f.write_all(b"TENANT").unwrap();
    drop(f);
    let err = verify_objects(&layout, &c.manifest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("damaged") && err.contains("file a"), "{err}");
    fs::write(obj("a"), b"tenant data").unwrap();
    verify_objects(&layout, &c.manifest).unwrap();
    fs::remove_file(obj("b")).unwrap();
    let err = verify_objects(&layout, &c.manifest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("file b"), "{err}");
    let dst = t.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    let err = refill(&layout, &c.manifest, &dst, false, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("object"), "{err}");
}

#[test]
fn collection_frees_only_what_no_kept_manifest_names() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("kept"), vec![1u8; 10_000]).unwrap();
    fs::write(src.join("gone"), vec![2u8; 10_000]).unwrap();
    let layout = Layout::new(t.path().join("store"));
    let old = take(&src, &layout, None);
    write_manifest(&old.manifest, &layout.manifest("old")).unwrap();
    fs::remove_file(src.join("gone")).unwrap();
    let new = take(&src, &layout, Some(&old.manifest));
    let sha = write_manifest(&new.manifest, &layout.manifest("new")).unwrap();
    // A writer holding the lock keeps the collector out.
    let writer = StoreLock::shared(&layout.dir).unwrap();
    assert!(StoreLock::try_exclusive(&layout.dir).unwrap().is_none());
    drop(writer);
    let lock = StoreLock::try_exclusive(&layout.dir).unwrap().unwrap();
    assert_eq!(manifest_ids(&layout).unwrap(), ["new", "old"]);
    let gone: HashSet<String> = HashSet::new();
    assert_eq!(
        collect_garbage(&layout, &lock, &gone)
            .unwrap()
            .objects_removed,
        0
    );
    let gone: HashSet<String> = ["old".to_owned()].into();
    let done = collect_garbage(&layout, &lock, &gone).unwrap();
    assert_eq!((done.manifests_removed, done.objects_removed), (1, 1));
    drop(lock);
    let m = read_manifest(&layout.manifest("new"), Some(&sha)).unwrap();
    verify_objects(&layout, &m).unwrap();
    assert!(read_manifest(&layout.manifest("new"), Some("0000")).is_err());
}

#[test]
fn reflink_detection_says_no_on_a_filesystem_without_it_and_copies_agree() {
    let t = tempfile::tempdir().unwrap();
    let supported = reflink::supported(t.path());
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fill(&src);
    let layout = Layout::new(t.path().join("store"));
    // Asking for clones where there are none falls back to copying, same result.
    let c = capture(&Capture {
        root: &src,
        layout: &layout,
        base: None,
        min_free: 0,
        reflink: true,
        precopy: false,
        fault: None,
    })
    .unwrap();
    let dst = t.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    refill(&layout, &c.manifest, &dst, true, None).unwrap();
    assert_eq!(manifest_of(&dst).unwrap(), manifest_of(&src).unwrap());
    assert_eq!(contents(&dst), contents(&src));
    let fs_type = std::process::Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(t.path())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if fs_type.starts_with("ext") || fs_type == "tmpfs" {
        assert!(!supported, "{fs_type} has no reflinks");
    }
}

#[test]
fn a_file_that_never_stops_changing_is_kept_as_read_and_restores_consistently() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("log"), vec![b'x'; 4 << 20]).unwrap();
    fs::write(src.join("quiet"), b"still").unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, p) = (stop.clone(), src.join("log"));
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(b"line\n").unwrap();
            }
        })
    };
    let layout = Layout::new(t.path().join("store"));
    let c = take(&src, &layout, None);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let log = c
        .manifest
        .entries
        .iter()
        .find(|e| e.path == hex::encode("log"))
        .unwrap();
    assert!(
        log.stat.is_none(),
        "a file read while it changed is never trusted"
    );
    let dst = t.path().join("dst");
    fs::create_dir_all(&dst).unwrap();
    refill(&layout, &c.manifest, &dst, false, None).unwrap();
    // What was recorded is what comes back, to the byte count and the mtime.
    assert_eq!(manifest_of(&dst).unwrap().sha256, c.manifest.tree_sha256);
    assert_eq!(fs::metadata(dst.join("log")).unwrap().len(), log.size);
}
