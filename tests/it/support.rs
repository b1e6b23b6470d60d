//! Helpers shared by the integration tests: the test environment's coordinates, fixture
//! builds, unique names, and cleanup of everything a test creates in Docker.

#![allow(dead_code)] // reason: each test module uses a different subset

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use sluice::domain::Digest;

/// `host:port` of the shared local registry (`tests/env/up.sh`).
pub fn registry() -> String {
    std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".to_owned())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `sluice` binary built for these tests.
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// A loopback port nothing listens on right now (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A name unique to this test process and call, safe for Docker and workspace names.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{:x}", std::process::id(), nanos % 0xffff)
}

/// Runs a command and returns its stdout, panicking with stderr on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds fixture `mode` at `version`, pushes it as `reference`, returns the pushed digest.
pub fn build_fixture(mode: &str, version: &str, reference: &str) -> Digest {
    let out = run(Command::new(repo_root().join("tests/env/build-fixture.sh"))
        .args([mode, version, reference]));
    Digest::parse(out.trim()).unwrap_or_else(|e| panic!("fixture build printed no digest: {e}"))
}

/// Removes, on drop, the Docker containers, volumes and images registered with it.
#[derive(Default)]
pub struct DockerCleanup {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        for v in &self.volumes {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

/// A `sluice run` child process whose logs (JSON) are watched for its listen address.
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    /// Every log line so far, collected by a reader thread.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `sluice run` with `data_dir` and extra environment; waits (≤ 20 s) until it
    /// logs its API address.
    pub fn start(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_as("run", data_dir, env)
    }

    /// Starts `sluice <command>` (`run` or `agent`) the same way.
    pub fn start_as(command: &str, data_dir: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        use std::io::BufRead;
        let mut cmd = Command::new(sluice_bin());
        cmd.args(["--log-format", "json", command])
            .env_remove("SLUICE_CONFIG")
            .env_remove("RUST_LOG")
            .env("SLUICE__DATA__DIR", data_dir)
            .env("SLUICE__API__LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sluice run");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(a) = v.get("addr").and_then(|a| a.as_str())
                {
                    let _ = tx.send(a.to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "sluice {command} did not log its address: {:?}",
                    logs.lock().unwrap()
                )
            });
        Daemon {
            child,
            addr: addr.parse().expect("socket address"),
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn signal(&self, sig: &str) {
        run(Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]));
    }

    /// Waits up to `limit` for the process to exit; returns its status if it did.
    pub fn wait_timeout(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A workspace of the `good` fixture app as the rollout tests use it: `image`, `tier`,
/// one volume `<name>-data` at `/data`, the app's HTTP health probe, labelled
/// `sluice.test=1`. Registers the container and the volume with `cleanup`.
pub fn fixture_workspace(
    name: &str,
    image: &str,
    tier: sluice::domain::Tier,
    cleanup: &mut DockerCleanup,
) -> sluice::store::NewWorkspace {
    use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
    let volume = format!("{name}-data");
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup.volumes.push(volume.clone());
    sluice::store::NewWorkspace {
        host: sluice::domain::HostName::local(),
        name: sluice::domain::WorkspaceName::parse(name).expect("workspace name"),
        image: sluice::domain::ImageRef::parse(image).expect("image reference"),
        update_tier: tier,
        update_mode: sluice::domain::UpdateMode::Auto,
        maintenance_window: None,
        spec: WorkspaceSpec {
            volumes: vec![VolumeMount::new(volume, "/data")],
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
        },
    }
}
