//! Snapshots you can bet a tenant's data on, on real Docker: a failing update of a
//! workspace with two volumes (one at a nested mount path holding over 1 GiB, one with
//! thousands of small files) brings back every file with its contents, type, mode, owner,
//! mtime, link target, hard links, holes and xattrs; and a snapshot directory that is too
//! small, or fills up during a snapshot, fails the update cleanly without touching data.
//!
//! The manifest here is written independently of sluice's own (`snapshot::tree`), so the
//! test checks the product rather than agreeing with it.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use sluice::domain::UpdatePhase;
use sluice::domain::spec::VolumeMount;

use crate::reconciler::{Env, env_with, inspect_json};
use crate::support::run;

/// The directory of a Docker volume on this host.
pub fn mountpoint(volume: &str) -> PathBuf {
    PathBuf::from(
        run(Command::new("docker").args(["volume", "inspect", "-f", "{{.Mountpoint}}", volume]))
            .trim(),
    )
}

/// One line per entry: path, type, mode, owner, size, mtime (ns), link count, link
/// target, sha256 of the contents, xattrs; `skip` names are left out (files the app
/// itself appends to at each boot).
pub fn manifest(root: &Path, skip: &[&str]) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        if skip.iter().any(|s| rel == s.as_bytes()) {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).unwrap();
        let t = m.file_type();
        let mut line = format!(
            "{} {:o} {}:{} mtime={}.{:09} nlink={}",
            if t.is_dir() {
                "dir"
            } else if t.is_symlink() {
                "link"
            } else {
                "file"
            },
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec(),
            if t.is_dir() { 0 } else { m.nlink() },
        );
        if t.is_symlink() {
            line += &format!(" -> {:?}", std::fs::read_link(&p).unwrap());
        } else if t.is_file() {
            let mut h = Sha256::new();
            std::io::copy(&mut std::fs::File::open(&p).unwrap(), &mut h).unwrap();
            line += &format!(" size={} sha256={}", m.len(), hex::encode(h.finalize()));
        }
        if !t.is_symlink() {
            let mut names: Vec<_> = xattr::list(&p).unwrap().collect();
            names.sort();
            for n in names {
                let v = xattr::get(&p, &n).unwrap().unwrap_or_default();
                line += &format!(" xattr:{}={}", n.to_string_lossy(), hex::encode(v));
            }
        }
        out.insert(rel, line);
        if t.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let t = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid path and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            t.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

/// Writes `len` bytes of pseudo-random data (xorshift: no repeats a compressor or a
/// deduplicating layer could exploit). The seed is mixed before the low bit is set, so
/// every seed gives other data (`seed | 1` alone made 2k and 2k+1 the same file).
pub fn random_file(p: &Path, len: usize, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(p).unwrap());
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

/// Every case the snapshot must keep, in `big` (the app's data dir) and `small`.
fn fill(big: &Path, small: &Path, big_len: usize) {
    random_file(&big.join("tenant.db"), big_len, 42);
    // 200 MiB with three islands of data: holes must stay holes.
    let mut f = std::fs::File::create(big.join("holes.img")).unwrap();
    f.set_len(200 << 20).unwrap();
    for off in [0u64, 100 << 20, (200 << 20) - 5] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(b"data!").unwrap();
    }
    drop(f);
    std::fs::create_dir_all(big.join("nested/deeper")).unwrap();
    std::fs::create_dir(big.join("empty dir")).unwrap();
    std::fs::write(big.join("nested/deeper/config"), b"k=v\n").unwrap();
    std::fs::hard_link(big.join("nested/deeper/config"), big.join("config.link")).unwrap();
    std::os::unix::fs::symlink("nested/deeper/config", big.join("current")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", big.join("dangling")).unwrap();
    std::fs::write(big.join("name with spaces.txt"), b"spaces").unwrap();
    std::fs::write(big.join(OsStr::from_bytes(b"caf\xe9-latin1")), b"bytes").unwrap();
    std::fs::set_permissions(
        big.join("nested/deeper/config"),
        PermissionsExt::from_mode(0o4750),
    )
    .unwrap();
    std::fs::set_permissions(big.join("empty dir"), PermissionsExt::from_mode(0o1777)).unwrap();
    std::os::unix::fs::lchown(big.join("name with spaces.txt"), Some(1234), Some(4321)).unwrap();
    std::os::unix::fs::lchown(big.join("current"), Some(99), Some(98)).unwrap();
    xattr::set(big.join("name with spaces.txt"), "user.tenant", b"acme").unwrap();
    set_mtime(
        &big.join("name with spaces.txt"),
        1_600_000_000,
        123_456_789,
    );
    set_mtime(&big.join("current"), 1_500_000_000, 7);
    set_mtime(&big.join("nested/deeper"), 1_400_000_000, 1);
    for d in 0..50 {
        let dir = small.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for i in 0..100 {
            std::fs::write(dir.join(format!("f{i:03}")), format!("{d}/{i}")).unwrap();
        }
    }
}

