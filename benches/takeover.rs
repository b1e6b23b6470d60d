//! Leader takeover with real processes, against a single daemon's cold restart measured
//! in the same run.
//!
//! - **takeover**: two `sluice run` (instances `a` and `b`) on one fresh PostgreSQL
//!   database (created from `SLUICE_TEST_PG`; `eval "$(tests/env/postgres.sh start)"`),
//!   `leader.lease_ttl` [`LEASE_TTL`]. Once `a` leads and `b` is standby (both read from
//!   `GET /readyz`, `instance.role`), `a` is killed with SIGKILL; measured is the time from
//!   the kill until `b` logs `leading: starting the loops`, the line it writes right
//!   before it starts its loops. Its `won the leader lock` line splits that time into
//!   noticing the lock is free and waiting for `a`'s lease to run out.
//! - **restart, sqlite** (the baseline: one daemon restarted by systemd's
//!   `Restart=always`, here without `RestartSec`): one daemon on an SQLite file is killed
//!   with SIGKILL and started again at once; measured is the time from the kill until the
//!   new process logs `sluice api listening`, right after which it leads (on SQLite it
//!   leads as it starts its loops, with no election).
//! - **restart, postgres** (one instance alone on PostgreSQL, restarted the same way):
//!   until the new process logs `leading: starting the loops`; it too waits for the
//!   killed process's lease to run out.
//!
//! Each time is taken when the bench reads the line from the process's stderr (JSON logs,
//! written unbuffered), against an `Instant` taken right before the kill. The kinds
//! alternate over [`ROUNDS`] rounds; the kill comes 1.0 s, 1.2 s, … after the daemons are
//! ready, so that it falls at different points of the leader's renewal period (every
//! third of the TTL). Every process is killed and every database and temp directory
//! removed at the end. Without `SLUICE_TEST_PG` only the SQLite baseline runs, and the
//! other rows say so.
//!
//! The daemon is the `sluice` binary cargo builds for this bench (`CARGO_BIN_EXE_sluice`:
//! `target/release/sluice` under `cargo bench`); `SLUICE_BIN=<path>` runs another one.
//! Docker is not needed (a daemon without it serves and leads; with it, it also connects).
//! Run: `eval "$(tests/env/postgres.sh start)"; cargo bench --bench takeover`.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::store::{Engine, TestDb};

#[path = "support/postgres.rs"]
mod pg;

/// The lease TTL every daemon here runs with: the goal is a takeover within it + 2 s.
const LEASE_TTL: Duration = Duration::from_secs(3);
const LEASE_TTL_SETTING: &str = "3s";
const ROUNDS: usize = 5;
/// How long any one wait (a daemon starting, a role, a log line) may take.
const PATIENCE: Duration = Duration::from_secs(30);

const LEADING: &str = "leading: starting the loops";
const WON_LOCK: &str = "won the leader lock";
const LISTENING: &str = "sluice api listening";

fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        PathBuf::from,
    )
}

/// Log lines of one process, each with the instant the bench read it.
type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// One `sluice run` child with JSON logs; killed and reaped on drop.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    lines: Lines,
}

