//! How an update ends: the terminal journal write (with the workspace and its audit
//! event, in one transaction), the metrics and the log line.

use super::{Ctx, Timing};
use crate::domain::{Health, UpdatePhase, WorkspaceState};
use crate::reconciler::restore::RestoreSource;
use crate::reconciler::{Inner, ReconcileError, event};
use crate::runtime::ContainerRuntime;
use crate::store::{Outcome, UpdateKind};

impl<R: ContainerRuntime> Inner<R> {
    /// Writes the terminal outcome `to`, reached from `from` (see [`crate::reconciler::phases::next`]).
    pub(super) async fn end(
        &self,
        ctx: &Ctx<'_>,
        from: UpdatePhase,
        to: UpdatePhase,
        reason: Option<String>,
        clock: &Timing,
    ) -> Result<(), ReconcileError> {
        match (from, to) {
            (_, UpdatePhase::Succeeded) => {
                if let Some(d) = clock.down_since {
                    self.metrics.downtime.observe(d.elapsed().as_secs_f64());
                }
                self.metrics
                    .duration
                    .observe(clock.started.elapsed().as_secs_f64());
                self.finish_ok(ctx, from).await
            }
            (_, UpdatePhase::RolledBack) => {
                let back = ctx.row.from_digest.as_ref().map_or("", |d| d.as_str());
                self.reroute(ctx, back).await;
                self.metrics
                    .duration
                    .observe(clock.started.elapsed().as_secs_f64());
                self.finish(
                    ctx,
                    from,
                    to,
                    None,
                    WorkspaceState::Running,
                    Health::Healthy,
                    true,
                )
                .await
            }
            (UpdatePhase::Pulling, UpdatePhase::Failed) => {
                self.finish_pull_failed(ctx, from, reason.unwrap_or_default())
                    .await
            }
            (UpdatePhase::Snapshotting, UpdatePhase::Failed) => {
                self.finish_snapshot_failed(ctx, reason.unwrap_or_default())
                    .await
            }
            (_, UpdatePhase::Quarantined) => {
                tracing::error!(workspace = %ctx.w.name, update = ctx.row.id, phase = from.as_str(), error = ?reason, "rollback failed; quarantining");
                self.finish(
                    ctx,
                    from,
                    to,
                    Some(format!("rollback {from}: {}", reason.unwrap_or_default())),
                    WorkspaceState::Quarantined,
                    Health::Unhealthy,
                    true,
                )
                .await
            }
            _ => {
                self.finish(
                    ctx,
                    from,
                    to,
                    reason,
                    WorkspaceState::Stopped,
                    Health::Unhealthy,
                    true,
                )
                .await
            }
        }
    }

    pub(super) async fn finish_ok(
        &self,
        ctx: &Ctx<'_>,
        from: UpdatePhase,
    ) -> Result<(), ReconcileError> {
        self.reroute(ctx, ctx.row.to_digest.as_str()).await;
        self.finish(
            ctx,
            from,
            UpdatePhase::Succeeded,
            None,
            WorkspaceState::Running,
            Health::Healthy,
            false,
        )
        .await
    }

    /// Ends an update that changed nothing (`from` is `pulling` or `snapshotting`): the
    /// workspace is as it was, running or not.
    pub(super) async fn finish_pull_failed(
        &self,
        ctx: &Ctx<'_>,
        from: UpdatePhase,
        reason: String,
    ) -> Result<(), ReconcileError> {
        let running = matches!(self.rt.inspect(&ctx.name).await, Ok(Some(c)) if c.running);
        let state = if running {
            WorkspaceState::Running
        } else {
            WorkspaceState::Stopped
        };
        let health = if running {
            Health::Healthy
        } else {
            Health::Unknown
        };
        self.finish(
            ctx,
            from,
            UpdatePhase::Failed,
            Some(reason),
            state,
            health,
            true,
        )
        .await
    }

