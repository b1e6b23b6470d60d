//! The container runtime seam, shaped by what the reconciler needs (not by bollard):
//! pin an image by digest, create/start/stop/remove/inspect a workspace's container,
//! list the containers sluice manages, copy a volume's tree out of and into a stopped
//! container, and manage named volumes. [`DockerRuntime`] talks to a Docker engine
//! (local or remote, API version negotiated); `FakeRuntime` is an in-memory stand-in
//! for unit tests and scale benchmarks. Both pass the same `contract` suite. The fake and
//! the suite exist only in test builds (`cfg(test)` or the `test-support` feature, which
//! the integration tests and benches turn on): a release build does not contain them.

mod connect;
#[cfg(any(test, feature = "test-support"))]
pub mod contract;
mod docker;
mod docker_config;
mod docker_convert;
mod docker_events;
mod docker_exec;
mod docker_swap;
mod docker_unrepresentable;
#[cfg(any(test, feature = "test-support"))]
mod fake;
#[cfg(any(test, feature = "test-support"))]
mod fake_views;
mod helper;
mod helper_rootfs;
mod image_defaults;
mod image_file;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;

pub use connect::connect;
pub use docker::DockerRuntime;
pub use docker_events::{DockerEvents, EventsError};
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeRuntime;
pub use helper::*;
pub use image_defaults::ImageDefaults;
pub use image_file::{ImageFile, ImageFiles, LABEL_PURPOSE, PURPOSE_READ_CHANGELOG};

/// Label present on everything sluice creates; nothing without it is ever touched.
pub const LABEL_MANAGED: &str = "sluice.managed";
pub const LABEL_WORKSPACE: &str = "sluice.workspace";
/// The owning workspace's id (its row id, never reused): names can be given up and taken
/// again by another tenant, ids cannot. Volumes are removed only by their owner.
pub const LABEL_WORKSPACE_ID: &str = "sluice.workspace_id";
pub const LABEL_DIGEST: &str = "sluice.digest";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot connect to Docker at {host}: {source}")]
    Connect {
        host: String,
        source: bollard::errors::Error,
    },
    #[error("docker {op} `{target}` failed: {source}")]
    Docker {
        op: &'static str,
        target: String,
        source: bollard::errors::Error,
    },
    #[error("{op} `{target}` failed: {message}")]
    Refused {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error("archive file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The engine did not answer (the in-memory runtime's stand-in for a dockerd restart).
    #[error("{op} `{target}` failed: the engine does not answer")]
    Unavailable { op: &'static str, target: String },
}

impl RuntimeError {
    /// Worth trying again: the engine did not answer (a refused or reset connection,
    /// a missing socket: dockerd restarting), timed out, or said it is busy (502, 503,
    /// 504). Anything else (a refusal, a 4xx, a bad file) is permanent.
    pub fn is_transient(&self) -> bool {
        use bollard::errors::Error as B;
        match self {
            Self::Connect { .. } | Self::Unavailable { .. } => true,
            Self::Docker { source, .. } => matches!(
                source,
                B::RequestTimeoutError
                    | B::IOError { .. }
                    | B::HyperResponseError { .. }
                    | B::HyperLegacyError { .. }
                    | B::HttpClientError { .. }
                    | B::SocketNotFoundError(_)
                    | B::DockerResponseServerError {
                        status_code: 502..=504,
                        ..
                    }
            ),
            Self::Refused { .. } | Self::Io { .. } => false,
        }
    }
}

/// A published port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub container: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `None`: Docker picks a free host port.
    pub host: Option<u16>,
    pub host_ip: String,
}

/// Everything a workspace's container is created from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    /// Always pinned: `registry/repo@sha256:…`.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    /// `KEY=VALUE`, sorted.
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// `(volume name, mount path)`.
    pub volumes: Vec<(String, String)>,
    pub ports: Vec<PortSpec>,
    pub restart: Option<String>,
    /// Networks to attach, the first as the container's network mode (none: the default
    /// bridge); each with its extra DNS aliases.
    pub networks: Vec<Attachment>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and a kill (Docker's `StopTimeout`).
    pub stop_timeout: Option<u32>,
    pub read_only_rootfs: bool,
    pub limits: Limits,
    /// Mount paths of `volumes` mounted read-only.
    pub read_only_mounts: Vec<String>,
    /// The restart policy's retries (`on-failure:N`).
    pub restart_retries: Option<i64>,
    /// tmpfs mounts: path → options.
    pub tmpfs: BTreeMap<String, String>,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    /// `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    pub sysctls: BTreeMap<String, String>,
    /// Log driver and its options.
    pub log: Option<(String, BTreeMap<String, String>)>,
    /// Host binds: `(host path, container path, read only)`.
    pub binds: Vec<(String, String, bool)>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
}

/// Resource limits Docker enforces (`HostConfig` fields of the same meaning); `None`:
/// Docker's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    /// CPUs in billionths (`docker run --cpus`).
    pub nano_cpus: Option<i64>,
}

/// One network a container is attached to, with the DNS aliases it answers to there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
}

/// A container's configuration as `docker run` set it: what its image supplies (env,
/// labels, command, user, ...) is taken out, so recreating from `spec` on a new image
/// lets that image's defaults apply. Read to adopt a container and to find drift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningConfig {
    pub id: String,
    pub running: bool,
    /// `spec.image` is the reference the container was started from, as given.
    pub spec: ContainerSpec,
    /// What its image supplies (taken out of `spec`).
    pub image_defaults: ImageDefaults,
    /// `repo@sha256:…` references its image is known by in registries.
    pub repo_digests: Vec<String>,
    /// Settings a [`ContainerSpec`] cannot carry, each `Docker field: value`.
    pub unrepresentable: Vec<String>,
}

