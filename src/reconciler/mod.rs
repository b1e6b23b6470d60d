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
//! tasks share, `pass` one pass and crash resume, `converge` one workspace and drift,
//! `retire` deleted workspaces, `serve` the loop's passes and drain, `saga` the update
//! saga, `tunables` the settings, `error` the error type.

pub mod container;
mod converge;
mod error;
pub mod health;
mod metrics;
mod pass;
pub mod phases;
mod restore;
mod retire;
mod saga;
mod serve;
pub mod smoke;
mod state;
mod step_error;
mod tunables;
pub mod volumes;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::ReconcilerMetrics;

use crate::clock::Clock;
use crate::runtime::ContainerRuntime;
use crate::snapshot::Snapshots;

pub use error::ReconcileError;
use serve::join_all;
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
    pub async fn run(self, stop: CancellationToken) {
        let mut set = JoinSet::new();
        match self.spawn_resumes(&mut set).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(resumed = n, "resuming unfinished updates"),
            Err(e) => tracing::error!(error = %e, "resuming unfinished updates failed"),
        }
        let resumed = tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = join_all(&mut set) => true,
        };
        if resumed {
            self.serve(&stop, &mut set).await;
        }
        self.drain(set).await;
    }
}

/// Spawns the reconciler loop and the snapshot cleanup loop on `tasks`; both end on
/// `stop` (the loop after its running sagas, see the module docs), and the daemon waits
/// for them through `tasks` before it exits.
pub fn spawn<R: ContainerRuntime>(
    rec: Reconciler<R>,
    snaps: Snapshots,
    clock: Arc<dyn Clock>,
    cleanup_interval: Duration,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(rec.run(stop.clone()));
    tasks.spawn(async move {
        loop {
            // A cleanup that has begun runs to its end; the stop is seen between runs.
            if let Err(e) = snaps.cleanup(clock.now()).await {
                tracing::error!(error = %e, "snapshot cleanup failed");
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(cleanup_interval) => {}
            }
        }
        tracing::debug!("snapshot cleanup stopped");
    });
}

#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod tests;
