//! Promote, pause, resume and abort: one checked transition each.

use super::{OpError, OpOutcome, Ops, retrying};
use crate::domain::ApplyTier;
use crate::rollout::decide::operator;
use crate::rollout::machine::Event;

impl Ops {
    /// `POST /rollouts/{id}/promote`: soaking → production once the soak has passed
    /// (before that only with `force`).
    pub async fn promote(&self, id: i64, force: bool, actor: &str) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.promote_once(id, force, actor).await)?;
        self.woke();
        Ok(out)
    }

    async fn promote_once(&self, id: i64, force: bool, actor: &str) -> Result<OpOutcome, OpError> {
        let r = self.rollout(id).await?;
        if operator::check_promote(&r, force, self.deps.clock.now())? {
            return Ok(OpOutcome {
                rollout: r,
                no_op: true,
                warning: None,
            });
        }
        self.to_production(&r, ApplyTier::Production, actor, force)
            .await?;
        self.outcome(id, false, None).await
    }

    pub async fn pause(&self, id: i64, actor: &str) -> Result<OpOutcome, OpError> {
        retrying!(self.simple(id, Event::Pause, actor, None).await)
    }

    pub async fn resume(&self, id: i64, actor: &str) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.simple(id, Event::Resume, actor, None).await)?;
        self.woke();
        Ok(out)
    }

    /// Stops starting updates; running ones finish. The release becomes `blocked`.
    pub async fn abort(
        &self,
        id: i64,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let reason = reason.unwrap_or("aborted by operator");
        retrying!(self.simple(id, Event::Abort, actor, Some(reason)).await)
    }

    async fn simple(
        &self,
        id: i64,
        ev: Event,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<OpOutcome, OpError> {
        let now = self.deps.clock.now();
        let r = self.rollout(id).await?;
        let d = operator::simple(&r, &ev, actor, reason, now)?;
        self.deps.commit(&d, now).await?;
        let state = d.transition.map_or(r.status.state, |(_, to)| to);
        tracing::info!(rollout = id, actor, event = ev.name(), state = %state, "rollout changed");
        self.outcome(id, false, None).await
    }
}
