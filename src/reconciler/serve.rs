//! The end of the reconciler's life: the drain that lets running sagas reach their next
//! journal point (module docs, "Stopping"), and joining saga tasks.

use tokio::task::JoinSet;

use super::*;
use crate::runtime::ContainerRuntime;

impl<R: ContainerRuntime> Reconciler<R> {
    /// Stopping: raises the sagas' stop flag, waits up to `shutdown_grace` for the running
    /// ones to return, then aborts the rest (their rows resume at the next start).
    pub(super) async fn drain(&self, mut set: JoinSet<()>) {
        self.inner.stop.cancel();
        crate::fault::release();
        let grace = self.inner.cfg.shutdown_grace;
        if !set.is_empty() {
            tracing::info!(
                running = set.len(),
                grace = %humantime::format_duration(grace),
                "stopping: letting running updates reach their next journal point"
            );
        }
        if tokio::time::timeout(grace, join_all(&mut set))
            .await
            .is_err()
        {
            tracing::warn!(
                aborted = set.len(),
                grace = %humantime::format_duration(grace),
                "updates still running after update.shutdown_grace; aborting them \
                 (they resume from their journaled phase at the next start)"
            );
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        tracing::info!("reconciler stopped");
    }
}

/// Waits for every task of `set`, logging any that panicked.
pub(super) async fn join_all(set: &mut JoinSet<()>) {
    while let Some(r) = set.join_next().await {
        report_join(r);
    }
}

pub(super) fn report_join(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!(error = %e, "an update task panicked");
    }
}
