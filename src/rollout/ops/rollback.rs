//! `POST /rollouts/{id}/rollback`.

use super::{OpError, OpOutcome, Ops, retrying};
use crate::rollout::decide::operator;

impl Ops {
    /// Puts every workspace this rollout moved back on its previous digest; with
    /// `restore_data`, the reconciler also restores the pre-update snapshots (see
    /// docs/rollout.md for the contract). The release becomes `blocked`.
    pub async fn rollback(
        &self,
        id: i64,
        restore_data: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.rollback_once(id, restore_data, actor).await)?;
        self.woke();
        Ok(out)
    }

    async fn rollback_once(
        &self,
        id: i64,
        restore_data: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let now = self.deps.clock.now();
        let r = self.rollout(id).await?;
        // The transition is checked before the targets are read.
        operator::check_rollback(&r, now)?;
        let targets = self.deps.store.rollout_targets(id).await?;
        let (d, moved) = operator::rollback(&r, &targets, restore_data, actor, now)?;
        self.deps.commit(&d, now).await?;
        let warning = restore_data.then(|| {
            format!(
                "restore_data: the pre-update snapshots of {moved} workspace(s) are restored; data written since their update is lost"
            )
        });
        self.outcome(id, false, warning).await
    }
}