/// Allocated bytes of a file (what `du` shows).
fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// A workspace with the app's data at a nested mount and a second volume of small files.
async fn two_volume_env(tag: &str, tune: impl FnOnce(&mut sluice::config::Settings)) -> Env {
    env_with(
        tag,
        |spec, name| {
            spec.volumes = vec![
                VolumeMount::new(format!("{name}-big"), "/var/lib/app/data"),
                VolumeMount::new(format!("{name}-small"), "/srv/small"),
            ];
            spec.env
                .insert("DATA_DIR".to_owned(), "/var/lib/app/data".to_owned());
        },
        tune,
    )
    .await
}

fn volumes(e: &Env) -> (PathBuf, PathBuf) {
    let name = e.ws.name.as_str();
    (
        mountpoint(&format!("{name}-big")),
        mountpoint(&format!("{name}-small")),
    )
}

#[tokio::test]
async fn a_failed_update_brings_back_every_file_of_two_volumes_exactly() {
    let e = two_volume_env("fid-roll", |_| {}).await;
    brings_back_every_file(e, 1 << 30).await;
}

/// The same through the helper container sluice builds from its own binary: the volume
/// reached through the Docker API alone, same store, same result.
#[tokio::test]
async fn through_the_helper_container_a_failed_update_brings_back_every_file_exactly() {
    let since = chrono::Utc::now().timestamp().to_string();
    let e = two_volume_env("fid-helper", |s| {
        s.snapshots.access = sluice::config::SnapshotAccess::Helper;
        s.snapshots.helper_binary = Some(env!("CARGO_BIN_EXE_sluice").into());
    })
    .await;
    let name = e.ws.name.to_string();
    brings_back_every_file(e, 128 << 20).await;
    let until = chrono::Utc::now().timestamp().to_string();
    let created = run(Command::new("docker").args([
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=create",
        "--filter",
        "label=sluice.purpose=snapshot-helper",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]));
    // The failing update (the workspace's second): two volumes, a pre-copy and a delta
    // each, then a restore each.
    let mine: Vec<_> = created
        .lines()
        .filter(|n| n.contains(&format!("{name}-u2-")))
        .collect();
    let count = |p: &str| mine.iter().filter(|n| n.starts_with(p)).count();
    assert_eq!(count("sluice-snap-"), 4, "{mine:?}");
    assert_eq!(count("sluice-restore-"), 2, "{mine:?}");
}

async fn brings_back_every_file(mut e: Env, big_len: usize) {
    let d1 = e.fixture("good", "v1");
    let d3 = e.fixture("migrates-then-fails", "v3");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    let (big, small) = volumes(&e);
    fill(&big, &small, big_len);
    let skip = ["boots.log"];
    let (big_before, small_before) = (manifest(&big, &skip), manifest(&small, &skip));
    let holes_before = allocated(&big.join("holes.img"));

    e.desire(&d3).await;
    e.rec.converge_all().await.expect("converge");
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "error: {:?}", u.error);
    assert_eq!(e.http("/version"), "v1");

    let big_after = manifest(&big, &skip);
    for (k, v) in &big_before {
        assert_eq!(
            big_after.get(k),
            Some(v),
            "{} differs after rollback",
            String::from_utf8_lossy(k)
        );
    }
    assert_eq!(big_after.len(), big_before.len(), "entries added or lost");
    assert_eq!(manifest(&small, &skip), small_before);
    assert_eq!(small_before.len(), 5_051);
    let holes_after = allocated(&big.join("holes.img"));
    assert!(
        holes_after <= holes_before + (1 << 20),
        "the sparse file came back with {holes_after} bytes allocated, was {holes_before}"
    );
    // Each snapshot records its volume, mount path and method.
    for id in &u.snapshot_ids {
        let s = e.store.snapshot(id).await.unwrap();
        assert_eq!(s.method.as_deref(), Some("store"));
        let mount = if s.volume.ends_with("-big") {
            "/var/lib/app/data"
        } else {
            "/srv/small"
        };
        assert_eq!(s.mount_path.as_deref(), Some(mount));
        assert!(s.manifest_sha256.is_some());
    }
    assert_eq!(u.snapshot_ids.len(), 2);
}

