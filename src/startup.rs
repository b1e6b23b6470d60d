//! Builds the daemon from its settings and runs it until told to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How long in-flight requests get to finish after shutdown is requested. (Running
/// updates get `[update] shutdown_grace` instead: see `reconciler`, "Stopping".)
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// While waiting at shutdown for the long-lived tasks, how often the ones left are logged.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
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
    watcher: crate::watcher::Watcher<crate::registry::OciRegistry>,
    reconciler: Option<crate::reconciler::Reconciler<crate::runtime::DockerRuntime>>,
    rollout_ops: crate::rollout::ops::Ops,
}

/// Opens the configured store and applies migrations.
pub async fn open_store(settings: &Settings) -> Result<Store, StartupError> {
    let dir = &settings.data.dir;
    std::fs::create_dir_all(dir).map_err(|source| StartupError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let store = Store::open(
        &settings.database_url(),
        settings.database.max_connections,
        settings.database.busy_timeout,
    )
    .await?;
    store.migrate().await?;
    Ok(store)
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store = open_store(&settings).await?;
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
            tokens: crate::api::Tokens::load(&settings.auth)?,
            images_allow: settings.images.allow.clone(),
            metrics_require_token: settings.api.metrics_require_token,
            body_limit: settings.api.body_limit,
            request_timeout: settings.api.request_timeout,
            workspace_gauge: crate::api::WorkspaceGauge::register(&metrics),
            snapshot_dir: settings.snapshot_dir(),
        };
        if api_context.tokens.is_empty() {
            tracing::warn!(
                "no API tokens configured ([auth] tokens): /api/v1 refuses every request"
            );
        }
        let wakers = crate::wake::Wakers::new();
        let hints = crate::watcher::Hints::new(wakers.watcher.clone());
        let registry_metrics = crate::registry::RegistryMetrics::register(metrics.registry())?;
        let registry = crate::registry::OciRegistry::new(
            &settings.registries,
            settings.poll.request_timeout,
            registry_metrics.clone(),
        )?;
        let api_registry = crate::registry::OciRegistry::new(
            &settings.registries,
            settings.poll.request_timeout,
            registry_metrics.clone(),
        )
        .ok()
        .map(Arc::new);
        let watcher = crate::watcher::Watcher::new(
            store.clone(),
            registry,
            Arc::new(crate::clock::SystemClock),
            &settings,
            wakers.clone(),
            hints.clone(),
            registry_metrics,
        );
        let rollout_ops = crate::rollout::ops::Ops::new(crate::rollout::deps::RolloutDeps {
            store: store.clone(),
            settings: Arc::new(settings.rollout.clone()),
            wakers: wakers.clone(),
            clock: Arc::new(crate::clock::SystemClock),
            metrics: crate::rollout::metrics::RolloutMetrics::register(metrics.registry())
                .map_err(StartupError::Metrics)?,
        });
        let state = AppState {
            store,
            docker,
            metrics,
            api: Arc::new(api_context),
            clock: Arc::new(crate::clock::SystemClock),
            wakers: wakers.clone(),
            registry: api_registry,
            rollout_ops: rollout_ops.clone(),
            registry_events: api::registry_events::RegistryEvents {
                token: settings.registries.webhook_token.clone(),
                hints,
            },
        };
        let reconciler = state
            .docker
            .get()
            .map(|d| build_reconciler(&settings, &state, &d, &wakers));
        Ok(Self {
            listener,
            state,
            settings,
            wakers,
            watcher,
            reconciler,
            rollout_ops,
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
        let addr = self.local_addr();
        tracing::info!(%addr, data_dir = %self.settings.data.dir.display(), "sluice api listening");
        let tasks = TaskTracker::new();
        track(
            &tasks,
            "systemd",
            crate::systemd::spawn(
                self.state.store.clone(),
                self.state.docker.get(),
                self.settings.docker.clone(),
                addr,
                shutdown.clone(),
            ),
        );
        if let Some(notifier) = crate::notify::spawn(
            self.state.store.clone(),
            &self.settings.notifications,
            &self.state.metrics,
            shutdown.clone(),
        ) {
            track(&tasks, "notifier", notifier);
        }
        track(
            &tasks,
            "watcher",
            tokio::spawn(self.watcher.run(shutdown.clone())),
        );
        match self.reconciler.clone() {
            Some(rec) => start_reconciler(rec, &self.settings, &self.state, &shutdown, &tasks),
            None => {
                let (settings, state, wakers) = (
                    self.settings.clone(),
                    self.state.clone(),
                    self.wakers.clone(),
                );
                track(
                    &tasks,
                    "docker connect",
                    tokio::spawn(connect_docker_later(
                        settings,
                        state,
                        wakers,
                        shutdown.clone(),
                        tasks.clone(),
                    )),
                );
            }
        }
        let controller = crate::rollout::controller::Controller::new(
            self.rollout_ops.deps().clone(),
            self.settings.rollout.tick_interval,
        );
        // Canary smoke checks reach containers through Docker, like the health gate; they
        // fail (never silently pass) while Docker is not connected.
        let controller =
            controller.with_smoke(Arc::new(crate::reconciler::smoke::DockerSmokeProbe::new(
                self.state.docker.clone(),
                self.state.store.clone(),
                crate::reconciler::smoke::SMOKE_TIMEOUT,
            )));
        track(
            &tasks,
            "rollout controller",
            tokio::spawn(controller.run(shutdown.clone())),
        );
        let app = api::router(self.state.clone());
        let stop = shutdown.clone();
        let server = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await });
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
        self.state.store.close().await;
        tracing::info!("sluice stopped");
        Ok(())
    }
}

