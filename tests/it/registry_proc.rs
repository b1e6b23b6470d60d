//! A private `docker-registry serve` for tests that stop the registry, need htpasswd
//! auth, notifications or a request log of their own. Killed (and its files removed) on
//! drop; the shared registry on :5000 is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::run;

pub struct RegistryProc {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
    pub log: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// What the private registry is configured with.
#[derive(Default, Clone)]
pub struct RegistryOpts {
    /// Serve this storage root instead of a fresh one (two registries over one store).
    pub root: Option<PathBuf>,
    /// `user:password` pairs for an htpasswd file (bcrypt).
    pub users: Vec<(String, String)>,
    /// Notification endpoint URL and the bearer token it is sent with.
    pub notify: Option<(String, String)>,
    /// Reuse this port (restarting a stopped registry).
    pub port: Option<u16>,
}

impl RegistryProc {
    pub fn start(opts: RegistryOpts) -> RegistryProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = opts.port.unwrap_or_else(crate::support::free_port);
        let root = opts.root.clone().unwrap_or_else(|| dir.path().join("root"));
        std::fs::create_dir_all(&root).expect("registry root");
        let mut yml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            root.display()
        );
        if !opts.users.is_empty() {
            let htpasswd = dir.path().join("htpasswd");
            let mut lines = String::new();
            for (u, p) in &opts.users {
                lines.push_str(run(Command::new("htpasswd").args(["-Bbn", u, p])).trim());
                lines.push('\n');
            }
            std::fs::write(&htpasswd, lines).expect("write htpasswd");
            yml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: sluice-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if let Some((url, token)) = &opts.notify {
            yml.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: sluice\n      url: {url}\n      \
                 headers:\n        Authorization: [\"Bearer {token}\"]\n      timeout: 2s\n      \
                 threshold: 3\n      backoff: 1s\n      ignoredmediatypes:\n        \
                 - application/octet-stream\n"
            ));
        }
        let config = dir.path().join("config.yml");
        std::fs::write(&config, yml).expect("write registry config");
        let log = dir.path().join("registry.log");
        let mut reg = RegistryProc {
            child: None,
            port,
            root,
            log,
            config,
            _dir: dir,
        };
        reg.spawn();
        reg
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "registry on port {} did not start: {}",
            self.port,
            self.log_text()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the registry (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for RegistryProc {
    fn drop(&mut self) {
        self.stop();
    }
}