    /// A snapshot could not be taken (e.g. the disk filled): the partial file is already
    /// gone; the container that was stopped starts again, untouched, and the update
    /// fails with the reason.
    pub(super) async fn finish_snapshot_failed(
        &self,
        ctx: &Ctx<'_>,
        reason: String,
    ) -> Result<(), ReconcileError> {
        let reason = format!("snapshotting: {reason}; nothing was changed");
        tracing::warn!(workspace = %ctx.w.name, update = ctx.row.id, error = %reason, "snapshot failed; starting the old container again");
        let from = ctx.row.from_digest.as_ref().map(ToString::to_string);
        if let Ok(Some(c)) = self.rt.inspect(&ctx.name).await
            && crate::reconciler::container::belongs_to(&c, ctx.w)
            && crate::reconciler::container::running_digest(&c, ctx.w).map(str::to_owned) == from
            && let Err(e) = self.rt.start(&ctx.name).await
        {
            tracing::error!(workspace = %ctx.w.name, error = %e, "starting the old container again failed");
        }
        self.finish_pull_failed(ctx, UpdatePhase::Snapshotting, reason)
            .await
    }

    #[allow(clippy::too_many_arguments)] // reason: each is one part of the terminal record
    pub(super) async fn finish(
        &self,
        ctx: &Ctx<'_>,
        from: UpdatePhase,
        phase: UpdatePhase,
        error: Option<String>,
        state: WorkspaceState,
        health: Health,
        failed: bool,
    ) -> Result<(), ReconcileError> {
        // A recovery that did not succeed leaves the workspace where it was: quarantined.
        let state = if ctx.row.kind == UpdateKind::Recover && phase != UpdatePhase::Succeeded {
            WorkspaceState::Quarantined
        } else {
            state
        };
        let container = self.rt.inspect(&ctx.name).await.ok().flatten();
        let actual = match phase {
            UpdatePhase::Succeeded => Some(ctx.row.to_digest.clone()),
            UpdatePhase::Quarantined => None,
            _ => ctx.row.from_digest.clone(),
        };
        let action = format!("{}_{phase}", ctx.row.kind.as_str());
        // `ctx.row` is the row as the saga started; the snapshots taken since are in the
        // store, so the audit event names what was really taken.
        let snapshots: Vec<String> = match self.store.snapshots_of_update(ctx.row.id).await {
            Ok(rows) => rows.into_iter().map(|r| r.id.to_string()).collect(),
            Err(_) => ctx
                .row
                .snapshot_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        let detail = serde_json::json!({
            "update_id": ctx.row.id, "from": ctx.row.from_digest, "to": ctx.row.to_digest,
            "host": ctx.w.host, "error": error, "snapshots": snapshots,
            "restore_data_of_update": ctx.restore.as_ref().and_then(RestoreSource::update),
            "restored": ctx.restore.as_ref().map(ToString::to_string),
        });
        let outcome = Outcome {
            from_phase: from,
            phase,
            error: error.clone(),
            actual_digest: actual,
            container_id: container.map(|c| c.id),
            state,
            health,
            // A failed restore says nothing about the digest it ran.
            remember_failure: failed && ctx.row.kind == UpdateKind::Update,
            reset_desired: failed
                && phase != UpdatePhase::Quarantined
                && ctx.row.kind == UpdateKind::Update,
            restored_from_update: ctx
                .restore
                .as_ref()
                .and_then(RestoreSource::update)
                .filter(|_| phase == UpdatePhase::Succeeded),
            event: event(ctx.w.name.as_str(), &action, detail, ctx.row.rollout_id),
        };
        self.store
            .finish_update(ctx.row, &outcome, self.clock.now())
            .await?;
        self.metrics
            .updates
            .with_label_values(&[phase.as_str()])
            .inc();
        if phase == UpdatePhase::Quarantined {
            tracing::error!(workspace = %ctx.w.name, update = ctx.row.id, error = ?error, "workspace quarantined: operator action needed");
        } else {
            tracing::info!(workspace = %ctx.w.name, update = ctx.row.id, result = phase.as_str(), error = ?error, "update finished");
        }
        self.wakers.controller.notify_one();
        Ok(())
    }
}
