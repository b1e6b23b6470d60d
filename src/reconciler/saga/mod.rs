//! The update saga's driver. Each phase is journaled *before* it acts, and each step
//! first looks at what the runtime shows, so running a phase twice (after a crash) is
//! harmless. The driver runs a step, classifies how it ended and asks the pure table in
//! [`super::phases`] what follows; it never picks a phase itself:
//!
//! ```text
//! pulling ─▶ stopping ─▶ snapshotting ─▶ recreating ─▶ starting ─▶ health_checking ─▶ succeeded
//!   │fail: failed        │fail: failed (old container started again)  │fail (stopping, recreating,
//!   ▼ (nothing touched)  ▼                                            ▼  starting, health_checking)
//!                        rolling_back ─▶ restoring ─▶ reverting ─▶ verifying ─▶ rolled_back
//!                                    (any rollback step fails: quarantined)
//! ```
//!
//! Resume after a crash continues from the journaled phase: forwards up to and including
//! `health_checking` (nothing irreversible happened before the snapshots were complete),
//! backwards for the rollback phases. A stop request ends the drive at the next journal
//! point; a step failing while Docker does not answer waits for it; a rollback step gets
//! a few tries before the workspace is quarantined.
//!
//! This module is the driver only; the steps live beside it: `steps` (pull, stop,
//! recreate, start, health gate), `snapshot_steps` (snapshots and restores of the
//! volumes) and `finish` (the terminal journal writes).

use std::time::Duration;

use tokio::time::Instant;

use super::container::container_spec;
use super::phases::{self, StepOutcome};
use super::restore::RestoreSource;
use super::step_error::StepError;
use super::{Inner, ReconcileError, event};
use crate::domain::spec::UpdateOrder;
use crate::domain::{Health, UpdatePhase, WorkspaceName, WorkspaceState};
use crate::runtime::{ContainerRuntime, ContainerSpec};
use crate::store::{UpdateKind, UpdateRow, Workspace};

/// When the saga started, and when the workspace went down (for the metrics).
struct Timing {
    started: Instant,
    down_since: Option<Instant>,
}

pub(super) struct Ctx<'a> {
    pub(super) row: &'a UpdateRow,
    pub(super) w: &'a Workspace,
    pub(super) name: String,
    pub(super) to: ContainerSpec,
    pub(super) from: Option<ContainerSpec>,
    /// Rollback with `restore_data`: the update whose pre-update snapshots this attempt
    /// restores (re-read from `rollout_targets` on every drive, so resume knows it too).
    pub(super) restore: Option<RestoreSource>,
    /// How this attempt replaces the container (stop-first whenever data is restored).
    pub(super) order: UpdateOrder,
    /// Start-first: the new container's name until it takes the workspace's.
    pub(super) staged: String,
}

impl<R: ContainerRuntime> Inner<R> {
    /// Continues an unfinished journal row from its phase.
    pub(super) async fn resume(&self, row: UpdateRow) -> Result<(), ReconcileError> {
        let name = self.store.workspace_name(row.workspace_id).await?;
        let wname = WorkspaceName::parse(&name).map_err(|e| crate::store::StoreError::Corrupt {
            what: "workspace",
            message: e.to_string(),
        })?;
        let w = self.store.workspace(&wname).await?;
        self.drive(row, w).await
    }

