//! The reconciler and the snapshot cleanup as [`Task`]s.
//!
//! [`ReconcilerTask`]: the first pass resumes every unfinished journal row and waits for
//! them to end (no new work starts before; a stop ends the wait); every pass after that
//! is one [`Reconciler::pass`]. It runs again after `[update] reconcile_interval`, when
//! `Wakers::reconciler` is notified (a desired digest changed, Docker reported a managed
//! container gone) and when a saga it started ends. Its sagas outlive the pass that
//! started them; when the daemon stops, [`Task::stopped`] lets them reach their next
//! journal point for at most `shutdown_grace` (module docs, "Stopping").
//!
//! [`SnapshotCleanup`]: one retention run per pass, every `[snapshots] cleanup_interval`;
//! a run that has begun runs to its end.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::metrics::TaskMetrics;
use crate::runtime::ContainerRuntime;
use crate::snapshot::{SnapshotError, Snapshots};
use crate::task::{Action, Backoff, Driver, Pass, Task};

use super::{ReconcileError, Reconciler, join_all, report_join};

/// Drives [`Reconciler::pass`] and owns the sagas it starts.
pub struct ReconcilerTask<R> {
    rec: Reconciler<R>,
    /// Every saga started and not yet joined.
    sagas: JoinSet<()>,
    /// The unfinished journal rows of the previous run have been resumed.
    resumed: bool,
}

impl<R: ContainerRuntime> ReconcilerTask<R> {
    pub fn new(rec: Reconciler<R>) -> Self {
        Self {
            rec,
            sagas: JoinSet::new(),
            resumed: false,
        }
    }

    /// The task with its wake-up (`Wakers::reconciler`) and backoff (1 s doubling, at
    /// most `reconcile_interval`), ready to run.
    pub fn driver(rec: Reconciler<R>, metrics: TaskMetrics) -> Driver<Self> {
        let wake = rec.inner.wakers.reconciler.clone();
        let every = rec.inner.cfg.reconcile_interval;
        Driver::new(Self::new(rec), metrics)
            .wake_on(wake)
            .backoff(Backoff::new(Backoff::default().initial.min(every), every))
    }

    /// Resumes the unfinished journal rows and waits for them, or for the stop.
    async fn resume(&mut self, cx: &Pass) {
        match self.rec.spawn_resumes(&mut self.sagas).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(resumed = n, "resuming unfinished updates"),
            Err(e) => tracing::error!(error = %e, "resuming unfinished updates failed"),
        }
        tokio::select! {
            biased;
            () = cx.stop().cancelled() => {}
            () = join_all(&mut self.sagas) => self.resumed = true,
        }
    }
}

impl<R: ContainerRuntime> Task for ReconcilerTask<R> {
    const NAME: &'static str = "reconciler";
    type Error = ReconcileError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, ReconcileError> {
        if !self.resumed {
            self.resume(cx).await;
            if !self.resumed {
                // Stopping: the driver starts no other pass.
                return Ok(Action::await_change());
            }
        }
        while let Some(r) = self.sagas.try_join_next() {
            report_join(r);
        }
        self.rec.pass(&mut self.sagas).await?;
        Ok(Action::requeue(self.rec.inner.cfg.reconcile_interval))
    }

    /// A saga ended: look again at once (what it changed may allow more work).
    async fn changed(&mut self) {
        match self.sagas.join_next().await {
            Some(r) => report_join(r),
            None => std::future::pending().await,
        }
    }

    async fn stopped(&mut self) {
        self.rec.drain(std::mem::take(&mut self.sagas)).await;
    }
}

/// Applies snapshot retention (`Snapshots::cleanup`) with the time from the one clock.
pub struct SnapshotCleanup {
    snaps: Snapshots,
    clock: Arc<dyn Clock>,
    every: Duration,
}

impl SnapshotCleanup {
    pub fn new(snaps: Snapshots, clock: Arc<dyn Clock>, every: Duration) -> Self {
        Self {
            snaps,
            clock,
            every,
        }
    }

    /// The task with its backoff (1 s doubling, at most `every`), ready to run.
    pub fn driver(self, metrics: TaskMetrics) -> Driver<Self> {
        let every = self.every;
        Driver::new(self, metrics)
            .backoff(Backoff::new(Backoff::default().initial.min(every), every))
    }
}

impl Task for SnapshotCleanup {
    const NAME: &'static str = "snapshot_cleanup";
    type Error = SnapshotError;

    async fn pass(&mut self, _cx: &mut Pass) -> Result<Action, SnapshotError> {
        let removed = self.snaps.cleanup(self.clock.now()).await?;
        if removed > 0 {
            tracing::debug!(removed, "snapshot cleanup");
        }
        Ok(Action::requeue(self.every))
    }
}
