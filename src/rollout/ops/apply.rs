//! `POST /releases/{id}/apply`: starts a rollout of a release, or adds production (or
//! every remaining workspace) to the release's existing rollout.

use super::{OpError, OpOutcome, Ops, retrying};
use crate::domain::{ApplyTier, Change, TargetStatus, Tier};
use crate::rollout::decide::operator::{self, Start};
use crate::rollout::decide::{Decision, Promotion};
use crate::rollout::record::Rollout;

/// What an apply would do, by workspace name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyPreview {
    /// Updated by the rollout (name, tier).
    pub updated: Vec<(String, Tier)>,
    /// Covered by the rollout but not updated: pinned to another digest, or already
    /// running the release.
    pub left_out: Vec<String>,
}

impl Ops {
    /// Applies `tier` of release `release_id`.
    pub async fn apply(
        &self,
        release_id: i64,
        tier: ApplyTier,
        force: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.apply_once(release_id, tier, force, actor).await)?;
        self.woke();
        Ok(out)
    }

    async fn apply_once(
        &self,
        release_id: i64,
        tier: ApplyTier,
        force: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now();
        let release = store.release(release_id).await?;
        if let Some(row) = store.rollout_for_release(release_id).await? {
            let r = Rollout::from_row(row)?;
            return self.apply_existing(r, tier, force, actor).await;
        }
        let active = store.active_rollout_for_image(&release.image).await?;
        let candidates = store.rollout_candidates(&release.image).await?;
        let d = operator::start(
            &Start {
                release: &release,
                active: active.as_ref(),
                candidates: &candidates,
                settings: &self.deps.settings,
                tier,
                force,
                actor,
                automatic: false,
            },
            now,
        )?;
        if tier == ApplyTier::All {
            tracing::warn!(release = release_id, actor, image = %release.image, "apply all: every workspace of the image updates at once");
        }
        let id = self.deps.commit(&d, now).await?;
        tracing::info!(rollout = id, release = release_id, %tier, actor, "rollout started");
        self.outcome(id, false, None).await
    }

    /// The workspaces (name, tier) applying `tier` of release `release_id` would add to
    /// its rollout, decided exactly as [`Ops::apply`] decides (pinned, manual-mode and
    /// already-updated workspaces left out) but nothing written. Decided as if forced:
    /// whether `force` is needed is the apply's to say.
    pub async fn preview_apply(
        &self,
        release_id: i64,
        tier: ApplyTier,
    ) -> Result<ApplyPreview, OpError> {
        let store = &self.deps.store;
        let now = self.deps.clock.now();
        let release = store.release(release_id).await?;
        let candidates = store.rollout_candidates(&release.image).await?;
        let d = if let Some(row) = store.rollout_for_release(release_id).await? {
            let r = Rollout::from_row(row)?;
            if operator::check_extend(&r, tier, true, now)? {
                return Ok(ApplyPreview::default());
            }
            let existing = store.rollout_target_workspaces(r.id).await?;
            let inputs = Promotion {
                existing: &existing,
                candidates: &candidates,
            };
            operator::to_production(&r, tier, "preview", true, inputs, now)?.0
        } else {
            let active = store.active_rollout_for_image(&release.image).await?;
            operator::start(
                &Start {
                    release: &release,
                    active: active.as_ref(),
                    candidates: &candidates,
                    settings: &self.deps.settings,
                    tier,
                    force: true,
                    actor: "preview",
                    automatic: false,
                },
                now,
            )?
        };
        let mut out = ApplyPreview::default();
        for c in &d.changes {
            let Change::AddTarget(t) = c else { continue };
            let Some(w) = candidates.iter().find(|w| w.workspace_id == t.workspace_id) else {
                continue;
            };
            let there = t.from_digest.as_ref() == Some(&t.to_digest);
            if t.status == TargetStatus::Pending && !there {
                out.updated.push((w.name.clone(), t.tier));
            } else {
                out.left_out.push(w.name.clone());
            }
        }
        Ok(out)
    }

    async fn apply_existing(
        &self,
        r: Rollout,
        tier: ApplyTier,
        force: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let now = self.deps.clock.now();
        if operator::check_extend(&r, tier, force, now)? {
            return Ok(OpOutcome {
                rollout: r,
                no_op: true,
                warning: None,
            });
        }
        self.to_production(&r, tier, actor, force).await?;
        self.outcome(r.id, false, None).await
    }

    /// Reads what production adds, decides and commits it.
    pub(super) async fn to_production(
        &self,
        r: &Rollout,
        tier: ApplyTier,
        actor: &str,
        force: bool,
    ) -> Result<Decision, OpError> {
        let now = self.deps.clock.now();
        let existing = self.deps.store.rollout_target_workspaces(r.id).await?;
        let candidates = self.deps.store.rollout_candidates(&r.image).await?;
        let inputs = Promotion {
            existing: &existing,
            candidates: &candidates,
        };
        let (d, _) = operator::to_production(r, tier, actor, force, inputs, now)?;
        self.deps.commit(&d, now).await?;
        Ok(d)
    }
}
