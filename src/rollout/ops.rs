//! The operator operations behind the API and CLI: apply, promote, pause, resume, abort,
//! rollback and "update now". Each is one store transaction with a version check and its
//! audit event(s); a lost race is retried from a fresh read a few times.
//!
//! Errors map to HTTP via [`OpError::http_status`]: 400 bad input, 404 unknown release,
//! rollout or workspace, 409 a state that does not allow the operation.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::RolloutSettings;
use crate::domain::{ApplyTier, Digest, ReleaseStatus, RolloutState, Tier, WorkspaceName};
use crate::store::{DesiredWrite, NewEvent, RolloutRowWrite, Store, StoreError, TargetWrite};
use crate::wake::Wakers;

use super::machine::{Event, RolloutStatus, next};
use super::metrics::RolloutMetrics;
use super::plan::TargetStatus;
use super::record::{Rollout, RolloutData, event, write_for};
use super::strategy::Strategy;
use super::targets::build_targets;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what, key } => OpError::NotFound { what, key },
            other => OpError::Store(other),
        }
    }
}

impl OpError {
    pub fn http_status(&self) -> u16 {
        match self {
            OpError::Invalid(_) => 400,
            OpError::NotFound { .. } => 404,
            OpError::Conflict(_)
            | OpError::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => 409,
            OpError::Store(_) => 500,
        }
    }

    /// The API's `error.code`.
    pub fn code(&self) -> &'static str {
        match self.http_status() {
            400 => "invalid_input",
            404 => "not_found",
            409 => "conflict",
            _ => "internal",
        }
    }

    fn is_race(&self) -> bool {
        matches!(
            self,
            OpError::Store(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })
        )
    }
}

/// Parses an API tier value; anything else is a 400 naming the choices.
pub fn parse_tier(input: &str) -> Result<ApplyTier, OpError> {
    ApplyTier::parse(input).map_err(|e| OpError::Invalid(e.to_string()))
}

/// What an operation returns.
#[derive(Clone, Debug)]
pub struct OpOutcome {
    pub rollout: Rollout,
    /// Nothing changed: the tier was already applied.
    pub no_op: bool,
    /// Something the operator must read (e.g. data loss on rollback with restore).
    pub warning: Option<String>,
}

#[derive(Clone)]
pub struct Ops {
    pub store: Store,
    pub settings: Arc<RolloutSettings>,
    pub wakers: Wakers,
    pub clock: Arc<dyn Clock>,
    pub metrics: RolloutMetrics,
}

const RETRIES: usize = 3;

macro_rules! retrying {
    ($e:expr) => {{
        let mut attempt = 0;
        loop {
            match $e {
                Err(err) if err.is_race() && attempt + 1 < RETRIES => attempt += 1,
                other => break other,
            }
        }
    }};
}

