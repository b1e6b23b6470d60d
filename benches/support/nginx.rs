//! Debian's nginx as the reverse proxy in front of one workspace, and a client that
//! sends it a steady stream of requests. Shared by the start-first load test
//! (`tests/it/start_first_load.rs`) and `benches/start_first.rs`.
//!
//! The proxy is a master process of its own on a loopback port, with its own
//! configuration in a directory the caller owns: `up/<workspace>.conf` holds the
//! upstream `sluice_<workspace>` (written by sluice's `file` router), and
//! `nginx -c <dir>/nginx.conf -s reload` reloads it.

#![allow(dead_code)] // reason: the test and the bench use different parts

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// An nginx master process, stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub conf: PathBuf,
    pub upstreams: PathBuf,
}

impl Nginx {
    /// Waits until the master has one worker left: after a reload the old worker goes on
    /// accepting connections, with the old upstream, until it has been told to stop, so
    /// a proxy that answered once through its new worker may still answer through the
    /// old one for a moment.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while workers(self.child.id()) != 1 {
            assert!(Instant::now() < deadline, "nginx kept more than one worker");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What nginx logged (reloads, and every upstream it could not reach).
    pub fn error_log(&self) -> String {
        let log = self.conf.with_file_name("error.log");
        std::fs::read_to_string(log).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master takes its workers along (a SIGKILLed master leaves them
    /// running); SIGKILL only if it has not exited within 5 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many processes have `parent` as their parent (from `/proc/*/stat`).
fn workers(parent: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: the name may hold spaces, so read after ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// The configuration path nginx will use in `dir` (known before it starts).
pub fn conf_in(dir: &Path) -> PathBuf {
    dir.join("nginx.conf")
}

/// The reload command for the nginx of `dir`, as `[router] reload` takes it.
pub fn reload_command(dir: &Path) -> Vec<String> {
    vec![
        "nginx".into(),
        "-c".into(),
        conf_in(dir).display().to_string(),
        "-s".into(),
        "reload".into(),
    ]
}

/// Writes the upstream of `workspace` pointing at `address:port`.
pub fn write_upstream(dir: &Path, workspace: &str, address: &str, port: u16) {
    std::fs::create_dir_all(dir.join("up")).expect("upstream dir");
    let tmp = dir.join(format!("up/{workspace}.tmp"));
    std::fs::write(
        &tmp,
        format!("upstream sluice_{workspace} {{\n    server {address}:{port};\n}}\n"),
    )
    .expect("upstream");
    std::fs::rename(&tmp, dir.join(format!("up/{workspace}.conf"))).expect("rename");
}

/// Starts nginx in `dir` proxying 127.0.0.1:PORT to upstream `sluice_<workspace>`
/// (pointing nowhere until it is routed).
pub fn start(dir: &Path, workspace: &str) -> Nginx {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp dir");
    write_upstream(dir, workspace, "127.0.0.1", 9);
    let port = free_port();
    let conf = conf_in(dir);
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log notice;\ndaemon off;\nworker_processes 1;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n  \
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  \
             include {d}/up/*.conf;\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://sluice_{workspace}; \
             proxy_next_upstream off; }} }}\n}}\n"
        ),
    )
    .expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's nginx is installed (tests/env/up.sh)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx {
        child,
        port,
        conf,
        upstreams: dir.join("up"),
    }
}

/// What the client saw.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub sent: usize,
    pub failed: usize,
    /// The longest time between two answered requests.
    pub longest_gap: Duration,
    /// The bodies answered, each once, in the order they first came.
    pub seen: Vec<String>,
    /// Each failed request: milliseconds after the load began, and what the client got.
    pub failures: Vec<(u128, String)>,
}

/// Requests `url` 100 times a second until `stop` (at most 60 s).
pub async fn load(url: String, stop: Arc<AtomicBool>) -> Traffic {
    // A new connection for every request: a reloaded nginx closes its old workers'
    // keep-alive connections, and a request racing that close fails in the client
    // whatever the backend does — a property of the proxy, not of the update.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut t = Traffic::default();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_secs(60);
    let began = Instant::now();
    let mut last_ok = Instant::now();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        tick.tick().await;
        t.sent += 1;
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default().trim().to_owned();
                if !t.seen.contains(&body) {
                    t.seen.push(body);
                }
                t.longest_gap = t.longest_gap.max(last_ok.elapsed());
                last_ok = Instant::now();
            }
            Ok(r) => {
                t.failed += 1;
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                t.failures.push((
                    began.elapsed().as_millis(),
                    format!("{status}: {}", body.trim()),
                ));
            }
            Err(e) => {
                t.failed += 1;
                t.failures
                    .push((began.elapsed().as_millis(), format!("{e:?}")));
            }
        }
    }
    // Failures at the end are a gap too.
    t.longest_gap = t.longest_gap.max(last_ok.elapsed());
    t
}
