//! Builds the daemon from its settings and runs it until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::registry::OciRegistry;
use crate::store::{Store, StoreError};
use crate::task::{Driver, Task};

mod agent;
mod docker;
mod fleet;
mod leadership;
use leadership::{Leadership, Loops};

/// How long in-flight requests get to finish after shutdown is requested. (Running
/// updates get `[update] shutdown_grace` instead: see `reconciler`, "Stopping".)
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// While waiting at shutdown for the long-lived tasks, how often the ones left are logged.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "database {url} belongs to fleet `{stored}`, but [database] fleet is `{configured}`; \
         point [database] url at fleet `{configured}`'s database or set [database] fleet = \"{stored}\""
    )]
    OtherFleet {
        url: String,
        stored: String,
        configured: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Auth(#[from] crate::api::AuthError),
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A built daemon: store open and migrated, listener bound.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    settings: Settings,
    wakers: crate::wake::Wakers,
    watcher: crate::watcher::Watcher<Arc<OciRegistry>>,
    rollout_ops: crate::rollout::ops::Ops,
    leader_metrics: crate::leader::LeaderMetrics,
}

/// Opens the configured store, applies migrations and settles the fleet identity
/// (`fleet.rs`). A database this binary must not run on (a newer schema, another fleet)
/// is refused before anything is written to it.
pub async fn open_store(settings: &Settings) -> Result<Store, StartupError> {
    let dir = &settings.data.dir;
    std::fs::create_dir_all(dir).map_err(|source| StartupError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let url = settings.database_url();
    let store = Store::open(
        &url,
        settings.database.max_connections,
        settings.database.busy_timeout,
    )
    .await?;
    let configured = settings.fleet();
    store.check_schema().await?;
    let stored = fleet::check(&store, configured, &url).await?;
    store.migrate().await?;
    let fleet = match stored {
        Some(fleet) => fleet,
        None => fleet::settle(&store, configured, &url).await?,
    };
    tracing::info!(
        fleet,
        configured = configured.is_some(),
        database = %crate::store::redact_url(&url),
        "database opened"
    );
    Ok(store)
}

impl Application {
    /// Creates every dependency once (store, clock, registry client, snapshots, Docker
    /// runtime, metrics) and hands it to whoever needs it.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = open_store(&settings).await?;
        // The daemon's one clock: every loop and adapter reads time from it.
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // Docker being down is not fatal at startup: `/readyz` reports it, and
        // `run_until_stopped` keeps trying to connect, then starts the reconciler.
        let docker = crate::runtime::DockerHandle::default();
        if let Ok(crate::config::DockerTransport::InsecureTcp(host)) = settings.docker.transport() {
            tracing::warn!(
                host,
                "docker.allow_insecure_tcp: the Docker API is reached over plain HTTP; \
                 anyone on the network path can read and drive this engine"
            );
        }
        match crate::runtime::connect(&settings.docker).await {
            Ok(d) => docker.set(Arc::new(d)),
            Err(e) => {
                tracing::warn!(error = %e, "docker is not reachable yet; retrying in the background");
            }
        }
        let addr = settings.api.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let metrics = Metrics::new();
        let api_context = crate::api::ApiContext {
            tokens: crate::api::first_token::daemon_tokens(&settings)?,
            images_allow: settings.images.allow.clone(),
            workspace_policy: settings.workspaces.policy(),
            metrics_require_token: settings.api.metrics_require_token,
            body_limit: settings.api.body_limit,
            request_timeout: settings.api.request_timeout,
            workspace_gauge: crate::api::WorkspaceGauge::register(&metrics),
            host_gauge: crate::api::HostGauge::register(&metrics),
            snapshot_dir: settings.snapshot_dir(),
            snapshot_access: settings.snapshots.access,
            snapshot_reflink: crate::snapshot::incremental::reflink::supported(
                &settings.snapshot_dir(),
            ),
            host_down_after: settings.hosts.down_after(),
            local_host: settings
                .agent
                .in_process
                .then(|| settings.agent.host.clone()),
        };
        if api_context.tokens.is_empty() {
            tracing::warn!("[auth] token_file holds no token: /api/v1 refuses every request");
        }
        let wakers = crate::wake::Wakers::new();
        let hints = crate::watcher::Hints::new(wakers.watcher.clone());
        let registry_metrics = crate::registry::RegistryMetrics::register(metrics.registry())?;
        // One client, shared by the watcher and the API (its auth cache too).
        let registry = Arc::new(
            OciRegistry::new(
                &settings.registries,
                settings.poll.request_timeout,
                registry_metrics.clone(),
            )?
            .with_clock(clock.clone()),
        );
        let watcher = crate::watcher::Watcher::new(
            store.clone(),
            registry.clone(),
            clock.clone(),
            &settings,
            wakers.clone(),
            hints.clone(),
            registry_metrics,
        );
        let rollout_ops = crate::rollout::ops::Ops::new(crate::rollout::deps::RolloutDeps {
            store: store.clone(),
            settings: Arc::new(settings.rollout.clone()),
            wakers: wakers.clone(),
            clock: clock.clone(),
            metrics: crate::rollout::metrics::RolloutMetrics::register(metrics.registry())
                .map_err(StartupError::Metrics)?,
        });
        let rollout_ops = rollout_ops.with_hosts(settings.hosts.clone());
        let leader_metrics = crate::leader::LeaderMetrics::register(metrics.registry())?;
        let state = AppState {
            store,
            docker,
            metrics,
            api: Arc::new(api_context),
            clock,
            wakers: wakers.clone(),
            registry: Some(registry),
            rollout_ops: rollout_ops.clone(),
            registry_events: api::registry_events::RegistryEvents {
                token: settings.registries.webhook_token.clone(),
                hints,
            },
            leader: crate::leader::LeaderView::new(&settings.leader.instance_name()),
            streams: api::event_stream::EventStreams::default(),
            ui: crate::ui::Sessions::default(),
        };
        Ok(Self {
            listener,
            state,
            settings,
            wakers,
            watcher,
            rollout_ops,
            leader_metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.api.listen)
    }

    /// The loops' wake-up notifiers (shared by every loop of this daemon).
    pub fn wakers(&self) -> &crate::wake::Wakers {
        &self.wakers
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The rollout operations (apply, promote, ...) for the API handlers.
    pub fn rollout_ops(&self) -> &crate::rollout::ops::Ops {
        &self.rollout_ops
    }

    /// Serves until `shutdown` is cancelled, then drains requests for at most
    /// [`SHUTDOWN_GRACE`] and waits for every long-lived task (watchdog, notifier,
    /// watcher, controller, Docker event follower, reconciler with its running updates,
    /// snapshot cleanup) to end before closing the store. The reconciler takes at most
    /// `[update] shutdown_grace`; the others stop at once.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        self.run_as(Mode::Daemon, shutdown).await
    }

    /// Runs as `sluice agent`: the API (any instance serves it), and the loops of this
    /// host only — heartbeat, reconciler, snapshot cleanup, Docker events — with no
    /// election: an agent never decides rollouts (see `crate::agent`).
    pub async fn run_agent_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), StartupError> {
        self.run_as(Mode::Agent, shutdown).await
    }

    async fn run_as(self, mode: Mode, shutdown: CancellationToken) -> Result<(), StartupError> {
        let addr = self.local_addr();
        tracing::info!(
            %addr,
            data_dir = %self.settings.data.dir.display(),
            engine = self.state.store.engine().as_str(),
            instance = self.state.leader.instance(),
            host = %self.settings.agent.host,
            mode = mode.name(),
            "sluice api listening"
        );
        let tasks = TaskTracker::new();
        let metrics = self.state.metrics.tasks().clone();
        let systemd = crate::systemd::Systemd::new(
            self.state.store.clone(),
            self.state.docker.get(),
            self.settings.docker.clone(),
            addr,
        );
        spawn_task(&tasks, systemd.driver(metrics.clone()), &shutdown);
        let Application {
            listener,
            state,
            settings,
            watcher,
            rollout_ops,
            leader_metrics,
            ..
        } = self;
        let leadership = match mode {
            Mode::Daemon => {
                let loops = Loops {
                    settings: settings.clone(),
                    state: state.clone(),
                    watcher,
                    rollout_ops,
                    tasks: tasks.clone(),
                    shutdown: shutdown.clone(),
                };
                Some(Leadership::start(loops, &settings, &leader_metrics))
            }
            Mode::Agent => {
                agent::start(&settings, &state, &tasks, &shutdown);
                None
            }
        };
        let app = api::router(state.clone());
        let (stop, streams) = (shutdown.clone(), state.streams.clone());
        // Open event streams never end by themselves: close them so the drain can finish.
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            stop.cancelled().await;
            streams.close();
        });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            r = &mut server => r.map_err(StartupError::Serve)?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                tracing::warn!("in-flight requests did not finish within the shutdown grace period");
            }
        }
        // The server ended on its own (it only does on shutdown): make sure every task
        // sees the stop, then wait for all of them.
        shutdown.cancel();
        tasks.close();
        loop {
            tokio::select! {
                () = tasks.wait() => break,
                () = tokio::time::sleep(STILL_WAITING_EVERY) => {
                    tracing::info!(tasks = tasks.len(), "stopping: waiting for running tasks to finish");
                }
            }
        }
        // Only now, with every loop ended, may a standby take over.
        if let Some(leadership) = leadership {
            leadership.hand_back().await;
        }
        state.store.close().await;
        tracing::info!("sluice stopped");
        Ok(())
    }
}

/// What a process runs: `sluice run` (API, election, and once leading every loop) or
/// `sluice agent` (API and its host's loops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Daemon,
    Agent,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Daemon => "run",
            Mode::Agent => "agent",
        }
    }
}

/// Makes the daemon wait for a task spawned elsewhere at shutdown; logs a panic.
fn track<T: Send + 'static>(tasks: &TaskTracker, task: &'static str, handle: JoinHandle<T>) {
    tasks.spawn(async move {
        match handle.await {
            Ok(_) => tracing::debug!(task, "task stopped"),
            Err(e) => tracing::error!(task, error = %e, "task ended abnormally"),
        }
    });
}

/// Runs `driver` until `shutdown`; the daemon waits for it through `tasks`.
fn spawn_task<T: Task>(tasks: &TaskTracker, driver: Driver<T>, shutdown: &CancellationToken) {
    track(tasks, T::NAME, tokio::spawn(driver.run(shutdown.clone())));
}
