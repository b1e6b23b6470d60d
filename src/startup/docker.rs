//! Wiring the reconciler to Docker: building it on the daemon's one clock and snapshot
//! store, starting its tasks, and connecting later when Docker did not answer at start.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::spawn_task;
use crate::api::AppState;
use crate::config::Settings;
use crate::runtime::DockerRuntime;
use crate::snapshot::Snapshots;
use crate::task::{Action, Pass, Task};

/// Builds the reconciler on the daemon's one clock and snapshot store. Unfinished
/// updates are resumed by its task before any new work starts
/// (`reconciler::task::ReconcilerTask`), so a stop requested meanwhile is graceful too.
pub(super) fn build_reconciler(
    settings: &Settings,
    state: &AppState,
    snaps: &Snapshots,
    docker: &Arc<crate::runtime::Engine>,
) -> crate::reconciler::Reconciler<DockerRuntime> {
    // A remote engine's volumes are reached only through the archive API.
    let runtime = if settings.docker.is_remote() {
        DockerRuntime::remote(docker.as_ref().clone())
    } else {
        DockerRuntime::new(docker.as_ref().clone())
    };
    crate::reconciler::Reconciler::new(
        runtime.with_clock(state.clock.clone()),
        state.store.clone(),
        snaps.clone(),
        crate::reconciler::ReconcilerConfig::from_settings(settings),
        state.clock.clone(),
        crate::reconciler::ReconcilerMetrics::register_on(
            state.metrics.registry(),
            &settings.agent.host,
        ),
        state.wakers.clone(),
    )
}

/// Spawns the reconciler, the snapshot cleanup and the Docker event follower (drift is
/// found on Docker's word at once, not at the next periodic pass) on `tasks`.
pub(super) fn start_reconciler(
    rec: crate::reconciler::Reconciler<DockerRuntime>,
    settings: &Settings,
    state: &AppState,
    snaps: &Snapshots,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) {
    let metrics = state.metrics.tasks();
    let events =
        crate::runtime::DockerEvents::new(rec.runtime().clone(), state.wakers.reconciler.clone());
    spawn_task(tasks, events.driver(metrics.clone()), shutdown);
    let cleanup = crate::reconciler::task::SnapshotCleanup::new(
        snaps.clone(),
        state.clock.clone(),
        settings.snapshots.cleanup_interval,
    );
    crate::reconciler::spawn(rec, cleanup, metrics, shutdown.clone(), tasks);
}

/// Docker did not answer at startup: each pass tries again (the driver backs off, 1 s
/// doubling to 30 s) until it does, then starts the reconciler (which first resumes
/// unfinished updates) exactly as a start with Docker up would have, and waits for the
/// stop.
pub(super) struct DockerLater {
    pub(super) settings: Settings,
    pub(super) state: AppState,
    pub(super) snaps: Snapshots,
    /// Where the reconciler's tasks go once Docker answers.
    pub(super) tasks: TaskTracker,
    pub(super) connected: bool,
}

impl Task for DockerLater {
    const NAME: &'static str = "docker_connect";
    type Error = crate::runtime::RuntimeError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Self::Error> {
        if self.connected {
            return Ok(Action::await_change());
        }
        let d = Arc::new(crate::runtime::connect(&self.settings.docker).await?);
        self.state.docker.set(d.clone());
        tracing::info!("docker answers; starting the reconciler");
        let rec = build_reconciler(&self.settings, &self.state, &self.snaps, &d);
        start_reconciler(
            rec,
            &self.settings,
            &self.state,
            &self.snaps,
            cx.stop(),
            &self.tasks,
        );
        self.connected = true;
        Ok(Action::await_change())
    }
}
