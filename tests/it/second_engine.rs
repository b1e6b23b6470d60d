//! A second Docker engine beside the test environment's, started by a test and removed
//! when dropped (also when the test fails): its own data and exec roots, unix socket,
//! containerd namespace and bridge, and optionally a TLS port on loopback (`--tlsverify`)
//! with a CA, a server and a client certificate made by `openssl`.
//!
//! Safe to run in parallel with other tests: nothing it makes is shared. It never passes
//! `--bridge none` (a daemon without a default bridge deletes the host's `docker0`, and
//! every container of the first engine then fails to start); it creates a bridge of its
//! own in an unused `10.231.X.0/24` and deletes it afterwards. Bridges left by a test
//! process that was killed are swept by the next start.
//!
//! Needs root, `dockerd`, `ip` and `openssl` (`tests/env/up.sh` installs them).

#![allow(dead_code)] // reason: a shared helper; each test uses a part of it

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Bridges made here are named `sl2e-<pid hex>-<n>` (at most 15 characters).
const BRIDGE_PREFIX: &str = "sl2e-";
/// How long dockerd may take to answer on its socket.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long dockerd may take to stop after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// Certificates for the engine's TLS port.
pub struct EngineTls {
    /// `127.0.0.1:PORT` answers HTTPS and requires a client certificate.
    pub port: u16,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// Client certificate and key the engine accepts.
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
}

impl EngineTls {
    /// A client certificate and key signed by another CA: the engine refuses them.
    pub fn untrusted_client(&self) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("untrusted");
        std::fs::create_dir_all(&dir).expect("create the untrusted CA's directory");
        make_ca(&dir);
        sign(
            &dir,
            "client",
            "/CN=untrusted-client",
            "extendedKeyUsage=clientAuth",
        );
        (dir.join("client.pem"), dir.join("client-key.pem"))
    }
}

/// A running second dockerd; dropping it stops the daemon and removes all it made.
pub struct SecondEngine {
    /// Removed last, by hand (it may hold mounts): kept out of `TempDir`'s own drop.
    dir: PathBuf,
    bridge: Option<String>,
    child: Option<Child>,
    pub socket: PathBuf,
    pub tls: Option<EngineTls>,
}

impl SecondEngine {
    /// An engine on a unix socket only.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// An engine on a unix socket and on a loopback TLS port that verifies clients.
    pub fn start_with_tls() -> Self {
        Self::launch(true)
    }