/// Makes the daemon wait for a task spawned elsewhere at shutdown; logs a panic.
fn track(tasks: &TaskTracker, task: &'static str, handle: JoinHandle<()>) {
    tasks.spawn(async move {
        match handle.await {
            Ok(()) => tracing::debug!(task, "task stopped"),
            Err(e) => tracing::error!(task, error = %e, "task ended abnormally"),
        }
    });
}

/// Builds the reconciler. Unfinished updates are resumed by its loop before any new work
/// starts (`Reconciler::run`), so a stop requested meanwhile is graceful too.
fn build_reconciler(
    settings: &Settings,
    state: &AppState,
    docker: &Arc<bollard::Docker>,
    wakers: &crate::wake::Wakers,
) -> crate::reconciler::Reconciler<crate::runtime::DockerRuntime> {
    let snaps = crate::snapshot::Snapshots::new(
        settings.snapshot_dir(),
        settings.snapshots.clone(),
        state.store.clone(),
    );
    // A remote engine's volumes are reached only through the archive API.
    let runtime = if settings.docker.is_remote() {
        crate::runtime::DockerRuntime::remote(docker.as_ref().clone())
    } else {
        crate::runtime::DockerRuntime::new(docker.as_ref().clone())
    };
    crate::reconciler::Reconciler::new(
        runtime,
        state.store.clone(),
        snaps,
        crate::reconciler::ReconcilerConfig::from_settings(settings),
        Arc::new(crate::clock::SystemClock),
        crate::reconciler::ReconcilerMetrics::register(state.metrics.registry()),
        wakers.clone(),
    )
}

/// Spawns the reconciler loop, the snapshot cleanup loop and the Docker event follower
/// on `tasks`.
fn start_reconciler(
    rec: crate::reconciler::Reconciler<crate::runtime::DockerRuntime>,
    settings: &Settings,
    state: &AppState,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    let snaps = crate::snapshot::Snapshots::new(
        settings.snapshot_dir(),
        settings.snapshots.clone(),
        state.store.clone(),
    );
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
    let every = settings.snapshots.cleanup_interval;
    if let Some(docker) = state.docker.get() {
        // Drift is found on Docker's word at once, not at the next periodic pass.
        let runtime = crate::runtime::DockerRuntime::new(docker.as_ref().clone());
        let wakers = state.wakers.clone();
        let stop = shutdown.clone();
        track(
            tasks,
            "docker events",
            tokio::spawn(async move {
                let hint = |name: &str| {
                    tracing::debug!(container = name, "docker event: waking the reconciler");
                    wakers.reconciler.notify_one();
                };
                runtime.follow_events(hint, stop).await;
            }),
        );
    }
    crate::reconciler::spawn(rec, snaps, clock, every, shutdown.clone(), tasks);
}

/// Docker did not answer at startup: retry with backoff (1 s doubling to 30 s) until it
/// does, then start the reconciler (which first resumes unfinished updates), exactly as
/// a start with Docker up would have.
async fn connect_docker_later(
    settings: Settings,
    state: AppState,
    wakers: crate::wake::Wakers,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        match crate::runtime::connect(&settings.docker).await {
            Ok(d) => {
                let d = Arc::new(d);
                state.docker.set(d.clone());
                tracing::info!("docker answers; starting the reconciler");
                let rec = build_reconciler(&settings, &state, &d, &wakers);
                start_reconciler(rec, &settings, &state, &shutdown, &tasks);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "docker is still not reachable");
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
