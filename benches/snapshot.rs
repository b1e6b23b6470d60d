//! Snapshot and restore throughput against GNU tar, on the real Docker engine
//! (`cargo bench --bench snapshot`; needs root, as sluice does, to reach volumes).
//!
//! Two data sets in a real Docker volume: 1 GiB of random data (64 files of 16 MiB) and
//! 50,000 small files (500 directories of 100 files of 1 KiB). Each round times, in turn:
//! - sluice: `Snapshots::take` (archive the volume, sha256, manifest, fsync) and the
//!   restore path of the saga (verify the checksum, remove the container, refill the
//!   volume while hashing it again, flush it, check the manifest, create the container
//!   again);
//! - tar: `tar --sparse --xattrs -cf` of the same directory then `sync FILE` (fsync), and
//!   emptying a directory, `tar --xattrs -xpf` into it, then `sync -f` (syncfs).
//!
//! The two sides alternate for `ROUNDS` rounds and each ratio (tar time / sluice time:
//! above 1 means sluice is faster) is taken pair by pair, so drift of the machine's speed
//! cancels. Prints median, min and max of each ratio. Also: disk used by a restored 1 GiB
//! sparse file against the original.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::runtime::{ContainerRuntime, DockerRuntime, connect};
use sluice::snapshot::Snapshots;

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{fixture, fixture_spec, insert_workspace, sh, write_random};

const ROUNDS: usize = 5;

fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.2} (min {:.2}, max {:.2})",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

struct Case {
    name: &'static str,
    fill: fn(&Path),
}

fn one_gib(dir: &Path) {
    for i in 0..64 {
        write_random(&dir.join(format!("f{i:02}")), 16 << 20, i + 1);
    }
}

fn small_files(dir: &Path) {
    for d in 0..500 {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir(&sub).unwrap();
        for f in 0..100 {
            std::fs::write(
                sub.join(format!("f{f:03}")),
                vec![b'a' + (f % 26) as u8; 1024],
            )
            .unwrap();
        }
    }
}

fn sparse_gib(dir: &Path) {
    let f = std::fs::File::create(dir.join("sparse.img")).unwrap();
    f.set_len(1 << 30).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"start", 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"end", (1 << 30) - 3).unwrap();
}

#[tokio::main]
async fn main() {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let pid = std::process::id();
    let repo = format!("{registry}/bench-snap-{pid}/app");
    let digest = fixture("v1", &repo);
    let image = format!("{repo}@{digest}");
    sh(Command::new("docker").args(["pull", "-q", &image]));

    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Settings::default();
    s.data.dir = dir.path().to_path_buf();
    s.snapshots.min_free_bytes = 0;
    let store = sluice::startup::open_store(&s).await.expect("store");
    let rt = DockerRuntime::new(connect(&s.docker).await.expect("docker"));
    let snaps = Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone());

    let cases = [
        Case {
            name: "1 GiB random",
            fill: one_gib,
        },
        Case {
            name: "50,000 small files",
            fill: small_files,
        },
        Case {
            name: "1 GiB sparse file",
            fill: sparse_gib,
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let name = format!("benchsnap-{pid}-{n}");
        let volume = format!("{name}-data");
        let mut spec = fixture_spec(&volume);
        spec.health = None;
        let w = insert_workspace(&store, &name, &format!("{repo}:v1"), spec).await;
        let spec = sluice::reconciler::container::container_spec(&w, &digest);
        rt.volume_create(&volume, &spec.labels)
            .await
            .expect("volume");
        rt.create(&spec).await.expect("create");
        let vol_dir = rt
            .volume_host_path(&volume)
            .await
            .expect("inspect")
            .expect("a local volume");
        (case.fill)(&vol_dir);
        let allocated_before: u64 = std::fs::read_dir(&vol_dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
            .sum();
        let tar_file = dir.path().join("plain.tar");
        let tar_out: PathBuf = dir.path().join("extract");
        std::fs::create_dir_all(&tar_out).unwrap();

        let (mut snap_ratio, mut restore_ratio) = (Vec::new(), Vec::new());
        let (mut snap_s, mut restore_s) = (Vec::new(), Vec::new());
        let mut last = None;
        for round in 0..ROUNDS {
            let row = store
                .open_update(w.id, None, None, &digest, SystemClock.now())
                .await
                .expect("row");
            let t = Instant::now();
            let snap = snaps
                .take(
                    &rt,
                    &spec.name,
                    w.id,
                    &w.name,
                    row.id,
                    round,
                    &volume,
                    "/data",
                    SystemClock.now(),
                )
                .await
                .expect("snapshot");
            let take = t.elapsed().as_secs_f64();
            let t = Instant::now();
            snaps.verify(&snap).await.expect("verify");
            rt.remove(&spec.name).await.expect("remove");
            snaps
                .restore(&rt, &spec.name, &snap, None)
                .await
                .expect("restore");
            rt.create(&spec).await.expect("create");
            let restore = t.elapsed().as_secs_f64();

            let t = Instant::now();
            sh(Command::new("tar")
                .args(["--sparse", "--xattrs", "-cf"])
                .arg(&tar_file)
                .arg("-C")
                .arg(&vol_dir)
                .arg("."));
            sh(Command::new("sync").arg(&tar_file));
            let tar_c = t.elapsed().as_secs_f64();
            let t = Instant::now();
            clear(&tar_out);
            sh(Command::new("tar")
                .args(["--xattrs", "-xpf"])
                .arg(&tar_file)
                .arg("-C")
                .arg(&tar_out));
            sh(Command::new("sync").arg("-f").arg(&tar_out));
            let tar_x = t.elapsed().as_secs_f64();

            snap_ratio.push(tar_c / take);
            restore_ratio.push(tar_x / restore);
            snap_s.push(take);
            restore_s.push(restore);
            let _ = std::fs::remove_file(snaps.path_of(&snap.id));
            last = Some(snap);
        }
        println!(
            "{}: snapshot vs tar -c: {}; restore vs tar -x: {}; sluice snapshot {} s, restore {} s",
            case.name,
            stats(snap_ratio),
            stats(restore_ratio),
            stats(snap_s),
            stats(restore_s),
        );
        if let Some(s) = last
            && n == 2
        {
            let f = vol_dir.join("sparse.img");
            let t = tar_out.join("sparse.img");
            println!(
                "1 GiB sparse file: snapshot file {} bytes; on disk after restore {} bytes \
                 (original {allocated_before} bytes, after tar -x {} bytes)",
                s.size_bytes,
                std::fs::metadata(&f).unwrap().blocks() * 512,
                std::fs::metadata(&t).unwrap().blocks() * 512,
            );
        }
        rt.remove(&spec.name).await.expect("remove");
        rt.volume_remove(&volume).await.expect("volume rm");
    }
    let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
}