/// A tmpfs of `mib` MiB mounted over a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m"),
            "tmpfs",
            at.to_str().unwrap(),
        ]));
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

fn started_at(container: &str) -> String {
    inspect_json(container)["State"]["StartedAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_update_that_cannot_be_backed_up_never_stops_the_workspace() {
    let mut e = two_volume_env("fid-space", |_| {}).await;
    let _fs = Tmpfs::mount(&e.dir.path().join("snapshots"), 64);
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    let (big, _) = volumes(&e);
    random_file(&big.join("tenant.db"), 100 << 20, 7);
    let before = manifest(&big, &["boots.log"]);
    let started = started_at(&e.container());

    e.desire(&d2).await;
    e.rec.converge_all().await.expect("converge");
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Failed);
    let why = u.error.unwrap_or_default();
    assert!(
        why.contains("cannot back up volumes") && why.contains("need about"),
        "{why}"
    );
    assert_eq!(
        started_at(&e.container()),
        started,
        "the container was stopped"
    );
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(manifest(&big, &["boots.log"]), before);
    assert!(
        e.store.snapshots_of_update(u.id).await.unwrap().is_empty(),
        "no snapshot was started"
    );
}

#[tokio::test]
async fn a_disk_that_fills_during_a_snapshot_fails_the_update_and_restores_nothing() {
    let mut e = two_volume_env("fid-enospc", |_| {}).await;
    let snap_dir = e.dir.path().join("snapshots");
    let _fs = Tmpfs::mount(&snap_dir, 512);
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    let (big, small) = volumes(&e);
    random_file(&big.join("tenant.db"), 300 << 20, 9);
    let (big_before, small_before) = (
        manifest(&big, &["boots.log"]),
        manifest(&small, &["boots.log"]),
    );
    let container_id = inspect_json(&e.container())["Id"].clone();

    e.desire(&d2).await;
    let rec = e.rec.clone();
    let saga = tokio::spawn(async move { rec.converge_all().await });
    // As soon as the snapshot starts writing (its pre-copy, the container still
    // running), something else takes the rest of the disk.
    let filler = snap_dir.join("other-tenant.bin");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let writing = std::fs::read_dir(snap_dir.join("objects/tmp"))
            .map(|d| d.flatten().next().is_some())
            .unwrap_or(false);
        if writing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no snapshot started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![1u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    saga.await.unwrap().expect("converge");
    let _ = std::fs::remove_file(&filler);

    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Failed, "error: {:?}", u.error);
    let why = u.error.unwrap_or_default();
    // Refused before a write that would not fit, or the write that found the disk full.
    assert!(
        why.contains("snapshotting")
            && (why.contains("No space left") || why.contains("not enough space")),
        "{why}"
    );
    let left: Vec<_> = std::fs::read_dir(snap_dir.join("objects/tmp"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name())
        .collect();
    assert!(left.is_empty(), "half-written objects left: {left:?}");
    let snaps = e.store.snapshots_of_update(u.id).await.unwrap();
    assert!(
        snaps
            .iter()
            .all(|s| s.state == sluice::domain::SnapshotState::Failed),
        "{snaps:?}"
    );
    // The same container runs again on untouched data: nothing was restored.
    assert_eq!(inspect_json(&e.container())["Id"], container_id);
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(manifest(&big, &["boots.log"]), big_before);
    assert_eq!(manifest(&small, &["boots.log"]), small_before);
    let w = e.workspace().await;
    assert_eq!(w.actual_digest.as_ref(), Some(&d1));
}

#[tokio::test]
async fn a_corrupt_snapshot_is_never_restored_and_is_kept_for_inspection() {
    let mut e = env_with("fid-corrupt", |_, _| {}, |_| {}).await;
    let d1 = e.fixture("good", "v1");
    let d3 = e.fixture("bad-health", "v3");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    let data = mountpoint(&e.volume);
    random_file(&data.join("tenant.db"), 4 << 20, 3);

    e.desire(&d3).await;
    let rec = e.rec.clone();
    let saga = tokio::spawn(async move { rec.converge_all().await });
    // Once the snapshot is complete (the new version is starting or failing its health
    // check), the file on disk is damaged: half of it is lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let snap = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Some(u) = e.store.latest_update(e.ws.id).await.unwrap() else {
            continue;
        };
        if u.to_digest != d3 {
            continue;
        }
        let done = e.store.snapshots_of_update(u.id).await.unwrap();
        if let Some(s) = done
            .into_iter()
            .find(|s| s.state == sluice::domain::SnapshotState::Complete)
        {
            break s;
        }
    };
    // The object holding tenant.db's contents loses its first 4 KiB (same size: only its
    // hash can tell), so the restore must refuse it rather than bring back other bytes.
    let object = object_of(&snap, "tenant.db");
    let len = std::fs::metadata(&object).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&object)
        .unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    saga.await.unwrap().expect("converge");

    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Quarantined, "error: {:?}", u.error);
    let why = u.error.unwrap_or_default();
    assert!(
        why.contains("damaged") && why.contains("tenant.db") && why.contains(snap.id.as_str()),
        "{why}"
    );
    assert_eq!(
        e.workspace().await.state,
        sluice::domain::WorkspaceState::Quarantined
    );
    assert_eq!(
        std::fs::metadata(&object).unwrap().len(),
        len,
        "the damaged object is kept as it is, for inspection"
    );
}

