//! Copy-on-write where the filesystem offers it: on an XFS filesystem made with reflinks
//! (a loop device the test mounts), the snapshot directory is found to clone, and a
//! snapshot and a restore of 128 MiB take almost no space — the files are cloned, not
//! copied — while the same snapshot with cloning off takes the whole 128 MiB. The
//! restored tree is exact either way.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::snapshot::incremental::{Capture, Layout, capture, refill, reflink};
use sluice::snapshot::tree::manifest_of;

use crate::snapshot_fidelity::random_file;
use crate::support::run;

/// An XFS filesystem with reflinks, on a loop device, mounted at `dir`; gone on drop.
struct Xfs {
    dir: PathBuf,
}

impl Xfs {
    fn make(at: &Path, mib: u64) -> Self {
        let image = at.join("xfs.img");
        let dir = at.join("xfs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image));
        // A small fixed preallocation: XFS's speculative one is trimmed later, which
        // would move the free space this test measures.
        run(Command::new("mount")
            .args(["-o", "loop,allocsize=64k"])
            .arg(&image)
            .arg(&dir));
        Self { dir }
    }

    /// Bytes free for unprivileged writers, once everything written is on disk.
    fn free(&self) -> u64 {
        run(Command::new("sync").arg("-f").arg(&self.dir));
        let out = run(Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.dir));
        let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

fn stage(root: &Path, store: &Path, clone: bool) -> sluice::snapshot::incremental::Captured {
    capture(&Capture {
        root,
        layout: &Layout::new(store),
        base: None,
        min_free: 0,
        reflink: clone,
        precopy: false,
        fault: None,
    })
    .unwrap()
}

#[test]
fn on_a_reflink_filesystem_snapshots_and_restores_clone_instead_of_copying() {
    let t = tempfile::tempdir().unwrap();
    let fs = Xfs::make(t.path(), 1024);
    let volume = fs.dir.join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    for i in 0..64u64 {
        random_file(&volume.join(format!("f{i:02}")), 2 << 20, 7 + i);
    }
    run(Command::new("sync").arg("-f").arg(&volume));
    let store = fs.dir.join("snapshots");
    assert!(reflink::supported(&store), "XFS with reflink=1 clones");
    let data = 128u64 << 20;

    let before = fs.free();
    let cloned = stage(&volume, &store, true);
    let used = before.saturating_sub(fs.free());
    assert!(
        used < 16 << 20,
        "a cloned snapshot took {used} bytes of {data}"
    );

    let restored = fs.dir.join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    let before = fs.free();
    refill(
        &Layout::new(&store),
        &cloned.manifest,
        &restored,
        true,
        None,
    )
    .unwrap();
    let used = before.saturating_sub(fs.free());
    assert!(
        used < 16 << 20,
        "a cloned restore took {used} bytes of {data}"
    );
    assert_eq!(
        manifest_of(&restored).unwrap(),
        manifest_of(&volume).unwrap()
    );
    for i in [0u64, 31, 63] {
        let name = format!("f{i:02}");
        assert_eq!(
            std::fs::read(restored.join(&name)).unwrap(),
            std::fs::read(volume.join(&name)).unwrap()
        );
    }

    // The measurement can tell: the same snapshot, copied, takes the whole volume.
    let before = fs.free();
    stage(&volume, &fs.dir.join("copied"), false);
    let used = before.saturating_sub(fs.free());
    assert!(
        used >= data - (8 << 20),
        "a copied snapshot took only {used} bytes"
    );
}
