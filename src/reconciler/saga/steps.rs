//! The saga's forward steps (pull, stop, recreate, start and the health gate), the check
//! that a backup is possible before anything stops, and (test build) the repeat of a step
//! that proves it idempotent.

use tokio::time::Instant;

use super::{Ctx, Timing};
use crate::domain::UpdatePhase;
use crate::reconciler::Inner;
use crate::reconciler::container::{belongs_to, running_digest, volume_labels_for};
use crate::reconciler::health::{GateConfig, Probe, gate};
use crate::reconciler::step_error::StepError;
use crate::runtime::{ContainerRuntime, ContainerSpec};
use crate::store::UpdateRow;

impl<R: ContainerRuntime> Inner<R> {
    /// Test build only: runs a step that just succeeded once more and fails it unless
    /// the second run also succeeds and changes nothing the tenant can see (the
    /// container's existence, state and digest; the volumes' trees and contents).
    #[cfg(feature = "fault-injection")]
    pub(super) async fn repeat(
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
    pub(super) async fn fingerprint(&self, ctx: &Ctx<'_>) -> Vec<String> {
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
    pub(super) async fn step(
        &self,
        phase: UpdatePhase,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
        clock: &mut Timing,
    ) -> Result<(), StepError> {
        if ctx.order == crate::domain::spec::UpdateOrder::StartFirst {
            return self.step_start_first(phase, ctx, row).await;
        }
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
                self.precopy_all(ctx, row).await;
                clock.down_since = Some(Instant::now());
                self.stop_if_running(&ctx.name, self.stop_grace(ctx))
                    .await?;
            }
            UpdatePhase::Snapshotting => self.snapshot_all(ctx, row).await?,
            UpdatePhase::Recreating => match &ctx.restore {
                // Restoring (a rollback with restore_data, an operator's restore or
                // recovery): the just-taken snapshots make even this undoable; a failure
                // rolls back to them.
                Some(source) => self.restore_data(ctx, source).await?,
                None => {
                    self.ensure_container(&ctx.name, &ctx.to, ctx.w).await?;
                }
            },
            UpdatePhase::Starting => self.rt.start(&ctx.name).await.map_err(StepError::from)?,
            UpdatePhase::HealthChecking | UpdatePhase::Verifying => self.health(ctx).await?,
            UpdatePhase::RollingBack => {
                self.metrics.rollbacks.inc();
                self.stop_if_running(&ctx.name, self.stop_grace(ctx))
                    .await?;
            }
            UpdatePhase::Restoring => self.restore_all(ctx).await?,
            UpdatePhase::Reverting => {
                let from = ctx.from.as_ref().ok_or(StepError::NothingToRevert)?;
                self.rt
                    .ensure_image(&from.image)
                    .await
                    .map_err(StepError::from)?;
                self.ensure_container(&ctx.name, from, ctx.w).await?;
            }
            terminal => {
                return Err(StepError::Permanent(format!(
                    "no step runs in terminal phase {terminal}"
                )));
            }
        }
        Ok(())
    }

    /// With `require_snapshot`, an update whose volumes cannot be backed up does not
    /// start: nothing is stopped. Backing up needs about the volumes' size (read on the
    /// host where the volume is reachable, else the size of its newest complete snapshot)
    /// plus `[snapshots] min_free_bytes` free in the snapshot directory.
    pub(super) async fn backup_possible(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
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

    /// How long a stop waits before Docker kills: the workspace's `stop_timeout`, else
    /// `[update] stop_timeout`.
    pub(super) fn stop_grace(&self, ctx: &Ctx) -> std::time::Duration {
        ctx.to.stop_timeout.map_or(self.cfg.stop_timeout, |s| {
            std::time::Duration::from_secs(s.into())
        })
    }

    pub(super) async fn stop_if_running(
        &self,
        name: &str,
        grace: std::time::Duration,
    ) -> Result<(), StepError> {
        match self.rt.inspect(name).await.map_err(StepError::from)? {
            Some(c) if c.running => self.rt.stop(name, grace).await.map_err(StepError::from),
            _ => Ok(()),
        }
    }

    /// Makes `name` exist with exactly `spec`'s digest (removing a managed container of
    /// another digest) and its volumes present; does not start it.
    pub(in crate::reconciler) async fn ensure_container(
        &self,
        name: &str,
        spec: &ContainerSpec,
        w: &crate::store::Workspace,
    ) -> Result<(), StepError> {
        let workspace = w.name.as_str();
        if let Some(c) = self.rt.inspect(name).await.map_err(StepError::from)? {
            let wanted = spec
                .labels
                .get(crate::runtime::LABEL_DIGEST)
                .map(String::as_str);
            // Created by a step that stopped before it attached every network (a crash
            // between the two): not finished, so it is made again rather than started.
            let short_of_a_network = !c.running
                && spec
                    .networks
                    .iter()
                    .any(|a| !c.networks.contains(&a.network));
            if running_digest(&c, w) == wanted && !short_of_a_network {
                return Ok(());
            }
            if !belongs_to(&c, w) {
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
    pub(super) async fn health(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        self.gate_on(ctx, &ctx.name).await
    }

    /// Starts container `name` (if it is not running) and waits for its health gate.
    pub(super) async fn gate_on(&self, ctx: &Ctx<'_>, name: &str) -> Result<(), StepError> {
        self.rt.start(name).await.map_err(StepError::from)?;
        let probe = Probe::of(ctx.w.spec.health.as_ref());
        let cfg = GateConfig {
            min_healthy: self.cfg.min_healthy_time,
            deadline: self.cfg.healthy_deadline,
            poll: self.cfg.health_poll,
        };
        gate(&self.rt, &self.http, name, probe, cfg)
            .await
            .map_err(StepError::Permanent)
    }
}
