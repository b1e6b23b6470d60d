//! Retiring deleted workspaces: a delete only marks the row (see `store::retirements`);
//! here the reconciler removes the workspace's container and, when the delete asked for a
//! purge, the volumes it owns (only through [`remove_owned_volume`]), then records what it
//! did for the API to answer with.
//!
//! Guarantees: a marked workspace is never converged again (it is out of every list the
//! passes read); its container is removed only when it is the one sluice made for that
//! workspace (managed, labelled with its name and, when the label is present, its id);
//! a retirement that Docker interrupts (an outage, a stop, a crash) is retried by the
//! next pass, including the first pass after a restart, and progress already made is
//! kept on the row. A removal Docker refuses for good ends the retirement with the
//! refusal recorded; nothing is tried again by itself.

use super::container::KeepReason;
use super::volumes::{VolumeRemoval, remove_owned_volume};
use super::{ReconcileError, Reconciler};
use crate::runtime::{ContainerRuntime, LABEL_WORKSPACE, LABEL_WORKSPACE_ID, RuntimeError};
use crate::store::{KeptVolume, RetireResult, Retirement};

/// How one retirement attempt ended.
enum Attempt {
    /// Everything done (or refused for good): record it.
    Finished(RetireResult),
    /// Docker did not answer: try again at the next pass.
    Interrupted(RuntimeError),
}

impl<R: ContainerRuntime> Reconciler<R> {
    /// Retires every marked workspace no saga holds. Errors of one workspace are logged
    /// and leave it for the next pass; only a failing store read ends the call.
    pub(super) async fn retire_pending(&self) -> Result<(), ReconcileError> {
        for r in self
            .inner
            .store
            .pending_retirements(&self.inner.cfg.host)
            .await?
        {
            let Some(_guard) = self.try_lock(r.id) else {
                continue;
            };
            if let Err(e) = self.retire(&r).await {
                tracing::error!(workspace = %r.name, workspace_id = r.id, error = %e, "retiring the workspace failed; retrying at the next pass");
            }
        }
        Ok(())
    }

    async fn retire(&self, r: &Retirement) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        let mut done = inner.store.retirement_progress(r.id).await?;
        let result = match self.retire_steps(r, &mut done).await? {
            Attempt::Finished(result) => result,
            Attempt::Interrupted(e) => {
                inner.store.record_retirement_progress(r.id, &done).await?;
                return Err(e.into());
            }
        };
        let now = inner.clock.now();
        if inner.store.record_retirement(r.id, &result, now).await? {
            tracing::info!(
                workspace = %r.name,
                workspace_id = r.id,
                purge = r.purge,
                container_removed = result.container_removed,
                volumes_removed = result.volumes_removed.len(),
                volumes_kept = result.volumes_kept.len(),
                error = result.error.as_deref(),
                "workspace retired"
            );
        }
        Ok(())
    }

    /// Removes the container, then (with purge) the owned volumes, adding to `done`.
    async fn retire_steps(
        &self,
        r: &Retirement,
        done: &mut RetireResult,
    ) -> Result<Attempt, ReconcileError> {
        let rt = &self.inner.rt;
        let target = r
            .container_id
            .clone()
            .unwrap_or_else(|| r.spec.container_name_for(&r.name));
        // A start-first update cut short by the deletion leaves its new container under
        // the staging name: it goes too (before the volumes it mounts).
        let staged = super::saga::staged_name(&r.spec.container_name_for(&r.name));
        for target in [target, staged] {
            match self.remove_container(r, &target).await {
                Ok(removed) => done.container_removed |= removed,
                Err(e) if e.is_transient() => return Ok(Attempt::Interrupted(e)),
                Err(e) => {
                    done.error = Some(format!("cannot remove container `{target}`: {e}"));
                    return Ok(Attempt::Finished(done.clone()));
                }
            }
        }
        if !r.purge {
            return Ok(Attempt::Finished(done.clone()));
        }
        for v in &r.spec.volumes {
            if done.volumes_removed.contains(&v.name) {
                continue;
            }
            match remove_owned_volume(rt, &v.name, r.id, r.name.as_str(), v.adopt).await {
                Ok(VolumeRemoval::Removed) => done.volumes_removed.push(v.name.clone()),
                Ok(VolumeRemoval::Absent) => {}
                Ok(VolumeRemoval::Kept(reason)) => {
                    done.volumes_kept.retain(|k| k.name != v.name);
                    done.volumes_kept.push(kept(&v.name, reason));
                }
                Err(e) if e.is_transient() => return Ok(Attempt::Interrupted(e)),
                Err(e) => {
                    done.error = Some(format!("cannot remove volume `{}`: {e}", v.name));
                    return Ok(Attempt::Finished(done.clone()));
                }
            }
        }
        Ok(Attempt::Finished(done.clone()))
    }

    /// Removes `target` if it is this workspace's container; `Ok(true)` when it was there
    /// and is gone.
    async fn remove_container(&self, r: &Retirement, target: &str) -> Result<bool, RuntimeError> {
        let rt = &self.inner.rt;
        let Some(c) = rt.inspect(target).await? else {
            return Ok(false);
        };
        let named_for = c.labels.get(LABEL_WORKSPACE).map(String::as_str);
        let id_label = c.labels.get(LABEL_WORKSPACE_ID);
        let ours = (c.is_managed()
            && named_for == Some(r.name.as_str())
            && id_label.is_none_or(|id| *id == r.id.to_string()))
            || crate::reconciler::container::is_adopted(&c, r.container_id.as_deref());
        if !ours {
            tracing::warn!(workspace = %r.name, workspace_id = r.id, container = target, "the container is not this workspace's; not touching it");
            return Ok(false);
        }
        rt.remove(&c.id).await?;
        tracing::info!(workspace = %r.name, workspace_id = r.id, container = %c.id, "container removed");
        Ok(true)
    }
}

fn kept(volume: &str, reason: KeepReason) -> KeptVolume {
    KeptVolume {
        name: volume.to_owned(),
        reason: reason.as_str().to_owned(),
        owner_id: match reason {
            KeepReason::OtherWorkspace { owner } => Some(owner),
            KeepReason::NotOwned => None,
        },
        message: format!("volume `{volume}` {reason}; left in place"),
    }
}
