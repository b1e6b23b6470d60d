//! One reconcile pass (retirements, drift, queued restores, converging sagas), crash
//! resume of open journal rows, and `converge_all` for tests and benchmarks.

use tokio::task::JoinSet;

use super::*;
use crate::runtime::ContainerRuntime;
use crate::store::{UnreadableRow, UpdateKind};

impl<R: ContainerRuntime> Reconciler<R> {
    /// Spawns one task per unfinished journal row into `set` (forwards where safe,
    /// otherwise back). Returns how many rows were open.
    pub(super) async fn spawn_resumes(
        &self,
        set: &mut JoinSet<()>,
    ) -> Result<usize, ReconcileError> {
        let (rows, unreadable) = self
            .inner
            .store
            .open_updates_checked(&self.inner.cfg.host)
            .await?;
        self.quarantine_unreadable(&unreadable).await?;
        let n = rows.len() + unreadable.len();
        for row in rows {
            self.spawn_drive(set, row);
        }
        Ok(n)
    }

    /// Drives an open journal row to its end in a task of `set`, unless its workspace
    /// already has a saga running (then the row waits for the next pass or start).
    pub(super) fn spawn_drive(&self, set: &mut JoinSet<()>, row: crate::store::UpdateRow) {
        let Some(guard) = self.try_lock(row.workspace_id) else {
            return;
        };
        let me = self.clone();
        set.spawn(async move {
            let _guard = guard;
            let Some(_permit) = me.slot().await else {
                return;
            };
            tracing::warn!(update = row.id, phase = %row.phase, kind = row.kind.as_str(), "driving an open journal row");
            if let Err(e) = me.inner.resume(row).await {
                tracing::error!(error = %e, "driving a journal row failed");
            }
        });
    }

    /// A journal row this version cannot read is refused: its workspace is quarantined
    /// with the reason, naming the row; nothing in Docker is touched.
    pub(super) async fn quarantine_unreadable(
        &self,
        rows: &[UnreadableRow],
    ) -> Result<(), ReconcileError> {
        for r in rows {
            let name = self.inner.store.workspace_name(r.workspace_id).await?;
            let reason = format!("journal row {} cannot be read: {}", r.id, r.error);
            tracing::error!(workspace = %name, update = r.id, error = %reason, "workspace quarantined: operator action needed");
            let ev = event(
                &name,
                "update_quarantined",
                serde_json::json!({"update_id": r.id, "error": reason}),
                None,
            );
            self.inner
                .store
                .quarantine_unreadable(r, &reason, &ev, self.inner.clock.now())
                .await?;
        }
        Ok(())
    }

    /// Resumes every unfinished journal row (forwards where safe, otherwise back) and
    /// waits for all of them to reach a terminal phase. Returns how many were resumed.
    /// [`Reconciler::run`] does the same first, stop-aware.
    pub async fn resume_all(&self) -> Result<usize, ReconcileError> {
        let mut set = JoinSet::new();
        let n = self.spawn_resumes(&mut set).await?;
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// One pass: retiring deleted workspaces, drift detection, then a saga for every
    /// workspace that needs one (not waited for: they are added to `set`).
    pub async fn pass(&self, set: &mut JoinSet<()>) -> Result<(), ReconcileError> {
        // Deleted workspaces first: their container names may be wanted again.
        self.retire_pending().await?;
        self.detect_drift().await?;
        // Operator restores and recoveries are queued as journal rows; they run here.
        let (rows, unreadable) = self
            .inner
            .store
            .open_updates_checked(&self.inner.cfg.host)
            .await?;
        self.quarantine_unreadable(&unreadable).await?;
        for row in rows.into_iter().filter(|r| r.kind != UpdateKind::Update) {
            self.spawn_drive(set, row);
        }
        if !self.schedulable().await? {
            return Ok(());
        }
        for t in self
            .inner
            .store
            .converge_targets(&self.inner.cfg.host)
            .await?
        {
            let Some(guard) = self.try_lock(t.workspace_id) else {
                continue;
            };
            let me = self.clone();
            set.spawn(async move {
                let _guard = guard;
                let Some(_permit) = me.slot().await else {
                    return;
                };
                if let Err(e) = me.converge(&t.name, t.rollout_id).await {
                    tracing::error!(workspace = %t.name, error = %e, "converging failed");
                }
            });
        }
        Ok(())
    }

    /// Whether new updates may start on this reconciler's host: not while an operator
    /// has it cordoned or draining (open journal rows are still driven to their end).
    /// A host without a row (a store no daemon registered) is schedulable.
    async fn schedulable(&self) -> Result<bool, ReconcileError> {
        let host = &self.inner.cfg.host;
        match self.inner.store.host(host).await {
            Ok(row) if row.schedule != crate::domain::HostSchedule::Active => {
                tracing::debug!(host = %host, schedule = %row.schedule, "host is cordoned: no update starts");
                Ok(false)
            }
            Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs passes until every saga started has finished and nothing is left to do
    /// (for tests and the benchmark).
    /// Stops when a pass starts nothing, or finds the same targets as the pass before
    /// (nothing it can do, e.g. a name held by an unmanaged container).
    pub async fn converge_all(&self) -> Result<(), ReconcileError> {
        let mut previous = None;
        loop {
            let targets = self
                .inner
                .store
                .converge_targets(&self.inner.cfg.host)
                .await?;
            if previous.as_ref() == Some(&targets) {
                return Ok(());
            }
            let mut set = JoinSet::new();
            self.pass(&mut set).await?;
            if set.is_empty() {
                return Ok(());
            }
            while set.join_next().await.is_some() {}
            previous = Some(targets);
        }
    }
}