impl Daemon {
    fn start(data_dir: &Path, database_url: &str, instance: &str) -> Daemon {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["--log-format", "json", "run"])
            .env_remove("SLUICE_CONFIG")
            .env_remove("RUST_LOG")
            .env("SLUICE__DATA__DIR", data_dir)
            .env("SLUICE__API__LISTEN", "127.0.0.1:0")
            .env("SLUICE__DATABASE__URL", database_url)
            .env("SLUICE__LEADER__LEASE_TTL", LEASE_TTL_SETTING)
            .env("SLUICE__LEADER__INSTANCE", instance)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sluice_bin().display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        let listening = daemon
            .line_after(LISTENING, spawned)
            .unwrap_or_else(|| daemon.fail("did not log its address"));
        let addr = serde_json::from_str::<serde_json::Value>(&listening.1)
            .ok()
            .and_then(|v| v.get("addr")?.as_str()?.parse().ok())
            .unwrap_or_else(|| daemon.fail("logged no address"));
        daemon.addr = addr;
        daemon
    }

    /// Waits for the first line containing `text` read at or after `since`.
    fn line_after(&self, text: &str, since: Instant) -> Option<(Instant, String)> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(hit) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(at, l)| *at >= since && l.contains(text))
            {
                return Some(hit.clone());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    /// Polls `/readyz` until `instance.role` is `role`.
    fn wait_role(&self, role: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if readyz_role(self.addr).as_deref() == Some(role) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.fail(&format!("never became {role}"));
    }

    /// SIGKILL; returns the instant taken right before it.
    fn kill(&mut self) -> Instant {
        let at = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }

    fn fail(&self, what: &str) -> ! {
        let lines = self.lines.lock().unwrap();
        let tail: Vec<&str> = lines
            .iter()
            .rev()
            .take(20)
            .map(|(_, l)| l.as_str())
            .collect();
        panic!("sluice run {what}; last log lines (newest first): {tail:#?}")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `instance.role` of `GET /readyz` (answered with 503 too while Docker is not connected).
fn readyz_role(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let body = answer.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v.get("instance")?.get("role")?.as_str()?.to_owned())
}

/// One takeover: total time, and the part until `b` won the lock.
struct Takeover {
    total: Duration,
    lock_won: Duration,
}

fn takeover(url: &str, kill_after: Duration) -> Takeover {
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let mut a = Daemon::start(dir_a.path(), url, "a");
    a.wait_role("leader");
    let b = Daemon::start(dir_b.path(), url, "b");
    b.wait_role("standby");
    std::thread::sleep(kill_after);
    let killed = a.kill();
    let (won, _) = b
        .line_after(WON_LOCK, killed)
        .unwrap_or_else(|| b.fail("did not win the lock"));
    let (leading, _) = b
        .line_after(LEADING, killed)
        .unwrap_or_else(|| b.fail("did not start leading"));
    b.wait_role("leader");
    Takeover {
        total: leading - killed,
        lock_won: won - killed,
    }
}

/// One daemon killed and started again at once; the time until the new process leads.
fn restart(url: &str, led: &str, kill_after: Duration) -> Duration {
    let dir = tempdir();
    let mut first = Daemon::start(dir.path(), url, "a");
    first.wait_role("leader");
    std::thread::sleep(kill_after);
    let killed = first.kill();
    let second = Daemon::start(dir.path(), url, "a");
    let (leading, _) = second
        .line_after(led, killed)
        .unwrap_or_else(|| second.fail("did not lead after the restart"));
    second.wait_role("leader");
    leading - killed
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn stats(v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    format!(
        "median {:>7.2?}  min {:>7.2?}  max {:>7.2?}",
        v[v.len() / 2],
        v[0],
        v[v.len() - 1]
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let postgres = pg::reachable().await;
    if let Err(why) = &postgres {
        println!("postgres: NOT MEASURED: {why}");
    }
    println!(
        "binary {}, lease_ttl {LEASE_TTL_SETTING}, {ROUNDS} rounds",
        sluice_bin().display()
    );
    let (mut takeovers, mut sqlite_restarts, mut pg_restarts) =
        (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(1_000 + 200 * round as u64);
        // SQLite baseline: the database file lives in the daemon's data directory.
        let dir = tempdir();
        let sqlite_url = format!("sqlite://{}", dir.path().join("sluice.db").display());
        let t = restart(&sqlite_url, LISTENING, kill_after);
        println!("round {}  restart, sqlite    {t:>7.2?}", round + 1);
        sqlite_restarts.push(t);
        if postgres.is_err() {
            continue;
        }
        let db = TestDb::on(Engine::Postgres).await;
        let t = takeover(db.url(), kill_after);
        println!(
            "round {}  takeover, postgres  {:>7.2?}  (lock won after {:.2?}, then the lease wait)",
            round + 1,
            t.total,
            t.lock_won
        );
        takeovers.push(t);
        pg::drop_database(db.url()).await;
        let db = TestDb::on(Engine::Postgres).await;
        let t = restart(db.url(), LEADING, kill_after);
        println!("round {}  restart, postgres  {t:>7.2?}", round + 1);
        pg_restarts.push(t);
        pg::drop_database(db.url()).await;
    }
    println!();
    println!("summary over {ROUNDS} rounds (SIGKILL until the new leader leads)");
    println!("restart, sqlite (baseline)   {}", stats(&sqlite_restarts));
    if let Err(why) = &postgres {
        println!("takeover, postgres           NOT MEASURED: {why}");
        println!("restart, postgres            NOT MEASURED: {why}");
        return;
    }
    let totals: Vec<Duration> = takeovers.iter().map(|t| t.total).collect();
    let locks: Vec<Duration> = takeovers.iter().map(|t| t.lock_won).collect();
    println!("takeover, postgres           {}", stats(&totals));
    println!("  of which until lock won    {}", stats(&locks));
    println!("restart, postgres            {}", stats(&pg_restarts));
    let goal = LEASE_TTL + Duration::from_secs(2);
    let worst = totals.iter().max().copied().unwrap_or_default();
    println!(
        "goal: takeover under lease_ttl + 2 s = {goal:?}: {} (worst {worst:.2?})",
        if worst < goal { "met" } else { "MISSED" }
    );
}
