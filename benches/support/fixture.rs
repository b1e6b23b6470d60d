//! What the Docker benches share: running a command and wanting it to succeed, building
//! and pushing a fixture image (`tests/env/build-fixture.sh`), and the workspace of the
//! fixture app (its volume at `/data`, its HTTP probe, the test label that cleanup uses).
//! Each bench includes this file with `#[path]`.

#![allow(dead_code)] // reason: each bench uses a different part

use std::process::Command;

use sluice::clock::{Clock, SystemClock};
use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
use sluice::domain::{Digest, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::store::{NewWorkspace, Store, Workspace};

/// Runs `cmd`, panics with its stderr if it fails, returns its stdout trimmed.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker(args: &[&str]) -> String {
    sh(Command::new("docker").args(args))
}

/// Builds the `good` fixture at `version`, pushes it as `repo:version`, returns its digest.
pub fn fixture(version: &str, repo: &str) -> Digest {
    let out = sh(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/env/build-fixture.sh"
    ))
    .args(["good", version, &format!("{repo}:{version}")]));
    Digest::parse(&out).expect("digest")
}

/// The spec of a workspace of the fixture app with its data on `volume`.
pub fn fixture_spec(volume: &str) -> WorkspaceSpec {
    WorkspaceSpec {
        volumes: vec![VolumeMount::new(volume.to_owned(), "/data")],
        health: Some(HealthProbe {
            http: Some(HttpProbe {
                port: 8080,
                path: "/health".into(),
                status: Some(200),
            }),
            ..Default::default()
        }),
        labels: [("sluice.test".to_owned(), "1".to_owned())].into(),
        ..Default::default()
    }
}

/// Stores workspace `name` of `image` (an automatic production workspace).
pub async fn insert_workspace(
    store: &Store,
    name: &str,
    image: &str,
    spec: WorkspaceSpec,
) -> Workspace {
    store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(name).expect("name"),
                image: ImageRef::parse(image).expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec,
            },
            SystemClock.now(),
        )
        .await
        .expect("workspace")
}

/// Size of each data file the volume benches write: 1 MiB, so a share of the files is
/// the same share of the bytes.
pub const DATA_FILE: u64 = 1 << 20;

/// Name of data file `i` (sorted the same way numerically and by name).
pub fn data_file(dir: &std::path::Path, i: usize) -> std::path::PathBuf {
    dir.join(format!("f{i:05}"))
}

/// Writes (or truncates and overwrites: same inode, new mtime and ctime) `path` with
/// `len` bytes of xorshift data seeded by `seed`: incompressible and unlike any other seed.
pub fn write_random(path: &std::path::Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut f =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("data file"));
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(left.min(buf.len() as u64)).expect("chunk");
        f.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    f.flush().expect("flush");
}

/// Fills `dir` with `mib` files of 1 MiB ([`DATA_FILE`]) of pseudo-random data; returns
/// how many.
pub fn fill_files(dir: &std::path::Path, mib: u64, seed: u64) -> usize {
    let n = usize::try_from(mib).expect("count");
    for i in 0..n {
        write_random(&data_file(dir, i), DATA_FILE, seed ^ ((i as u64) << 20));
    }
    n
}

/// Rewrites about 1% of the `files` data files of `dir` (at least one when there are any)
/// with new pseudo-random contents of the same size. Round `round` takes the next window
/// of files, so consecutive rounds change different files. Returns how many it rewrote.
pub fn rewrite_share(dir: &std::path::Path, files: usize, round: usize) -> usize {
    if files == 0 {
        return 0;
    }
    let k = (files / 100).max(1);
    for j in 0..k {
        let i = (round * k + j) % files;
        let seed = 0x5eed_0000_0000 ^ ((round as u64) << 32) ^ i as u64;
        write_random(&data_file(dir, i), DATA_FILE, seed);
    }
    k
}

/// `sync(1)`: flushes every filesystem, so no side of a comparison pays for the other's
/// (or the setup's) dirty pages.
pub fn sync_all() {
    sh(&mut Command::new("sync"));
}

/// Bytes under `dir` (itself included, each inode once, as `du` counts): allocated
/// (`st_blocks * 512`, `du -s -B1`) and apparent (`st_size`, `du -sb`).
pub fn disk_usage(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    fn walk(
        p: &std::path::Path,
        seen: &mut std::collections::HashSet<(u64, u64)>,
        acc: &mut (u64, u64),
    ) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return; // removed while walked
        };
        if seen.insert((m.dev(), m.ino())) {
            acc.0 += m.blocks() * 512;
            acc.1 += m.size();
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), seen, acc);
            }
        }
    }
    let mut acc = (0, 0);
    walk(dir, &mut std::collections::HashSet::new(), &mut acc);
    acc
}

/// Median (mean of the two middle values for an even count), min and max; `None` when
/// `v` is empty.
pub fn spread(v: &[f64]) -> Option<(f64, f64, f64)> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => v[n / 2],
        _ => f64::midpoint(v[n / 2 - 1], v[n / 2]),
    };
    Some((median, v[0], v[n - 1]))
}

/// `spread` as text: `median X (min Y, max Z)` with `unit` after each, or `no rounds`.
pub fn show(v: &[f64], prec: usize, unit: &str) -> String {
    spread(v).map_or_else(
        || "no rounds".to_owned(),
        |(m, lo, hi)| {
            format!("median {m:.prec$}{unit} (min {lo:.prec$}{unit}, max {hi:.prec$}{unit})")
        },
    )
}

/// One HTTP/1.0 `GET path` to `ip:port`; true on a 200 answer within a second.
pub async fn http_ok(ip: &str, port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut head = Vec::new();
        s.read_to_end(&mut head).await.ok()?;
        let line = head.split(|&b| b == b'\n').next()?;
        let mut words = line.split(|&b| b == b' ');
        let (_, code) = (words.next()?, words.next()?);
        Some(code == b"200")
    };
    tokio::time::timeout(std::time::Duration::from_secs(1), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Logs to stderr as `RUST_LOG` says (warnings only when unset): `RUST_LOG=info` shows
/// sluice's `snapshot complete` lines with `files_read` and `new_bytes`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Docker objects a bench made, removed when it ends (also on a panic): containers
/// first, then volumes, then images. Every one is labelled `sluice.test=1` as well, so
/// the test environment's sweep finds what a killed run left.
#[derive(Default)]
pub struct DockerLeftovers {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        let run = |args: &[&str], names: &[String]| {
            if !names.is_empty() {
                let _ = Command::new("docker")
                    .args(args)
                    .args(names)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        };
        run(&["rm", "-f", "-v"], &self.containers);
        run(&["volume", "rm", "-f"], &self.volumes);
        run(&["rmi", "-f"], &self.images);
    }
}