    async fn pause_hook(&self, phase: UpdatePhase, workspace: &str) {
        if self.pause_at.as_deref() == Some(phase.as_str()) {
            tracing::warn!(phase = phase.as_str(), workspace, "test_pause");
            self.parked.store(true, std::sync::atomic::Ordering::SeqCst);
            loop {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }
    }

    /// Runs the saga of `row` from its journaled phase to a terminal one.
    pub(super) async fn drive(
        &self,
        mut row: UpdateRow,
        w: Workspace,
    ) -> Result<(), ReconcileError> {
        let started = Instant::now();
        let restore = match (row.kind, row.rollout_id) {
            (UpdateKind::Restore | UpdateKind::Recover, _) => {
                Some(RestoreSource::Snapshots(row.restore_snapshot_ids.clone()))
            }
            (UpdateKind::Update, Some(r)) => self
                .store
                .pending_restore(r, row.workspace_id, &row.to_digest)
                .await?
                .map(RestoreSource::Update),
            (UpdateKind::Update, None) => None,
        };
        let order = if restore.is_none() && row.kind == UpdateKind::Update {
            row.order
        } else {
            UpdateOrder::StopFirst
        };
        let ctx = Ctx {
            order,
            staged: start_first::staged_name(&w.container_name()),
            restore,
            name: w.container_name(),
            to: container_spec(&w, &row.to_digest),
            from: row.from_digest.as_ref().map(|d| container_spec(&w, d)),
            row: &row.clone(),
            w: &w,
        };
        let mut phase = row.phase;
        if phase.is_terminal() {
            tracing::warn!(
                update = row.id,
                phase = phase.as_str(),
                "update already finished"
            );
            return Ok(());
        }
        let mut clock = Timing {
            started,
            down_since: None,
        };
        loop {
            // A stop was requested: the row stays at its journaled phase, resumed on the
            // next start; the step that ran last has finished (see `Inner::stopping`).
            if self.stopping() {
                tracing::info!(workspace = %w.name, update = row.id, phase = phase.as_str(), "stopping: update left at its journaled phase");
                return Ok(());
            }
            self.pause_hook(phase, w.name.as_str()).await;
            tracing::info!(workspace = %w.name, update = row.id, phase = phase.as_str(), "update phase");
            let step = self.step_with_retries(phase, &ctx, &mut row, &mut clock);
            let result = crate::fault::in_phase(phase.as_str(), step).await;
            #[cfg(feature = "fault-injection")]
            let result = match result {
                Ok(()) if self.cfg.repeat_steps => {
                    self.repeat(phase, &ctx, &mut row, &mut clock).await
                }
                other => other,
            };
            let (outcome, reason) = match result {
                Ok(()) => (StepOutcome::Done, None),
                Err(StepError::NothingToRevert) => (
                    StepOutcome::NothingToRevert,
                    Some("no previous digest to roll back to".to_owned()),
                ),
                Err(e) => (StepOutcome::Failed, Some(e.to_string())),
            };
            let to = match phases::next_in(ctx.order, phase, outcome) {
                Ok(to) => to,
                Err(illegal) => {
                    return self
                        .finish(
                            &ctx,
                            phase,
                            UpdatePhase::Quarantined,
                            Some(illegal.to_string()),
                            WorkspaceState::Quarantined,
                            Health::Unhealthy,
                            true,
                        )
                        .await;
                }
            };
            if to.is_terminal() {
                return self.end(&ctx, phase, to, reason, &clock).await;
            }
            let now = self.clock.now();
            if to == UpdatePhase::RollingBack {
                let reason = format!("{phase}: {}", reason.unwrap_or_default());
                tracing::warn!(workspace = %w.name, update = row.id, phase = phase.as_str(), error = %reason, "update failed; rolling back");
                let ev = event(
                    w.name.as_str(),
                    "update_rolling_back",
                    serde_json::json!({"update_id": row.id, "from": row.from_digest,
                        "to": row.to_digest, "error": reason}),
                    row.rollout_id,
                );
                self.store
                    .begin_rollback(&row, phase, &reason, &ev, now)
                    .await?;
            } else {
                self.store.advance_update(row.id, phase, to, now).await?;
            }
            phase = to;
        }
    }

    /// Runs the step of `phase`, again after a failure that was only a hiccup (a
    /// transient [`StepError`]): while Docker does not answer, the step waits for it (up
    /// to `docker_outage_grace`) and then runs again; a rollback step that met a busy or
    /// slow engine gets `rollback_attempts` tries with a doubling backoff. A permanent
    /// failure counts at once. A step is safe to repeat (it looks at what the runtime
    /// shows first).
    async fn step_with_retries(
        &self,
        phase: UpdatePhase,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
        clock: &mut Timing,
    ) -> Result<(), StepError> {
        let mut attempt = 1u32;
        let mut outages = 0u32;
        let mut backoff = self.cfg.retry_backoff;
        loop {
            let result = self.step(phase, ctx, row, clock).await;
            let Err(e) = &result else {
                return result;
            };
            if !e.is_transient() {
                return result;
            }
            if !self.rt.ping().await && outages < 10 {
                outages += 1;
                tracing::warn!(workspace = %ctx.w.name, update = ctx.row.id, phase = phase.as_str(), error = %e, "docker does not answer; waiting for it before going on");
                if !self.wait_for_docker().await {
                    return result;
                }
                continue;
            }
            if !phases::is_rollback(phase) || attempt >= self.cfg.rollback_attempts {
                return result;
            }
            tracing::warn!(workspace = %ctx.w.name, update = ctx.row.id, phase = phase.as_str(), attempt, error = %e, "rollback step failed; trying again");
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
            attempt += 1;
        }
    }

    /// Polls Docker until it answers (true) or `docker_outage_grace` has passed (false).
    async fn wait_for_docker(&self) -> bool {
        let deadline = Instant::now() + self.cfg.docker_outage_grace;
        let mut pause = self.cfg.retry_backoff;
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            if self.rt.ping().await {
                return true;
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
        false
    }
}

mod finish;
mod snapshot_steps;
mod start_first;
mod steps;

pub(crate) use start_first::staged_name;
