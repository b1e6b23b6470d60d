//! The workspace reconciler: makes Docker run each workspace's `desired_digest`, through
//! the journaled update saga ([`saga`]), one saga per workspace, at most
//! `[update] max_parallel` at once. Also: crash resume of unfinished journal rows
//! ([`Reconciler::resume_all`], run by [`Reconciler::run`] before its first pass),
//! adoption of an existing matching container without a restart, and drift detection.
//!
//! # Stopping
//!
//! [`Reconciler::run`] owns every saga it starts (a `JoinSet`). When its stop token is
//! cancelled (SIGTERM/SIGINT) it starts nothing new — no pass, no saga; a saga still
//! waiting for a `max_parallel` slot gives up before opening or touching anything — and
//! sets the reconciler's own stop flag. Running sagas are **not** cut: they go on until
//! they reach their next journal point, bounded by `[update] shutdown_grace`. Whatever
//! still runs after that is aborted; its journal row stays at its phase and is resumed at
//! the next start, as after a crash.
//!
//! Contract with the saga driver ([`saga`]): after journaling a phase and before acting
//! on it, the driver calls `Inner::stopping()`; when it returns `true` the driver returns
//! `Ok(())` without acting, leaving the row at the phase just journaled. A step that has
//! begun always runs to its end (a snapshot is complete or failed, never half-written;
//! a restore is verified or failed), so a graceful stop never leaves a step half done.
//! Long waits inside a step that are safe to leave early (the health gate's polling) may
//! also watch `Inner::stop_token().cancelled()`; leaving early there must not journal a
//! failure.
//!
//! Test-only hook, compiled into the test build only (the `fault-injection` feature, see
//! `crate::fault` for the finer fault points): when the environment variable
//! `SLUICE_TEST_PAUSE_AT` names a saga phase (e.g. `snapshotting`), the saga logs
//! `test_pause` with that phase right after journaling it and then sleeps forever, so a
//! test can SIGKILL the daemon exactly there. A production build never reads it.
//!
//! Where things live: this file holds the loop (`run`) and `spawn`; `state` what the
//! tasks share, `pass` one pass and crash resume, `converge` one workspace, `drift` what runs against the store and the spec,
//! `retire` deleted workspaces, `serve` the loop's passes and drain, `saga` the update
//! saga, `tunables` the settings, `error` the error type.

pub mod container;
mod converge;
mod drift;
mod error;
pub mod health;
mod metrics;
mod pass;
pub mod phases;
mod restore;
mod retire;
pub mod router;
mod saga;
mod serve;
pub mod smoke;
mod state;
mod step_error;
pub mod task;
mod tunables;
pub mod volumes;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::ReconcilerMetrics;

use crate::runtime::ContainerRuntime;

pub use error::ReconcileError;
use serve::{join_all, report_join};
pub(crate) use state::Inner;
pub use state::Reconciler;
use state::event;
pub use tunables::ReconcilerConfig;

/// Environment variable of the test-only pause hook (see the module docs).
pub const PAUSE_ENV: &str = "SLUICE_TEST_PAUSE_AT";

impl<R: ContainerRuntime> Reconciler<R> {
    /// The loop, until `stop`: first every unfinished journal row is resumed (no new work
    /// starts before they have ended), then a pass on every wake-up and every
    /// `reconcile_interval`. On `stop` it starts nothing more and lets running sagas reach
    /// their next journal point for at most `shutdown_grace` (module docs, "Stopping").
    /// Runs [`task::ReconcilerTask`] on the task driver, without pass metrics (the daemon
    /// uses [`spawn`]).
    pub async fn run(self, stop: CancellationToken) {
        task::ReconcilerTask::driver(self, crate::metrics::TaskMetrics::unregistered())
            .run(stop)
            .await;
    }
}

/// Spawns the reconciler and the snapshot cleanup on `tasks`, each on the task driver;
/// both end on `stop` (the reconciler after its running sagas, see the module docs), and
/// the daemon waits for them through `tasks` before it exits.
pub fn spawn<R: ContainerRuntime>(
    rec: Reconciler<R>,
    cleanup: task::SnapshotCleanup,
    metrics: &crate::metrics::TaskMetrics,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    let reconciler = task::ReconcilerTask::driver(rec, metrics.clone());
    let cleanup = task::SnapshotCleanup::driver(cleanup, metrics.clone());
    let s = stop.clone();
    tasks.spawn(async move {
        reconciler.run(s).await;
    });
    tasks.spawn(async move {
        cleanup.run(stop).await;
    });
}

#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod tests;
