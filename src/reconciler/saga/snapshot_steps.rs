//! The saga's steps on data: snapshotting every volume before anything changes, and
//! restoring them (each snapshot into its own volume, checked against its manifest).

use std::collections::BTreeMap;

use super::Ctx;
use crate::reconciler::Inner;
use crate::reconciler::container::{legacy_owned_by, may_remove_volume, volume_labels};
use crate::reconciler::step_error::StepError;
use crate::reconciler::volumes::{VolumeRemoval, remove_owned_volume};
use crate::runtime::{ContainerRuntime, ContainerSpec};
use crate::store::{SnapshotRow, UpdateRow};

impl<R: ContainerRuntime> Inner<R> {
    pub(super) async fn snapshot_all(
        &self,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
    ) -> Result<(), StepError> {
        self.snaps
            .discard_incomplete(row.id, true)
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
            self.ensure_container(&ctx.name, &ctx.to, ctx.w).await?;
        }
        let mut ids: Vec<_> = done
            .iter()
            .filter(|s| s.state == crate::domain::SnapshotState::Complete)
            .map(|s| s.id.clone())
            .collect();
        for (i, (vol, mount)) in ctx.to.volumes.iter().enumerate() {
            if done
                .iter()
                .any(|s| &s.volume == vol && s.state == crate::domain::SnapshotState::Complete)
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
                    // The update ends here: no other volume's pre-copy is gone on with.
                    self.snaps
                        .discard_incomplete(row.id, false)
                        .await
                        .map_err(StepError::from)?;
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

    /// Stage one of each volume's snapshot, while the container still runs (see
    /// `snapshot::staged`): copies what changed since the volume's previous snapshot, so
    /// the delta taken once it is stopped is short. Best effort: a pre-copy that fails
    /// only leaves the delta more to read, so it is logged and the update goes on.
    pub(super) async fn precopy_all(&self, ctx: &Ctx<'_>, row: &UpdateRow) {
        if !self.snaps.incremental() {
            return;
        }
        match self.rt.inspect(&ctx.name).await {
            Ok(Some(c)) if c.running => {}
            _ => return,
        }
        for (i, (vol, mount)) in ctx.to.volumes.iter().enumerate() {
            if !matches!(self.rt.volume_inspect(vol).await, Ok(Some(_))) {
                continue;
            }
            let t = crate::snapshot::VolumeTarget {
                workspace_id: ctx.w.id,
                workspace: &ctx.w.name,
                update_id: row.id,
                index: i,
                volume: vol,
                mount,
            };
            if let Err(e) = self.snaps.precopy(&self.rt, &t, self.clock.now()).await {
                tracing::warn!(workspace = %ctx.w.name, update = row.id, volume = %vol, error = %e, "snapshot pre-copy failed; the snapshot reads everything once stopped");
            }
        }
    }

    /// Recreates each snapshotted volume empty and extracts its snapshot into it, through
    /// a stopped container of the digest being returned to.
    pub(super) async fn restore_all(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        let snaps: Vec<_> = self
            .store
            .snapshots_of_update(ctx.row.id)
            .await
            .map_err(StepError::from)?
            .into_iter()
            .filter(|s| s.state == crate::domain::SnapshotState::Complete)
            .collect();
        let target = ctx.from.as_ref().unwrap_or(&ctx.to);
        self.restore_volumes(ctx, &snaps, target).await
    }

    /// Verifies every snapshot, then (only if all are good) removes the container and
    /// refills each snapshot's own volume (by name, whatever the spec mounts today):
    /// a host snapshot in place, its result checked against the snapshot's manifest; an
    /// archive snapshot into a recreated volume through `target`'s new container (not
    /// started). Repeating it is harmless.
    pub(in crate::reconciler) async fn restore_volumes(
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
        let (in_place, through_archive): (Vec<_>, Vec<_>) = snaps.iter().partition(|s| {
            matches!(
                s.method.as_deref(),
                Some(crate::snapshot::METHOD_HOST | crate::snapshot::METHOD_STORE)
            )
        });
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
        self.ensure_container(&ctx.name, target, ctx.w).await?;
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

    pub(super) async fn volume_labels_of(
        &self,
        volume: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StepError> {
        self.rt
            .volume_inspect(volume)
            .await
            .map_err(StepError::from)
    }
}

/// Besides a volume labelled with the workspace's id: one its spec adopts, or one made
/// before volumes carried ids and labelled with its name.
pub(super) fn restorable(
    ctx: &Ctx<'_>,
    s: &SnapshotRow,
    labels: &BTreeMap<String, String>,
) -> bool {
    ctx.w
        .spec
        .volumes
        .iter()
        .any(|m| m.name == s.volume && m.adopt)
        || legacy_owned_by(labels, ctx.w.name.as_str())
}

pub(super) fn not_ours(volume: &str, reason: impl std::fmt::Display) -> String {
    format!("volume {volume} is not this workspace's to restore: {reason}")
}