    /// `unix:///…/docker.sock`.
    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `tcp://127.0.0.1:PORT` of the TLS port.
    pub fn tcp_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.tls().port)
    }

    pub fn tls(&self) -> &EngineTls {
        self.tls
            .as_ref()
            .expect("the engine was started with start_with_tls")
    }

    /// The `docker` CLI aimed at this engine (over its unix socket).
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .args(["-H", &self.unix_host()]);
        cmd
    }

    fn launch(with_tls: bool) -> Self {
        sweep_stale_bridges();
        // Under /tmp whatever TMPDIR says: the unix sockets below must stay short.
        let dir = tempfile::Builder::new()
            .prefix("sl2e")
            .tempdir_in("/tmp")
            .expect("create the engine's directory")
            .keep();
        let mut engine = SecondEngine {
            socket: dir.join("docker.sock"),
            dir,
            bridge: None,
            child: None,
            tls: None,
        };
        engine.bridge = Some(create_bridge());
        if with_tls {
            engine.tls = Some(make_certificates(&engine.dir.join("tls")));
        }
        engine.spawn();
        engine.wait_until_ready();
        engine
    }

    fn spawn(&mut self) {
        let d = &self.dir;
        let empty = d.join("daemon.json");
        std::fs::write(&empty, "{}").expect("write the empty daemon.json");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("create dockerd.log");
        let namespace = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "sl2e".to_owned());
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&empty)
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["-H", &self.unix_host()])
            .args(["--bridge", self.bridge.as_deref().unwrap_or_default()])
            .arg("--iptables=false")
            .args(["--storage-driver", &storage_driver()])
            // Apart from the first engine even if both ever share one containerd.
            .args(["--containerd-namespace", &namespace])
            .args(["--containerd-plugins-namespace", &format!("{namespace}-p")]);
        if let Some(tls) = &self.tls {
            let t = &tls.dir;
            cmd.args(["-H", &format!("tcp://127.0.0.1:{}", tls.port)])
                .arg("--tlsverify")
                .arg("--tlscacert")
                .arg(t.join("ca.pem"))
                .arg("--tlscert")
                .arg(t.join("server.pem"))
                .arg("--tlskey")
                .arg(t.join("server-key.pem"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn dockerd"));
    }

    fn wait_until_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("dockerd exited with {status}: {}", self.log());
            }
            if ping(&self.socket) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dockerd did not answer within {START_LIMIT:?}: {}",
            self.log()
        );
    }

    /// Stops dockerd as a restart would (its containers stop with it), leaves it down
    /// for `down`, then starts it again on the same data and waits until it answers.
    pub fn restart(&mut self, down: Duration) {
        self.stop();
        std::thread::sleep(down);
        self.spawn();
        self.wait_until_ready();
    }

    /// What dockerd wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .output();
        let start = Instant::now();
        while start.elapsed() < STOP_LIMIT {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = child.kill();
        let _ = child.wait();
        // A dockerd that stops stops its containerd; a killed one leaves it running.
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(pidfile) else {
            return;
        };
        let pid = pid.trim();
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*self.dir.to_string_lossy()));
        if ours {
            let _ = Command::new("kill").args(["-KILL", pid]).output();
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        self.stop();
        unmount_below(&self.dir);
        if let Some(bridge) = self.bridge.take() {
            let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("second engine: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// `GET /_ping` on a unix socket answers `OK`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// The first engine's storage driver (its kernel and FUSE needs are known to be met),
/// else `vfs`, which needs neither.
fn storage_driver() -> String {
    Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "vfs".to_owned())
}

fn run(cmd: &mut Command) -> String {
    crate::support::run(cmd)
}

/// Creates `sl2e-<pid>-<n>` with an address in an unused `10.231.X.0/24`; returns its name.
fn create_bridge() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{BRIDGE_PREFIX}{:x}-{n}", std::process::id());
    run(Command::new("ip").args(["link", "add", "name", &name, "type", "bridge"]));
    let first = (std::process::id().wrapping_mul(7).wrapping_add(n * 13)) % 250;
    for i in 0..250 {
        let x = (first + i) % 250 + 1;
        let taken = run(Command::new("ip").args(["-4", "-o", "addr", "show"]))
            + &run(Command::new("ip").args(["-4", "route", "show"]));
        if taken.contains(&format!("10.231.{x}.")) {
            continue;
        }
        let added = Command::new("ip")
            .args(["addr", "add", &format!("10.231.{x}.1/24"), "dev", &name])
            .output()
            .is_ok_and(|o| o.status.success());
        if added {
            run(Command::new("ip").args(["link", "set", &name, "up"]));
            return name;
        }
    }
    let _ = Command::new("ip").args(["link", "del", &name]).output();
    panic!("no free 10.231.X.0/24 for a test bridge");
}

/// Deletes `sl2e-<pid>-*` bridges whose test process is gone.
fn sweep_stale_bridges() {
    let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", "type", "bridge"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(BRIDGE_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| u32::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["link", "del", name]).output();
        }
    }
}

/// Lazily unmounts whatever is still mounted below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(prefix.as_ref()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", p]).output();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// `ca.pem` and `ca-key.pem` (P-256) in `dir`.
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=sluice-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
}

/// `NAME.pem` and `NAME-key.pem` in `dir`, signed by the CA there, with `extensions`.
fn sign(dir: &Path, name: &str, subject: &str, extensions: &str) {
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let ext = format!("{name}.ext");
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            subject,
        ],
    );
    std::fs::write(dir.join(&ext), format!("{extensions}\n")).expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// A CA, a server certificate for `IP:127.0.0.1` and a client certificate, in `dir`.
fn make_certificates(dir: &Path) -> EngineTls {
    std::fs::create_dir_all(dir).expect("create the TLS directory");
    make_ca(dir);
    sign(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    );
    sign(dir, "client", "/CN=sluice", "extendedKeyUsage=clientAuth");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("find a free port");
        l.local_addr().expect("local address").port()
    };
    EngineTls {
        port,
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client-key.pem"),
        dir: dir.to_owned(),
    }
}
