//! The incremental snapshot store's size and restore time, on the real Docker engine and
//! the test registry (`eval "$(tests/env/up.sh)"; cargo bench --bench snapshot_store`;
//! needs root, as sluice does, to reach volumes). `SLUICE_BENCH_STORE_MIB` (default 1024)
//! sets the volume's size.
//!
//! 1. Growth: a workspace of the fixture app whose volume holds 1 GiB of 1 MiB
//!    pseudo-random files gets 10 updates, alternating between two image digests, with
//!    about 1% of the files rewritten (new contents, same size) before each, and the
//!    default retention (`keep_last = 3`): `Snapshots::cleanup(now)` after each update, as
//!    the cleanup task would. After each update: the snapshot directory's allocated size
//!    (`st_blocks * 512` of everything under it, each inode once, as `du -s -B1`) and
//!    apparent size (`du -sb`); at the end the final and the largest, against what the
//!    old layout (one full tar per snapshot) would hold: 10 full copies without
//!    retention, 3 with it.
//! 2. Restore: the same kind of 1 GiB tree captured once into a store of its own
//!    (`incremental::capture`) and archived once with `tar -cf` (both outside timing).
//!    Then, alternating which goes first, one warm-up and `ROUNDS` measured rounds of:
//!    sluice's restore work into an empty directory (`verify_objects`, which a real
//!    restore runs first over every object, then `refill`, which ends with a syncfs),
//!    and `tar -xf` into an empty directory followed by `sync -f` of it. Both of the
//!    previous round's outputs are deleted, everything flushed (`sync`) and `SETTLE`
//!    waited out at the start of each round, before either timed step (deleting a tree
//!    just before writing one slowed whichever side came next: online `discard`).
//!    Ratios are taken pair by pair; median, min and max are printed; nothing is
//!    asserted about time.
//!
//! Page caches are not dropped (that needs root and a quiet machine to be fair): the
//! objects and the tar were both written just before and are read from memory alike
//! when it is large enough, so the restore numbers are for a warm cache.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::domain::UpdatePhase;
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::snapshot::incremental::{Capture, Layout, capture, refill, verify_objects};

#[path = "support/fixture.rs"]
mod fixture;
use fixture::{
    DockerLeftovers, disk_usage, docker, fill_files, fixture, fixture_spec, init_logs,
    insert_workspace, rewrite_share, sh, show, sync_all,
};

const UPDATES: usize = 10;
const ROUNDS: usize = 6;
const MIB: f64 = 1024.0 * 1024.0;
/// Pause after deleting the previous round's outputs: this filesystem may be mounted
/// with online `discard`, and blocks freed moments ago slow whichever side writes next.
const SETTLE: Duration = Duration::from_secs(3);

fn volume_mib() -> u64 {
    std::env::var("SLUICE_BENCH_STORE_MIB").map_or(1024, |v| {
        v.trim().parse().expect("SLUICE_BENCH_STORE_MIB: MiB")
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// Regular files under `dir` and the sum of their sizes.
fn files_and_bytes(dir: &Path) -> (u64, u64) {
    let mut acc = (0, 0);
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            let (n, b) = files_and_bytes(&e.path());
            acc = (acc.0 + n, acc.1 + b);
        } else if m.is_file() {
            acc = (acc.0 + 1, acc.1 + m.len());
        }
    }
    acc
}

async fn growth(volume_mib: u64) {
    let registry =
        std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let pid = std::process::id();
    let repo = format!("{registry}/bench-store-{pid}/app");
    let d = [fixture("v1", &repo), fixture("v2", &repo)];
    let name = format!("bench-store-{pid}");
    let volume = format!("{name}-data");
    let _leftovers = DockerLeftovers {
        containers: vec![format!("sluice-{name}")],
        volumes: vec![volume.clone()],
        images: d.iter().map(|d| format!("{repo}@{d}")).collect(),
    };
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = Settings::default();
    s.data.dir = dir.path().to_path_buf();
    s.update.min_healthy_time = Duration::ZERO;
    s.update.healthy_deadline = Duration::from_secs(30);
    let store = sluice::startup::open_store(&s).await.expect("store");
    let ws = insert_workspace(&store, &name, &format!("{repo}:v1"), fixture_spec(&volume))
        .await
        .id;
    let snaps = Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone());
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.health_poll = Duration::from_millis(50);
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        store.clone(),
        snaps.clone(),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    );
    store
        .set_desired_digest(ws, Some(&d[0]), None, SystemClock.now())
        .await
        .expect("desire");
    rec.converge_all().await.expect("converge");
    let root = std::path::PathBuf::from(docker(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &volume,
    ]));
    let files = fill_files(&root, volume_mib, 11);
    let (vol_alloc, vol_apparent) = disk_usage(&root);
    println!(
        "store growth: volume {volume_mib} MiB in {files} files of 1 MiB (allocated \
         {:.1} MiB), keep_last {}, reflink {}",
        mib(vol_alloc),
        s.snapshots.keep_last,
        snaps.reflink()
    );
    let mut largest = 0;
    let mut last = (0, 0);
    let mut succeeded = 0;
    for i in 1..=UPDATES {
        let rewritten = rewrite_share(&root, files, i);
        store
            .set_desired_digest(ws, Some(&d[i % 2]), None, SystemClock.now())
            .await
            .expect("desire");
        rec.converge_all().await.expect("converge");
        let ok = store
            .latest_update(ws)
            .await
            .expect("latest")
            .is_some_and(|u| u.phase == UpdatePhase::Succeeded);
        succeeded += usize::from(ok);
        let deleted = snaps.cleanup(SystemClock.now()).await.expect("cleanup");
        last = disk_usage(snaps.dir());
        largest = largest.max(last.0);
        let objects = files_and_bytes(&snaps.dir().join("objects")).0;
        println!(
            "  update {i:2} ({}; {rewritten} files rewritten before): retention deleted \
             {deleted}; store allocated {:.1} MiB, apparent {:.1} MiB, {objects} objects",
            if ok { "succeeded" } else { "FAILED" },
            mib(last.0),
            mib(last.1),
        );
    }
    println!(
        "  {succeeded} of {UPDATES} updates succeeded. Store at the end: allocated {:.1} MiB \
         ({:.3} GiB), apparent {:.1} MiB; largest after any update {:.1} MiB (goal: under \
         1.2 GiB = 1228.8 MiB)",
        mib(last.0),
        mib(last.0) / 1024.0,
        mib(last.1),
        mib(largest),
    );
    println!(
        "  old layout (one full tar per snapshot, about the volume's apparent size \
         {:.1} MiB each): {UPDATES} full copies {:.1} MiB, {} kept by retention {:.1} MiB",
        mib(vol_apparent),
        mib(vol_apparent) * UPDATES as f64,
        s.snapshots.keep_last,
        mib(vol_apparent) * f64::from(s.snapshots.keep_last),
    );
}