/// What the runtime shows about one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    pub exit_code: Option<i64>,
    /// The image HEALTHCHECK status (`starting`, `healthy`, `unhealthy`) when it has one.
    pub health: Option<String>,
    /// Address on its network, for probes.
    pub ip: Option<String>,
    /// Container port → published host port.
    pub host_ports: BTreeMap<u16, u16>,
    /// How often Docker restarted it (restart policy); a rise means it crashed.
    pub restart_count: i64,
    /// The networks it is attached to, by name.
    pub networks: std::collections::BTreeSet<String>,
}

impl ContainerInfo {
    /// True when sluice created it (only such containers are ever changed).
    pub fn is_managed(&self) -> bool {
        self.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
    }
    pub fn digest_label(&self) -> Option<&str> {
        self.labels.get(LABEL_DIGEST).map(String::as_str)
    }
}

/// The operations the reconciler and snapshotter need. Every mutating call is idempotent
/// where Docker allows it: stopping a stopped container, removing a missing one or
/// creating an existing volume succeed.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Makes `image` (pinned by digest) present locally, pulling it when missing.
    fn ensure_image(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// `None` when no container has this name or id.
    fn inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ContainerInfo>, RuntimeError>> + Send;
    /// How the container was configured (see [`RunningConfig`]); `None` when no container
    /// has this name or id.
    fn inspect_config(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<RunningConfig>, RuntimeError>> + Send;
    /// Creates (does not start) the container; returns its id.
    fn create(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    fn start(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn stop(
        &self,
        name: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Runs `cmd` inside the running container; its exit code, or `None` when it had not
    /// exited after `timeout`. An error when the container is not running.
    fn exec(
        &self,
        name: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<i64>, RuntimeError>> + Send;
    /// Containers labelled `sluice.managed=true`.
    fn list_managed(&self)
    -> impl Future<Output = Result<Vec<ContainerInfo>, RuntimeError>> + Send;
    /// Writes a tar of `path` inside the (stopped) container to `dest`, rooted at the
    /// directory's base name; returns the bytes written and their sha256 (hex).
    fn archive_download(
        &self,
        container: &str,
        path: &str,
        dest: &Path,
    ) -> impl Future<Output = Result<(u64, String), RuntimeError>> + Send;
    /// Extracts the tar file `src` into directory `dir` inside the container.
    fn archive_upload(
        &self,
        container: &str,
        dir: &str,
        src: &Path,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Creates the named volume with labels; `Ok(false)` when it already existed.
    fn volume_create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// The volume's labels, `None` when it does not exist.
    fn volume_inspect(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, String>>, RuntimeError>> + Send;
    fn volume_remove(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The directory holding the volume's files on this machine, when sluice can read and
    /// write it directly: a plain `local` volume (no driver options: those mount remote or
    /// device storage only while a container uses it) of an engine on this host. `None`
    /// otherwise (a remote engine, another driver, a missing volume): then snapshots go
    /// through the archive API.
    fn volume_host_path(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<std::path::PathBuf>, RuntimeError>> + Send;
    /// True when the engine answers at all (a failed step while it does not is waited
    /// out, not rolled back or quarantined).
    fn ping(&self) -> impl Future<Output = bool> + Send;
    /// Names of managed containers that died, were stopped or destroyed since `since_secs`
    /// (Unix seconds) until now: the drift detector's hint.
    fn events_since(
        &self,
        since_secs: i64,
    ) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    /// Gives container `from` the name `to` (a start-first update's new container takes
    /// the workspace's name). Done already (`from` gone, `to` present) is not an error.
    fn rename(&self, from: &str, to: &str)
    -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Attaches container `name` to `network.network` with exactly `network.aliases`
    /// (re-attaching it when it is there without them); already so is not an error.
    fn attach(
        &self,
        name: &str,
        network: &Attachment,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Runs sluice's own binary in a throw-away helper container (no network, the given
    /// mounts) until it exits; the container is removed whatever happened.
    fn run_helper(
        &self,
        run: &HelperRun,
    ) -> impl Future<Output = Result<HelperExit, RuntimeError>> + Send;
}

/// A connection to one Docker engine. Only `runtime/` and `reconciler/` call its API;
/// everything else hands it to [`DockerRuntime`] or asks [`engine_answers`].
pub type Engine = Docker;

/// Whether the engine answers a ping (readiness, the watchdog, `/readyz`).
pub async fn engine_answers(engine: &Engine) -> Result<(), RuntimeError> {
    engine
        .ping()
        .await
        .map(|_| ())
        .map_err(|source| RuntimeError::Docker {
            op: "ping",
            target: "engine".to_owned(),
            source,
        })
}

/// The daemon's Docker connection, set once Docker first answers. Docker being down when
/// sluice starts is not fatal: handlers and `/readyz` report it unavailable until a
/// background task connects (see `startup`), then the reconciler starts.
#[derive(Clone, Default, Debug)]
pub struct DockerHandle(Arc<std::sync::OnceLock<Arc<Docker>>>);

impl DockerHandle {
    /// A handle already connected to `docker`.
    pub fn connected(docker: Arc<Docker>) -> Self {
        let h = Self::default();
        h.set(docker);
        h
    }

    /// The connection, once made.
    pub fn get(&self) -> Option<Arc<Docker>> {
        self.0.get().cloned()
    }

    /// Records the connection; a second call keeps the first one.
    pub fn set(&self, docker: Arc<Docker>) {
        let _ = self.0.set(docker);
    }
}