/// The object file holding `name`'s contents in a store snapshot.
pub fn object_of(snap: &sluice::store::SnapshotRow, name: &str) -> PathBuf {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&snap.path).unwrap()).unwrap();
    let want = hex::encode(name);
    let sha = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == want.as_str())
        .and_then(|e| e["object"].as_str())
        .unwrap()
        .to_owned();
    let manifests = Path::new(&snap.path).parent().unwrap();
    manifests
        .parent()
        .unwrap()
        .join("objects")
        .join(&sha[..2])
        .join(&sha)
}

/// Runs the reconciler until the workspace's newest journal row is terminal.
async fn converge_queued(e: &Env) -> sluice::store::UpdateRow {
    e.rec.converge_all().await.expect("converge");
    e.store.latest_update(e.ws.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn an_operator_restore_and_a_recovery_are_journaled_sagas_on_real_docker() {
    use sluice::clock::{Clock, SystemClock};
    use sluice::store::UpdateKind;

    let mut e = env_with("fid-ops", |_, _| {}, |_| {}).await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let d3 = e.fixture("bad-health", "v3");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    let data = mountpoint(&e.volume);
    std::fs::write(data.join("ledger"), b"balance=100\n").unwrap();
    let at_snapshot = manifest(&data, &["boots.log"]);

    // The update to v2 snapshots the volume as it is now.
    e.desire(&d2).await;
    let v2 = converge_queued(&e).await;
    assert_eq!(v2.phase, UpdatePhase::Succeeded);
    let snap = v2.snapshot_ids[0].clone();
    std::fs::write(data.join("ledger"), b"balance=0\n").unwrap();
    std::fs::write(data.join("written-later"), b"x").unwrap();

    // `sluice snapshot restore ID`: the volume goes back, v2 keeps running.
    let queued = e
        .store
        .queue_snapshot_restore(&snap, "ops", SystemClock.now())
        .await
        .expect("queue restore");
    assert_eq!(queued.kind, UpdateKind::Restore);
    let u = converge_queued(&e).await;
    assert_eq!(
        (u.id, u.phase),
        (queued.id, UpdatePhase::Succeeded),
        "{:?}",
        u.error
    );
    assert_eq!(manifest(&data, &["boots.log"]), at_snapshot);
    assert_eq!(e.http("/version"), "v2");
    let events = e.store.events(0, 500).await.unwrap();
    assert!(events.iter().any(|ev| ev.action == "restore_succeeded"));

    // A failed update whose rollback cannot restore quarantines the workspace...
    e.desire(&d3).await;
    let rec = e.rec.clone();
    let saga = tokio::spawn(async move { rec.converge_all().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let damaged = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        if u.to_digest != d3 {
            continue;
        }
        if let Some(s) = e
            .store
            .snapshots_of_update(u.id)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.state == sluice::domain::SnapshotState::Complete)
        {
            break s;
        }
    };
    std::fs::write(&damaged.path, b"damaged").unwrap();
    saga.await.unwrap().expect("converge");
    assert_eq!(
        e.workspace().await.state,
        sluice::domain::WorkspaceState::Quarantined
    );

    // ...and `sluice workspace recover NAME --snapshot ID` brings it back: the data of
    // that snapshot, the digest that ran before its update (v1), health-gated.
    let queued = e
        .store
        .queue_workspace_recover(&e.ws.name, Some(&snap), "ops", SystemClock.now())
        .await
        .expect("queue recover");
    assert_eq!(queued.kind, UpdateKind::Recover);
    let u = converge_queued(&e).await;
    assert_eq!(
        (u.id, u.phase),
        (queued.id, UpdatePhase::Succeeded),
        "{:?}",
        u.error
    );
    let w = e.workspace().await;
    assert_eq!(w.state, sluice::domain::WorkspaceState::Running);
    assert_eq!(w.actual_digest.as_ref(), Some(&d1));
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(manifest(&data, &["boots.log"]), at_snapshot);
    // Nothing retries the digest that failed.
    e.rec.converge_all().await.expect("converge");
    assert_eq!(
        e.store.latest_update(e.ws.id).await.unwrap().unwrap().id,
        u.id
    );
}

#[tokio::test]
async fn a_restore_refills_the_snapshots_own_volume_after_its_mount_moved() {
    use sluice::clock::{Clock, SystemClock};

    let mut e = env_with("fid-moved", |_, _| {}, |_| {}).await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge");
    let data = mountpoint(&e.volume);
    std::fs::write(data.join("ledger"), b"balance=100\n").unwrap();
    let at_snapshot = manifest(&data, &["boots.log"]);
    e.desire(&d2).await;
    let u = converge_queued(&e).await;
    assert_eq!(u.phase, UpdatePhase::Succeeded);
    let snap = u.snapshot_ids[0].clone();
    std::fs::write(data.join("ledger"), b"balance=0\n").unwrap();

    // The operator moves the volume to another path; the snapshot was taken at /data.
    let mut spec = e.workspace().await.spec;
    spec.volumes[0].mount = "/srv/state".into();
    e.store
        .patch_workspace(
            &e.ws.name,
            &sluice::store::WorkspacePatch {
                spec: Some(spec),
                ..Default::default()
            },
            "ops",
            SystemClock.now(),
        )
        .await
        .expect("patch");
    assert_eq!(
        e.store.snapshot(&snap).await.unwrap().mount_path.as_deref(),
        Some("/data")
    );
    e.store
        .queue_snapshot_restore(&snap, "ops", SystemClock.now())
        .await
        .expect("queue restore");
    let u = converge_queued(&e).await;
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    // The data is back in the volume itself, which the container now sees at the new
    // path; nothing was extracted into the container's own layer.
    assert_eq!(manifest(&data, &["boots.log"]), at_snapshot);
    let c = e.container();
    assert_eq!(
        run(Command::new("docker").args(["exec", &c, "cat", "/srv/state/ledger"])),
        "balance=100\n"
    );
    let stray = Command::new("docker")
        .args([
            "exec",
            &c,
            "sh",
            "-c",
            "test -e /srv/data || test -e /data/ledger",
        ])
        .output()
        .unwrap();
    assert!(!stray.status.success(), "restored outside the volume");
}