/// A fresh empty directory at `p` (whatever was there removed), with the removal flushed.
fn fresh(p: &Path) {
    if p.exists() {
        std::fs::remove_dir_all(p).expect("remove");
    }
    std::fs::create_dir(p).expect("mkdir");
    sync_all();
}

fn restore(volume_mib: u64) {
    let tmp = tempfile::tempdir().expect("tmp");
    let tree = tmp.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    fill_files(&tree, volume_mib, 23);
    let source = files_and_bytes(&tree);
    let layout = Layout::new(tmp.path().join("store"));
    let captured = capture(&Capture {
        root: &tree,
        layout: &layout,
        base: None,
        min_free: 0,
        reflink: false,
        precopy: false,
        fault: None,
    })
    .expect("capture");
    let tar = tmp.path().join("tree.tar");
    sh(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let (sluice_dst, tar_dst) = (tmp.path().join("out-sluice"), tmp.path().join("out-tar"));
    println!(
        "restore: {} files, {:.1} MiB; tar {:.1} MiB",
        source.0,
        mib(source.1),
        mib(std::fs::metadata(&tar).expect("tar").len())
    );
    let (mut verify, mut fill, mut untar) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let (mut v, mut f, mut t) = (0.0, 0.0, 0.0);
        let sluice_first = round % 2 == 0;
        fresh(&sluice_dst);
        fresh(&tar_dst);
        std::thread::sleep(SETTLE);
        for sluice_side in [sluice_first, !sluice_first] {
            if sluice_side {
                let t0 = Instant::now();
                verify_objects(&layout, &captured.manifest).expect("verify");
                let t1 = Instant::now();
                refill(&layout, &captured.manifest, &sluice_dst, false, None).expect("refill");
                v = (t1 - t0).as_secs_f64();
                f = t1.elapsed().as_secs_f64();
                assert_eq!(files_and_bytes(&sluice_dst), source, "sluice restored tree");
            } else {
                let t0 = Instant::now();
                sh(Command::new("tar")
                    .arg("-xf")
                    .arg(&tar)
                    .arg("-C")
                    .arg(&tar_dst));
                sh(Command::new("sync").arg("-f").arg(&tar_dst));
                t = t0.elapsed().as_secs_f64();
                assert_eq!(files_and_bytes(&tar_dst), source, "tar restored tree");
            }
        }
        let label = if round == 0 {
            "warm-up".to_owned()
        } else {
            format!("round {round}")
        };
        println!(
            "  {label} ({} first): verify {v:.3}s + refill {f:.3}s = {:.3}s; tar -xf + sync \
             {t:.3}s",
            if sluice_first { "sluice" } else { "tar" },
            v + f
        );
        if round > 0 {
            verify.push(v);
            fill.push(f);
            untar.push(t);
        }
    }
    let both: Vec<f64> = verify.iter().zip(&fill).map(|(v, f)| v + f).collect();
    let ratio = |a: &[f64]| -> Vec<f64> { a.iter().zip(&untar).map(|(x, y)| x / y).collect() };
    println!(
        "  {ROUNDS} rounds: refill {}; verify + refill {}; tar -xf + sync {}\n  ratio refill / \
         tar {}; ratio (verify + refill) / tar {}",
        show(&fill, 3, "s"),
        show(&both, 3, "s"),
        show(&untar, 3, "s"),
        show(&ratio(&fill), 2, "x"),
        show(&ratio(&both), 2, "x"),
    );
}

#[tokio::main]
async fn main() {
    init_logs();
    let size = volume_mib();
    growth(size).await;
    tokio::task::spawn_blocking(move || restore(size))
        .await
        .expect("restore");
}
