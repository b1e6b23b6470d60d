//! The configuration tree. Every field has a compiled-in default (see `Default` impls), so
//! an empty file is a valid configuration: SQLite in `./sluice-data`, the local Docker
//! socket, the API on `127.0.0.1:7878`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

pub use super::access_types::*;
pub use super::agent_types::*;
pub use super::analysis_types::{
    AnalysisCheck, Comparison, Inconclusive, PrometheusSettings, QUERY_VARIABLES,
};
pub use super::email_types::{EmailSettings, EmailTls};
pub use super::hosts_types::*;
pub use super::leader_types::*;
pub use super::rollout_types::*;
pub use super::router_types::{NGINX_UPSTREAM, RouterKind, RouterSettings};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub data: DataSettings,
    pub database: DatabaseSettings,
    pub docker: DockerSettings,
    pub api: ApiSettings,
    pub log: LogSettings,
    pub poll: PollSettings,
    pub rollout: RolloutSettings,
    pub update: UpdateSettings,
    pub snapshots: SnapshotSettings,
    pub registries: RegistrySettings,
    pub auth: AuthSettings,
    pub images: ImageSettings,
    pub notifications: NotificationSettings,
    pub email: EmailSettings,
    pub leader: LeaderSettings,
    pub agent: AgentSettings,
    pub hosts: HostsSettings,
    pub workspaces: WorkspaceSettings,
    pub router: RouterSettings,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataSettings {
    /// Where the SQLite database and snapshots live unless configured elsewhere.
    pub dir: PathBuf,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("sluice-data"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DATABASE`; empty means
    /// `sqlite://<data.dir>/sluice.db`.
    pub url: Option<Secret>,
    /// The fleet this instance belongs to. The database remembers the fleet it was first
    /// started with; an instance naming another fleet refuses to start on it. Empty: the
    /// database's fleet (a generated id on a new database).
    pub fleet: Option<String>,
    pub max_connections: u32,
    /// How long a writer waits for SQLite's lock before failing.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            fleet: None,
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerSettings {
    /// `unix:///var/run/docker.sock` or a remote engine, `tcp://host:2376` (TLS); empty
    /// means the local socket (`DOCKER_HOST` when it is a `unix://` path).
    pub host: Option<String>,
    /// Timeout for one Docker API call (pulls are bounded separately by the update deadline).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM CA that signed the remote engine's certificate. A `tcp://` or `https://` host
    /// needs `tls_ca`, `tls_cert` and `tls_key`: whoever reaches the Docker API is root on
    /// that host, so it is never spoken to in the clear by accident.
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate that the engine (`dockerd --tlsverify`) accepts.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Allow a `tcp://` or `http://` host over plain HTTP, without TLS: only for an
    /// engine reached through a channel that is already private. Logged as a warning.
    pub allow_insecure_tcp: bool,
}

impl DockerSettings {
    /// True when the engine is reached over the network (`tcp://`, `http(s)://`), not
    /// through a socket on this machine.
    pub fn is_remote(&self) -> bool {
        self.host
            .as_deref()
            .is_some_and(|h| !h.is_empty() && !h.starts_with("unix://"))
    }
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            host: None,
            timeout: Duration::from_secs(120),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            allow_insecure_tcp: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (larger: 413).
    pub body_limit: usize,
    /// Every handler is cut off after this long (408).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// When true, `/metrics` needs a token like `/api/v1`.
    pub metrics_require_token: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            body_limit: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            metrics_require_token: false,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `sluice=debug`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollSettings {
    /// How often each tracked image reference is probed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Random spread added to each interval, as a fraction of it (0.0–1.0).
    pub jitter: f64,
    /// First delay after a failed probe; doubles per failure up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Timeout of one registry request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Per-image intervals: `[[poll.images]] image = "reg/app:stable" interval = "1m"`.
    pub images: Vec<ImagePoll>,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            jitter: 0.1,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(1800),
            request_timeout: Duration::from_secs(15),
            images: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePoll {
    pub image: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdateSettings {
    /// Grace period of `docker stop` before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// The health probe must pass continuously this long…
    #[serde(with = "humantime_serde")]
    pub min_healthy_time: Duration,
    /// …before this deadline, counted from start.
    #[serde(with = "humantime_serde")]
    pub healthy_deadline: Duration,
    /// Updates running at once across the whole daemon.
    pub max_parallel: u32,
    /// How often the reconciler re-reads desired and observed state without a wake-up.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// A step that fails while Docker does not answer waits up to this long for Docker to
    /// come back, then runs again, instead of rolling back or quarantining.
    #[serde(with = "humantime_serde")]
    pub docker_outage_grace: Duration,
    /// On SIGTERM/SIGINT, how long running updates may go on to their next journal point
    /// before they are aborted (they resume from the journal at the next start). Keep it
    /// well under the service manager's stop timeout (`TimeoutStopSec`), which kills the
    /// process when it runs out.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// The update order of workspaces whose spec names none (an image's
    /// `[[rollout.images]] update_order` wins): `start-first` applies only to workspaces
    /// whose volumes are all shared and that publish no host port; others stop first.
    pub order: crate::domain::spec::UpdateOrder,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        Self {
            stop_timeout: Duration::from_secs(10),
            min_healthy_time: Duration::from_secs(10),
            healthy_deadline: Duration::from_secs(120),
            max_parallel: 4,
            reconcile_interval: Duration::from_secs(30),
            docker_outage_grace: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(60),
            order: crate::domain::spec::UpdateOrder::StopFirst,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotSettings {
    /// Empty means `<data.dir>/snapshots`.
    pub dir: Option<PathBuf>,
    /// Snapshots kept per volume (the newest).
    pub keep_last: u32,
    /// Snapshots older than this are deleted (unless still needed by an unfinished update).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Refuse to start an update whose volumes cannot be backed up.
    pub require_snapshot: bool,
    /// Free space that must remain after a snapshot, in bytes.
    pub min_free_bytes: u64,
    /// How often the retention cleanup runs.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,
    /// How snapshots reach a volume's data: `auto` reads the volume's directory directly
    /// where sluice can (root, local engine) and otherwise through a helper container;
    /// `helper` always through the helper; `archive` the earlier full tar per snapshot,
    /// read on this host where the volume is reachable, else through the Docker archive
    /// API (no incremental store: for an engine whose host cannot see the snapshot
    /// directory).
    pub access: SnapshotAccess,
    /// The sluice executable the helper container image is made from; empty means this
    /// process's own.
    pub helper_binary: Option<PathBuf>,
}

/// `[snapshots] access`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotAccess {
    #[default]
    Auto,
    Helper,
    Archive,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            dir: None,
            keep_last: 3,
            max_age: Duration::from_secs(7 * 24 * 3600),
            require_snapshot: true,
            min_free_bytes: 512 * 1024 * 1024,
            cleanup_interval: Duration::from_secs(600),
            access: SnapshotAccess::Auto,
            helper_binary: None,
        }
    }
}

impl Settings {
    /// The SQLite URL when none is configured: a file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(u) if !u.expose().is_empty() => u.expose().to_owned(),
            _ => format!("sqlite://{}", self.data.dir.join("sluice.db").display()),
        }
    }

    /// `[database] fleet`, if set and not empty.
    pub fn fleet(&self) -> Option<&str> {
        self.database.fleet.as_deref().filter(|f| !f.is_empty())
    }

    pub fn snapshot_dir(&self) -> PathBuf {
        self.snapshots
            .dir
            .clone()
            .unwrap_or_else(|| self.data.dir.join("snapshots"))
    }
}