impl Ops {
    /// `POST /releases/{id}/apply`.
    pub async fn apply(
        &self,
        release_id: i64,
        tier: ApplyTier,
        force: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.apply_once(release_id, tier, force, actor, false).await)?;
        self.woke();
        Ok(out)
    }

    /// Starts a rollout by itself (fleet mode `auto`): canaries first when there are any.
    pub async fn auto_start(&self, release_id: i64) -> Result<OpOutcome, OpError> {
        let rel = self.store.release(release_id).await?;
        let has_canary = self
            .store
            .rollout_candidates(&rel.image)
            .await?
            .iter()
            .any(|c| c.tier == Tier::Canary);
        let tier = if has_canary {
            ApplyTier::Canary
        } else {
            ApplyTier::Production
        };
        let out = self
            .apply_once(release_id, tier, !has_canary, "system", true)
            .await?;
        self.woke();
        Ok(out)
    }

    async fn apply_once(
        &self,
        release_id: i64,
        tier: ApplyTier,
        force: bool,
        actor: &str,
        automatic: bool,
    ) -> Result<OpOutcome, OpError> {
        let now = self.clock.now();
        let rel = self.store.release(release_id).await?;
        if let Some(row) = self.store.rollout_for_release(release_id).await? {
            let r = Rollout::from_row(row)?;
            return self.apply_existing(r, tier, force, actor).await;
        }
        match rel.status {
            ReleaseStatus::Rejected | ReleaseStatus::Superseded => {
                return Err(OpError::Conflict(format!(
                    "release {release_id} is {}; it cannot be applied",
                    rel.status
                )));
            }
            ReleaseStatus::Blocked if !force => {
                return Err(OpError::Conflict(format!(
                    "release {release_id} is blocked (a rollout of it failed); pass force: true to apply it anyway"
                )));
            }
            _ => {}
        }
        if let Some(a) = self.store.active_rollout_for_image(&rel.image).await? {
            return Err(OpError::Conflict(format!(
                "rollout {} of image `{}` is still {}; release {release_id} stays queued until it ends",
                a.id, rel.image, a.state
            )));
        }
        let mut strategy = Strategy::for_image(&self.settings, &rel.image);
        let cands = self.store.rollout_candidates(&rel.image).await?;
        let (tiers, event): (&[Tier], Event) = match tier {
            ApplyTier::Canary => (&[Tier::Canary], Event::ApplyCanary),
            ApplyTier::Production => (&[Tier::Production], Event::ApplyProduction),
            ApplyTier::All => (&[Tier::Canary, Tier::Production], Event::ApplyProduction),
        };
        check_force(tier, force, None)?;
        if tier == ApplyTier::Canary && !cands.iter().any(|c| c.tier == Tier::Canary) {
            return Err(OpError::Conflict(format!(
                "no workspace of image `{}` is in the canary tier; set `update_tier: canary` on one, or apply production with force: true",
                rel.image
            )));
        }
        if tier == ApplyTier::All {
            strategy = strategy.emergency();
            tracing::warn!(release = release_id, actor, image = %rel.image, "apply all: every workspace of the image updates at once");
        }
        let mut r = Rollout {
            id: 0,
            release_id,
            image: rel.image.clone(),
            digest: rel.digest.clone(),
            release_status: rel.status,
            status: RolloutStatus::pending(),
            data: RolloutData::default(),
            strategy: strategy.clone(),
            started_by: actor.to_owned(),
            version: 1,
        };
        let strategy_json =
            serde_json::to_string(&strategy).map_err(|e| OpError::Invalid(e.to_string()))?;
        let mut w = write_for(
            RolloutRowWrite::Insert {
                release_id,
                strategy: strategy_json,
                started_by: actor.to_owned(),
            },
            &r.status,
            &r.data,
        );
        w.new_targets = build_targets(&cands, tiers, &rel.digest, &strategy, automatic, &[], 0);
        let to = next(&r.status, &event, now).map_err(|e| OpError::Conflict(e.to_string()))?;
        r.transition(&mut w, &event, to, actor, &format!("apply {tier}"));
        r.data.applied.push(tier);
        r.sync(&mut w);
        w.release_status = Some((
            release_id,
            ReleaseStatus::RollingOut,
            format!("applied {tier} by {actor}"),
        ));
        w.events
            .push(event_applied(actor, tier, force, &rel.digest));
        let id = self.store.write_rollout(&w, now).await?;
        self.metrics
            .transitions
            .with_label_values(&["pending", r.status.state.as_str()])
            .inc();
        tracing::info!(rollout = id, release = release_id, %tier, actor, "rollout started");
        self.outcome(id, false, None).await
    }

    async fn apply_existing(
        &self,
        mut r: Rollout,
        tier: ApplyTier,
        force: bool,
        actor: &str,
    ) -> Result<OpOutcome, OpError> {
        let now = self.clock.now();
        let covered = r.data.applied.contains(&tier)
            || (r.data.applied.contains(&ApplyTier::All) && tier != ApplyTier::All);
        if covered {
            return Ok(OpOutcome {
                rollout: r,
                no_op: true,
                warning: None,
            });
        }
        let state = r.status.state;
        if state.is_terminal() || state == RolloutState::Aborted {
            return Err(OpError::Conflict(format!(
                "rollout {} is {state}; nothing more can be applied to it",
                r.id
            )));
        }
        if state == RolloutState::Paused {
            return Err(OpError::Conflict(format!(
                "rollout {} is paused; resume it first",
                r.id
            )));
        }
        if tier == ApplyTier::Canary {
            return Err(OpError::Conflict(format!(
                "rollout {} went past the canary tier; canary cannot be applied now",
                r.id
            )));
        }
        check_force(tier, force, Some((&r.status, now)))?;
        self.to_production(&mut r, tier, actor, force).await?;
        self.outcome(r.id, false, None).await
    }

    /// Adds the production (or every remaining) target and moves to `production`.
    async fn to_production(
        &self,
        r: &mut Rollout,
        tier: ApplyTier,
        actor: &str,
        force: bool,
    ) -> Result<(), OpError> {
        let now = self.clock.now();
        let mut w = r.write();
        let existing: Vec<i64> = self
            .store
            .rollout_targets(r.id)
            .await?
            .iter()
            .map(|t| t.workspace_id)
            .collect();
        let first_wave = 1_000; // production waves come after every canary wave
        let tiers: &[Tier] = if tier == ApplyTier::All {
            r.strategy = r.strategy.clone().emergency();
            w.strategy = serde_json::to_string(&r.strategy).ok();
            &[Tier::Canary, Tier::Production]
        } else {
            &[Tier::Production]
        };
        let cands = self.store.rollout_candidates(&r.image).await?;
        let automatic = r.started_by == "system";
        w.new_targets = build_targets(
            &cands,
            tiers,
            &r.digest,
            &r.strategy,
            automatic,
            &existing,
            first_wave,
        );
        let ev = if r.status.state == RolloutState::Soaking && tier == ApplyTier::Production {
            Event::Promote
        } else {
            Event::ApplyProduction
        };
        if r.status.state != RolloutState::Production {
            let from = r.status.state;
            let to = next(&r.status, &ev, now).map_err(|e| OpError::Conflict(e.to_string()))?;
            r.transition(&mut w, &ev, to, actor, &format!("apply {tier}"));
            self.metrics
                .transitions
                .with_label_values(&[from.as_str(), r.status.state.as_str()])
                .inc();
        }
        r.data.applied.push(tier);
        r.sync(&mut w);
        w.events.push(event_applied(actor, tier, force, &r.digest));
        self.store.write_rollout(&w, now).await?;
        Ok(())
    }

    /// `POST /rollouts/{id}/promote`: soaking → production once the soak has passed
    /// (before that only with `force`).
    pub async fn promote(&self, id: i64, force: bool, actor: &str) -> Result<OpOutcome, OpError> {
        let out = retrying!(self.promote_once(id, force, actor).await)?;
        self.woke();
        Ok(out)
    }

    async fn promote_once(&self, id: i64, force: bool, actor: &str) -> Result<OpOutcome, OpError> {
        let mut r = self.rollout(id).await?;
        if r.data.applied.contains(&ApplyTier::Production)
            || r.data.applied.contains(&ApplyTier::All)
        {
            return Ok(OpOutcome {
                rollout: r,
                no_op: true,
                warning: None,
            });
        }
        if r.status.state != RolloutState::Soaking {
            return Err(OpError::Conflict(format!(
                "rollout {id} is {}; only a soaking rollout can be promoted",
                r.status.state
            )));
        }
        check_force(
            ApplyTier::Production,
            force,
            Some((&r.status, self.clock.now())),
        )?;
        self.to_production(&mut r, ApplyTier::Production, actor, force)
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
        let now = self.clock.now();
        let mut r = self.rollout(id).await?;
        let from = r.status.state;
        let to = next(&r.status, &ev, now)
            .map_err(|e| OpError::Conflict(format!("rollout {id}: {e}")))?;
        let mut w = r.write();
        r.transition(&mut w, &ev, to, actor, reason.unwrap_or(ev.name()));
        if ev == Event::Abort {
            let why = format!("rollout {id} aborted by {actor}: {}", reason.unwrap_or(""));
            w.reason = Some(why.clone());
            w.release_status = Some((r.release_id, ReleaseStatus::Blocked, why));
        }
        self.store.write_rollout(&w, now).await?;
        self.metrics
            .transitions
            .with_label_values(&[from.as_str(), r.status.state.as_str()])
            .inc();
        tracing::info!(rollout = id, actor, event = ev.name(), state = %r.status.state, "rollout changed");
        self.outcome(id, false, None).await
    }

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
        let now = self.clock.now();
        let mut r = self.rollout(id).await?;
        let from = r.status.state;
        let to = next(&r.status, &Event::Rollback, now)
            .map_err(|e| OpError::Conflict(format!("rollout {id}: {e}")))?;
        let mut w = r.write();
        let mut moved = Vec::new();
        for t in self.store.rollout_targets(id).await? {
            let on_new = t.desired_digest.as_ref() == Some(&t.to_digest)
                || t.actual_digest.as_ref() == Some(&t.to_digest);
            let Some(back) = t.from_digest.clone().filter(|f| *f != t.to_digest) else {
                continue;
            };
            if !on_new {
                continue;
            }
            w.desired.push(DesiredWrite {
                workspace_id: t.workspace_id,
                digest: back,
                in_rollout: true,
                forget_failed: true,
            });
            w.targets.push(TargetWrite {
                workspace_id: t.workspace_id,
                status: Some(TargetStatus::RolledBack.as_str()),
                rollback: Some(if restore_data { t.update_id } else { None }),
                ..TargetWrite::default()
            });
            moved.push(t.name);
        }
        r.transition(&mut w, &Event::Rollback, to, actor, "rollback");
        let why = format!("rollout {id} rolled back by {actor}");
        w.release_status = Some((r.release_id, ReleaseStatus::Blocked, why));
        w.events.push(event(
            actor,
            "rollout.rollback_requested",
            None,
            serde_json::json!({ "workspaces": moved, "restore_data": restore_data }),
        ));
        self.store.write_rollout(&w, now).await?;
        self.metrics
            .transitions
            .with_label_values(&[from.as_str(), r.status.state.as_str()])
            .inc();
        let warning = restore_data.then(|| {
            format!(
                "restore_data: the pre-update snapshots of {} workspace(s) are restored; data written since their update is lost",
                moved.len()
            )
        });
        self.outcome(id, false, warning).await
    }

    /// `POST /workspaces/{name}/update`: this one workspace, now, to `digest` or to the
    /// newest release of its image that is neither blocked nor rejected.
    pub async fn update_workspace_now(
        &self,
        name: &str,
        digest: Option<&str>,
        actor: &str,
    ) -> Result<Digest, OpError> {
        let name = WorkspaceName::parse(name).map_err(|e| OpError::Invalid(e.to_string()))?;
        let digest = digest
            .map(|d| Digest::parse(d).map_err(|e| OpError::Invalid(e.to_string())))
            .transpose()?;
        let mut attempt = 0;
        loop {
            let ws = self.store.workspace(&name).await?;
            let image = ws.image.to_string();
            let target = match &digest {
                Some(d) => d.clone(),
                None => self
                    .store
                    .newest_usable_release(&image)
                    .await?
                    .map(|r| r.digest)
                    .ok_or_else(|| {
                        OpError::Conflict(format!(
                            "no usable release of image `{image}` to update `{name}` to"
                        ))
                    })?,
            };
            if let Some(p) = ws.pinned_digest.as_ref().filter(|p| **p != target) {
                return Err(OpError::Conflict(format!(
                    "workspace `{name}` is pinned to {p}; unpin it first"
                )));
            }
            let ev = NewEvent {
                actor: actor.to_owned(),
                subject: format!("workspace:{name}"),
                action: "workspace.update_now".to_owned(),
                detail: serde_json::json!({ "from": ws.desired_digest, "to": target }),
                rollout_id: None,
                workspace: Some(name.to_string()),
            };
            match self
                .store
                .set_desired_now(ws.id, ws.version, &target, &ev, self.clock.now())
                .await
            {
                Err(StoreError::Conflict { .. }) if attempt + 1 < RETRIES => attempt += 1,
                Err(e) => return Err(e.into()),
                Ok(()) => {
                    self.wakers.reconciler.notify_one();
                    return Ok(target);
                }
            }
        }
    }

    pub async fn rollout(&self, id: i64) -> Result<Rollout, OpError> {
        Ok(Rollout::from_row(self.store.rollout_row(id).await?)?)
    }

    async fn outcome(
        &self,
        id: i64,
        no_op: bool,
        warning: Option<String>,
    ) -> Result<OpOutcome, OpError> {
        Ok(OpOutcome {
            rollout: self.rollout(id).await?,
            no_op,
            warning,
        })
    }

    fn woke(&self) {
        self.wakers.controller.notify_one();
        self.wakers.reconciler.notify_one();
    }
}

/// The force rules: `all` always needs it; `production` needs it unless the canary soak
/// has passed.
fn check_force(
    tier: ApplyTier,
    force: bool,
    status: Option<(&RolloutStatus, chrono::DateTime<chrono::Utc>)>,
) -> Result<(), OpError> {
    if force {
        return Ok(());
    }
    match tier {
        ApplyTier::Canary => Ok(()),
        ApplyTier::All => Err(OpError::Conflict(
            "tier `all` updates every workspace at once and needs force: true".to_owned(),
        )),
        ApplyTier::Production => match status {
            Some((s, now)) if s.state == RolloutState::Soaking && s.soak_passed(now) => Ok(()),
            Some((s, _)) if s.state == RolloutState::Soaking => Err(OpError::Conflict(format!(
                "the canary soak has not passed (it ends at {}); pass force: true to go to production now",
                s.soak_ends_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            ))),
            _ => Err(OpError::Conflict(
                "production before the canary soak has passed needs force: true".to_owned(),
            )),
        },
    }
}

fn event_applied(actor: &str, tier: ApplyTier, force: bool, digest: &Digest) -> NewEvent {
    event(
        actor,
        "release.applied",
        None,
        serde_json::json!({ "tier": tier, "force": force, "digest": digest }),
    )
}
