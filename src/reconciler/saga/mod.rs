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

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::container::{
    container_spec, legacy_owned_by, may_remove_volume, volume_labels, volume_labels_for,
};
use super::health::{GateConfig, gate};
use super::phases::{self, StepOutcome};
use super::restore::RestoreSource;
use super::step_error::StepError;
use super::volumes::{VolumeRemoval, remove_owned_volume};
use super::{Inner, ReconcileError, event};
use crate::domain::{Health, UpdatePhase, WorkspaceName, WorkspaceState};
use crate::runtime::{ContainerRuntime, ContainerSpec};
use crate::store::{Outcome, SnapshotRow, UpdateKind, UpdateRow, Workspace};

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
        let ctx = Ctx {
            restore,
            name: w.name.container_name(),
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
            let to = match phases::next(phase, outcome) {
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

    /// Test build only: runs a step that just succeeded once more and fails it unless
    /// the second run also succeeds and changes nothing the tenant can see (the
    /// container's existence, state and digest; the volumes' trees and contents).
    #[cfg(feature = "fault-injection")]
    async fn repeat(
        &self,
        phase: UpdatePhase,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
        clock: &mut Timing,
    ) -> Result<(), StepError> {
        let before = self.fingerprint(ctx).await;
        self.step(phase, ctx, row, clock).await?;
        let after = self.fingerprint(ctx).await;
        if before == after {
            Ok(())
        } else {
            Err(StepError::Permanent(format!(
                "step {phase} is not idempotent: before {before:?}, after {after:?}"
            )))
        }
    }

    /// What a repeated step must leave as it was (test build only).
    #[cfg(feature = "fault-injection")]
    async fn fingerprint(&self, ctx: &Ctx<'_>) -> Vec<String> {
        let mut out = Vec::new();
        let (line, running) = match self.rt.inspect(&ctx.name).await {
            Ok(Some(c)) => (
                format!(
                    "container running={} digest={:?}",
                    c.running,
                    c.digest_label()
                ),
                c.running,
            ),
            Ok(None) => ("no container".to_owned(), false),
            Err(e) => (format!("inspect failed: {e}"), false),
        };
        out.push(line);
        // A running app writes to its volumes as it likes: data is compared only while
        // nothing runs.
        if running {
            return out;
        }
        for (volume, _) in &ctx.to.volumes {
            let line = match self.rt.volume_host_path(volume).await {
                Ok(Some(dir)) => tokio::task::spawn_blocking(move || {
                    crate::snapshot::tree::content_fingerprint(&dir)
                        .unwrap_or_else(|e| format!("unreadable: {e}"))
                })
                .await
                .unwrap_or_else(|e| format!("task: {e}")),
                Ok(None) => "not on this host".to_owned(),
                Err(e) => format!("inspect failed: {e}"),
            };
            out.push(format!("volume {volume}: {line}"));
        }
        out
    }

    /// Runs the step of `phase` once. Each step first looks at what the runtime shows,
    /// so running it again after a crash is harmless.
    async fn step(
        &self,
        phase: UpdatePhase,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
        clock: &mut Timing,
    ) -> Result<(), StepError> {
        match phase {
            UpdatePhase::Pulling => {
                self.rt
                    .ensure_image(&ctx.to.image)
                    .await
                    .map_err(|e| StepError::from(e).context("pull"))?;
                self.backup_possible(ctx).await?;
                self.restore_source_present(ctx).await?;
            }
            UpdatePhase::Stopping => {
                clock.down_since = Some(Instant::now());
                self.stop_if_running(&ctx.name).await?;
            }
            UpdatePhase::Snapshotting => self.snapshot_all(ctx, row).await?,
            UpdatePhase::Recreating => match &ctx.restore {
                // Restoring (a rollback with restore_data, an operator's restore or
                // recovery): the just-taken snapshots make even this undoable; a failure
                // rolls back to them.
                Some(source) => self.restore_data(ctx, source).await?,
                None => {
                    self.ensure_container(&ctx.name, &ctx.to, ctx.w.name.as_str())
                        .await?;
                }
            },
            UpdatePhase::Starting => self.rt.start(&ctx.name).await.map_err(StepError::from)?,
            UpdatePhase::HealthChecking | UpdatePhase::Verifying => self.health(ctx).await?,
            UpdatePhase::RollingBack => {
                self.metrics.rollbacks.inc();
                self.stop_if_running(&ctx.name).await?;
            }
            UpdatePhase::Restoring => self.restore_all(ctx).await?,
            UpdatePhase::Reverting => {
                let from = ctx.from.as_ref().ok_or(StepError::NothingToRevert)?;
                self.rt
                    .ensure_image(&from.image)
                    .await
                    .map_err(StepError::from)?;
                self.ensure_container(&ctx.name, from, ctx.w.name.as_str())
                    .await?;
            }
            terminal => {
                return Err(StepError::Permanent(format!(
                    "no step runs in terminal phase {terminal}"
                )));
            }
        }
        Ok(())
    }

    /// Writes the terminal outcome `to`, reached from `from` (see [`phases::next`]).
    async fn end(
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

    /// With `require_snapshot`, an update whose volumes cannot be backed up does not
    /// start: nothing is stopped. Backing up needs about the volumes' size (read on the
    /// host where the volume is reachable, else the size of its newest complete snapshot)
    /// plus `[snapshots] min_free_bytes` free in the snapshot directory.
    async fn backup_possible(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        if !self.cfg.require_snapshot || ctx.to.volumes.is_empty() {
            return Ok(());
        }
        tokio::fs::create_dir_all(self.snaps.dir())
            .await
            .map_err(|e| format!("snapshot dir {}: {e}", self.snaps.dir().display()))?;
        let mut estimate = 0u64;
        for (volume, _) in &ctx.to.volumes {
            estimate = estimate.saturating_add(
                self.snaps
                    .estimate(&self.rt, ctx.w.id, volume)
                    .await
                    .map_err(StepError::from)?,
            );
        }
        let free = self.snaps.free_bytes().map_err(StepError::from)?;
        let reserve = self.snaps.min_free_bytes();
        if free < estimate.saturating_add(reserve) {
            return Err(format!(
                "cannot back up volumes: {free} bytes free in {}, the volumes need about \
                 {estimate} bytes plus snapshots.min_free_bytes {reserve}",
                self.snaps.dir().display()
            )
            .into());
        }
        Ok(())
    }

    async fn stop_if_running(&self, name: &str) -> Result<(), StepError> {
        match self.rt.inspect(name).await.map_err(StepError::from)? {
            Some(c) if c.running => self
                .rt
                .stop(name, self.cfg.stop_timeout)
                .await
                .map_err(StepError::from),
            _ => Ok(()),
        }
    }

    /// Makes `name` exist with exactly `spec`'s digest (removing a managed container of
    /// another digest) and its volumes present; does not start it.
    pub(super) async fn ensure_container(
        &self,
        name: &str,
        spec: &ContainerSpec,
        workspace: &str,
    ) -> Result<(), StepError> {
        if let Some(c) = self.rt.inspect(name).await.map_err(StepError::from)? {
            if c.digest_label()
                == spec
                    .labels
                    .get(crate::runtime::LABEL_DIGEST)
                    .map(String::as_str)
            {
                return Ok(());
            }
            if !c.is_managed() {
                return Err(format!("container {name} is not managed by sluice").into());
            }
            self.rt.remove(name).await.map_err(StepError::from)?;
        }
        for (v, _) in &spec.volumes {
            self.rt
                .volume_create(v, &volume_labels_for(spec, workspace)?)
                .await
                .map_err(StepError::from)?;
        }
        self.rt.create(spec).await.map_err(StepError::from)?;
        Ok(())
    }

    async fn snapshot_all(&self, ctx: &Ctx<'_>, row: &mut UpdateRow) -> Result<(), StepError> {
        self.snaps
            .discard_incomplete(row.id)
            .await
            .map_err(StepError::from)?;
        let done = self
            .store
            .snapshots_of_update(row.id)
            .await
            .map_err(StepError::from)?;
        // Without a container (new workspace, or removed behind our back) snapshot through
        // the new one, created but not started.
        if self
            .rt
            .inspect(&ctx.name)
            .await
            .map_err(StepError::from)?
            .is_none()
        {
            self.ensure_container(&ctx.name, &ctx.to, ctx.w.name.as_str())
                .await?;
        }
        let mut ids: Vec<_> = done
            .iter()
            .filter(|s| s.state == "complete")
            .map(|s| s.id.clone())
            .collect();
        for (i, (vol, mount)) in ctx.to.volumes.iter().enumerate() {
            if done
                .iter()
                .any(|s| &s.volume == vol && s.state == "complete")
            {
                continue;
            }
            if self
                .rt
                .volume_inspect(vol)
                .await
                .map_err(StepError::from)?
                .is_none()
            {
                continue;
            }
            let taken = self
                .snaps
                .take(
                    &self.rt,
                    &ctx.name,
                    ctx.w.id,
                    &ctx.w.name,
                    row.id,
                    i,
                    vol,
                    mount,
                    self.clock.now(),
                )
                .await;
            match taken {
                Ok(s) => {
                    self.metrics
                        .snapshot_bytes
                        .inc_by(u64::try_from(s.size_bytes).unwrap_or(0));
                    ids.push(s.id);
                    self.store
                        .set_update_snapshots(row.id, &ids, self.clock.now())
                        .await
                        .map_err(StepError::from)?;
                }
                Err(e) if self.cfg.require_snapshot => {
                    return Err(StepError::from(e).context(&format!("snapshot of volume {vol}")));
                }
                Err(e) => {
                    tracing::warn!(workspace = %ctx.w.name, volume = %vol, error = %e, "snapshot failed; continuing (require_snapshot = false)")
                }
            }
        }
        row.snapshot_ids = ids;
        Ok(())
    }

    /// Recreates each snapshotted volume empty and extracts its snapshot into it, through
    /// a stopped container of the digest being returned to.
    async fn restore_all(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        let snaps: Vec<_> = self
            .store
            .snapshots_of_update(ctx.row.id)
            .await
            .map_err(StepError::from)?
            .into_iter()
            .filter(|s| s.state == "complete")
            .collect();
        let target = ctx.from.as_ref().unwrap_or(&ctx.to);
        self.restore_volumes(ctx, &snaps, target).await
    }

    /// Verifies every snapshot, then (only if all are good) removes the container and
    /// refills each snapshot's own volume (by name, whatever the spec mounts today):
    /// a host snapshot in place, its result checked against the snapshot's manifest; an
    /// archive snapshot into a recreated volume through `target`'s new container (not
    /// started). Repeating it is harmless.
    pub(super) async fn restore_volumes(
        &self,
        ctx: &Ctx<'_>,
        snaps: &[SnapshotRow],
        target: &ContainerSpec,
    ) -> Result<(), StepError> {
        for s in snaps {
            self.snaps.verify(s).await.map_err(StepError::from)?;
        }
        if snaps.is_empty() {
            return Ok(());
        }
        self.rt
            .ensure_image(&target.image)
            .await
            .map_err(StepError::from)?;
        self.rt.remove(&ctx.name).await.map_err(StepError::from)?;
        let (in_place, through_archive): (Vec<_>, Vec<_>) = snaps
            .iter()
            .partition(|s| s.method.as_deref() == Some(crate::snapshot::METHOD_HOST));
        for s in &in_place {
            // Emptying a volume is removing its data: only the workspace's own.
            match self.volume_labels_of(&s.volume).await? {
                Some(labels) => may_remove_volume(&labels, ctx.w.id, restorable(ctx, s, &labels))
                    .map_err(|reason| not_ours(&s.volume, reason))?,
                None => {
                    self.rt
                        .volume_create(&s.volume, &volume_labels(ctx.w.id, ctx.w.name.as_str()))
                        .await
                        .map_err(StepError::from)?;
                }
            }
            self.snaps
                .restore(&self.rt, &ctx.name, s, None)
                .await
                .map_err(StepError::from)?;
            tracing::info!(workspace = %ctx.w.name, snapshot = %s.id, volume = %s.volume, "volume restored and verified");
        }
        for s in &through_archive {
            let adopted = self
                .volume_labels_of(&s.volume)
                .await?
                .is_some_and(|labels| restorable(ctx, s, &labels));
            let removal =
                remove_owned_volume(&self.rt, &s.volume, ctx.w.id, ctx.w.name.as_str(), adopted)
                    .await
                    .map_err(StepError::from)?;
            if let VolumeRemoval::Kept(reason) = removal {
                return Err(not_ours(&s.volume, reason).into());
            }
        }
        self.ensure_container(&ctx.name, target, ctx.w.name.as_str())
            .await?;
        for s in &through_archive {
            let mount = target
                .volumes
                .iter()
                .find(|(v, _)| v == &s.volume)
                .map(|(_, m)| m.as_str());
            self.snaps
                .restore(&self.rt, &ctx.name, s, mount)
                .await
                .map_err(StepError::from)?;
            tracing::info!(workspace = %ctx.w.name, snapshot = %s.id, volume = %s.volume, "volume restored");
        }
        Ok(())
    }

    async fn volume_labels_of(
        &self,
        volume: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StepError> {
        self.rt
            .volume_inspect(volume)
            .await
            .map_err(StepError::from)
    }

    async fn health(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        self.rt.start(&ctx.name).await.map_err(StepError::from)?;
        let probe = ctx.w.spec.health.as_ref().and_then(|h| h.http.as_ref());
        let cfg = GateConfig {
            min_healthy: self.cfg.min_healthy_time,
            deadline: self.cfg.healthy_deadline,
            poll: self.cfg.health_poll,
        };
        gate(&self.rt, &self.http, &ctx.name, probe, cfg)
            .await
            .map_err(StepError::Permanent)
    }

    async fn finish_ok(&self, ctx: &Ctx<'_>, from: UpdatePhase) -> Result<(), ReconcileError> {
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
    async fn finish_pull_failed(
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
    async fn finish_snapshot_failed(
        &self,
        ctx: &Ctx<'_>,
        reason: String,
    ) -> Result<(), ReconcileError> {
        let reason = format!("snapshotting: {reason}; nothing was changed");
        tracing::warn!(workspace = %ctx.w.name, update = ctx.row.id, error = %reason, "snapshot failed; starting the old container again");
        let from = ctx.row.from_digest.as_ref().map(ToString::to_string);
        if let Ok(Some(c)) = self.rt.inspect(&ctx.name).await
            && c.is_managed()
            && c.digest_label().map(str::to_owned) == from
            && let Err(e) = self.rt.start(&ctx.name).await
        {
            tracing::error!(workspace = %ctx.w.name, error = %e, "starting the old container again failed");
        }
        self.finish_pull_failed(ctx, UpdatePhase::Snapshotting, reason)
            .await
    }

    #[allow(clippy::too_many_arguments)] // reason: each is one part of the terminal record
    async fn finish(
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
            "error": error, "snapshots": snapshots,
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

/// Besides a volume labelled with the workspace's id: one its spec adopts, or one made
/// before volumes carried ids and labelled with its name.
fn restorable(ctx: &Ctx<'_>, s: &SnapshotRow, labels: &BTreeMap<String, String>) -> bool {
    ctx.w
        .spec
        .volumes
        .iter()
        .any(|m| m.name == s.volume && m.adopt)
        || legacy_owned_by(labels, ctx.w.name.as_str())
}

fn not_ours(volume: &str, reason: impl std::fmt::Display) -> String {
    format!("volume {volume} is not this workspace's to restore: {reason}")
}
