//! The loops of one Docker host: its heartbeat, the reconciler with its snapshot cleanup
//! and Docker event follower (or the task that waits for Docker), all scoped to
//! `[agent] host`. `sluice run` starts them in-process once it leads (unless
//! `[agent] in_process = false`); `sluice agent` starts them at once, plus the wake-up
//! relay both ways through the database (see `crate::agent`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::docker::{DockerLater, build_reconciler, start_reconciler};
use super::spawn_task;
use crate::agent::{Heartbeat, WakeForward};
use crate::api::AppState;
use crate::config::Settings;
use crate::snapshot::Snapshots;
use crate::task::{Backoff, Driver};

/// Starts the host's loops on `state.store` (the fenced store when a leader runs them).
pub(super) fn start_host_loops(
    settings: &Settings,
    state: &AppState,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    builtin: bool,
) {
    let metrics = state.metrics.tasks().clone();
    let host = settings.agent.host.clone();
    let mut heartbeat = Heartbeat::new(
        state.store.clone(),
        state.clock.clone(),
        host.clone(),
        state.leader.instance().to_owned(),
        settings.agent.heartbeat_interval,
    );
    heartbeat = heartbeat.capacity(settings.agent.capacity);
    if builtin {
        heartbeat = heartbeat.builtin();
    }
    spawn_task(tasks, Driver::new(heartbeat, metrics.clone()), shutdown);
    // The one snapshot store of this host, shared by the reconciler and the cleanup.
    let snaps = Snapshots::new(
        settings.snapshot_dir(),
        settings.snapshots.clone(),
        state.store.clone(),
    )
    .for_host(host);
    tracing::info!(dir = %snaps.dir().display(), reflink = snaps.reflink(), access = ?settings.snapshots.access, "snapshot store");
    match state.docker.get() {
        Some(d) => {
            let rec = build_reconciler(settings, state, &snaps, &d);
            start_reconciler(rec, settings, state, &snaps, shutdown, tasks);
        }
        None => {
            let later = DockerLater {
                settings: settings.clone(),
                state: state.clone(),
                snaps,
                tasks: tasks.clone(),
                connected: false,
            };
            let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            spawn_task(
                tasks,
                Driver::new(later, metrics).backoff(backoff),
                shutdown,
            );
        }
    }
}

/// `sluice agent`: the host's loops, the control plane's wake-ups relayed to the
/// reconciler only, and this agent's results published to the control plane.
pub(super) fn start(
    settings: &Settings,
    state: &AppState,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    start_host_loops(settings, state, tasks, shutdown, false);
    let metrics = state.metrics.tasks().clone();
    // Nobody runs a controller here: its wake-ups (a finished update) go to the leader.
    let forward = WakeForward::new(state.store.clone(), state.wakers.controller.clone());
    spawn_task(tasks, Driver::new(forward, metrics.clone()), shutdown);
    let (store, shutdown) = (state.store.clone(), shutdown.clone());
    // Only the reconciler is woken by what others publish: waking the controller's
    // notifier would publish again, to itself.
    let wakers = crate::wake::Wakers {
        watcher: Arc::new(Notify::new()),
        controller: Arc::new(Notify::new()),
        reconciler: state.wakers.reconciler.clone(),
    };
    tasks.spawn(async move {
        match store.wake_listener().await {
            Ok(Some(listener)) => {
                let relay = crate::leader::WakeRelay::new(listener, wakers);
                Driver::new(relay, metrics).run(shutdown).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "cannot listen for the control plane's wake-ups; updates start at the reconciler's next timer"
            ),
        }
    });
}
