//! The operator operations' decisions (apply, promote, pause, resume, abort, rollback),
//! from rows their caller read. Pure, like [`super::decide`]; the automatic start and the
//! automatic promotion of the controller use the same functions with actor `system`.

use chrono::{DateTime, Utc};

use super::{DecideError, Decision, Promotion};
use crate::config::RolloutSettings;
use crate::domain::{
    ApplyTier, Change, DesiredChange, Digest, ReleaseChange, ReleaseStatus, RolloutRowKey,
    RolloutState, TargetChange, TargetStatus, Tier,
};
use crate::rollout::machine::{Event, RolloutStatus, next};
use crate::rollout::record::{Draft, Rollout, RolloutData, event};
use crate::rollout::strategy::Strategy;
use crate::rollout::targets::build_targets;
use crate::store::{CandidateRow, Release, RolloutRow, TargetRow};

/// Production waves come after every canary wave.
const FIRST_PRODUCTION_WAVE: i64 = 1_000;

/// A request to start a rollout of a release that has none yet.
pub struct Start<'a> {
    pub release: &'a Release,
    /// The active rollout of the same image, if any (a release waits for it).
    pub active: Option<&'a RolloutRow>,
    /// Live workspaces of the image.
    pub candidates: &'a [CandidateRow],
    pub settings: &'a RolloutSettings,
    pub tier: ApplyTier,
    pub force: bool,
    pub actor: &'a str,
    /// Started by the controller (fleet mode `auto`): manual workspaces are skipped.
    pub automatic: bool,
}

/// The tier an automatic start applies: canaries first when there are any (then
/// production without canaries needs no force).
pub fn automatic_tier(candidates: &[CandidateRow]) -> (ApplyTier, bool) {
    if candidates.iter().any(|c| c.tier == Tier::Canary) {
        (ApplyTier::Canary, false)
    } else {
        (ApplyTier::Production, true)
    }
}

/// A new rollout of `s.release`: its row, its targets, its first transition.
pub fn start(s: &Start<'_>, now: DateTime<Utc>) -> Result<Decision, DecideError> {
    let rel = s.release;
    let release_id = rel.id;
    let (tier, force, actor) = (s.tier, s.force, s.actor);
    match rel.status {
        ReleaseStatus::Rejected | ReleaseStatus::Superseded => {
            return Err(DecideError::Conflict(format!(
                "release {release_id} is {}; it cannot be applied",
                rel.status
            )));
        }
        ReleaseStatus::Blocked if !force => {
            return Err(DecideError::Conflict(format!(
                "release {release_id} is blocked (a rollout of it failed); pass force: true to apply it anyway"
            )));
        }
        _ => {}
    }
    if let Some(a) = s.active {
        return Err(DecideError::Conflict(format!(
            "rollout {} of image `{}` is still {}; release {release_id} stays queued until it ends",
            a.id, rel.image, a.state
        )));
    }
    let mut strategy = Strategy::for_image(s.settings, &rel.image);
    let (tiers, ev): (&[Tier], Event) = match tier {
        ApplyTier::Canary => (&[Tier::Canary], Event::ApplyCanary),
        ApplyTier::Production => (&[Tier::Production], Event::ApplyProduction),
        ApplyTier::All => (&[Tier::Canary, Tier::Production], Event::ApplyProduction),
    };
    check_force(tier, force, None)?;
    if tier == ApplyTier::Canary && !s.candidates.iter().any(|c| c.tier == Tier::Canary) {
        return Err(DecideError::Conflict(format!(
            "no workspace of image `{}` is in the canary tier; set `update_tier: canary` on one, or apply production with force: true",
            rel.image
        )));
    }
    if tier == ApplyTier::All {
        strategy = strategy.emergency();
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
        serde_json::to_string(&strategy).map_err(|e| DecideError::Invalid(e.to_string()))?;
    let mut d = Draft::new(
        RolloutRowKey::New {
            release_id,
            strategy: strategy_json,
            started_by: actor.to_owned(),
        },
        &r.status,
        &r.data,
    );
    for t in build_targets(
        s.candidates,
        tiers,
        &rel.digest,
        &strategy,
        s.automatic,
        &[],
        0,
    ) {
        d.push(Change::AddTarget(t));
    }
    let to = next(&r.status, &ev, now).map_err(|e| DecideError::Conflict(e.to_string()))?;
    r.transition(&mut d, &ev, to, actor, &format!("apply {tier}"));
    r.data.applied.push(tier);
    r.sync(&mut d);
    d.push(Change::Release(ReleaseChange {
        release_id,
        status: ReleaseStatus::RollingOut,
        reason: format!("applied {tier} by {actor}"),
    }));
    d.push(event_applied(actor, tier, force, &rel.digest));
    Ok(Decision::from_draft(
        d,
        Some((RolloutState::Pending, r.status.state)),
    ))
}

/// Whether `tier` may be applied to the existing rollout `r`: `Ok(true)` when it is
/// already covered (nothing to do), `Ok(false)` when [`to_production`] goes on.
pub fn check_extend(
    r: &Rollout,
    tier: ApplyTier,
    force: bool,
    now: DateTime<Utc>,
) -> Result<bool, DecideError> {
    let covered = r.data.applied.contains(&tier)
        || (r.data.applied.contains(&ApplyTier::All) && tier != ApplyTier::All);
    if covered {
        return Ok(true);
    }
    let state = r.status.state;
    if state.is_terminal() || state == RolloutState::Aborted {
        return Err(DecideError::Conflict(format!(
            "rollout {} is {state}; nothing more can be applied to it",
            r.id
        )));
    }
    if state == RolloutState::Paused {
        return Err(DecideError::Conflict(format!(
            "rollout {} is paused; resume it first",
            r.id
        )));
    }
    if tier == ApplyTier::Canary {
        return Err(DecideError::Conflict(format!(
            "rollout {} went past the canary tier; canary cannot be applied now",
            r.id
        )));
    }
    check_force(tier, force, Some((&r.status, now)))?;
    Ok(false)
}

/// Whether `r` may be promoted: `Ok(true)` when production is already applied.
pub fn check_promote(r: &Rollout, force: bool, now: DateTime<Utc>) -> Result<bool, DecideError> {
    if r.data.applied.contains(&ApplyTier::Production) || r.data.applied.contains(&ApplyTier::All) {
        return Ok(true);
    }
    if r.status.state != RolloutState::Soaking {
        return Err(DecideError::Conflict(format!(
            "rollout {} is {}; only a soaking rollout can be promoted",
            r.id, r.status.state
        )));
    }
    check_force(ApplyTier::Production, force, Some((&r.status, now)))?;
    Ok(false)
}

/// Adds the production (or every remaining) target and moves to `production`. Returns
/// the decision and the rollout as it will be.
pub fn to_production(
    r: &Rollout,
    tier: ApplyTier,
    actor: &str,
    force: bool,
    inputs: Promotion<'_>,
    now: DateTime<Utc>,
) -> Result<(Decision, Rollout), DecideError> {
    let mut r = r.clone();
    let mut d = r.draft();
    let tiers: &[Tier] = if tier == ApplyTier::All {
        r.strategy = r.strategy.clone().emergency();
        d.row.strategy = serde_json::to_string(&r.strategy).ok();
        &[Tier::Canary, Tier::Production]
    } else {
        &[Tier::Production]
    };
    let automatic = r.started_by == "system";
    for t in build_targets(
        inputs.candidates,
        tiers,
        &r.digest,
        &r.strategy,
        automatic,
        inputs.existing,
        FIRST_PRODUCTION_WAVE,
    ) {
        d.push(Change::AddTarget(t));
    }
    let ev = if r.status.state == RolloutState::Soaking && tier == ApplyTier::Production {
        Event::Promote
    } else {
        Event::ApplyProduction
    };
    let mut transition = None;
    if r.status.state != RolloutState::Production {
        let from = r.status.state;
        let to = next(&r.status, &ev, now).map_err(|e| DecideError::Conflict(e.to_string()))?;
        r.transition(&mut d, &ev, to, actor, &format!("apply {tier}"));
        transition = Some((from, r.status.state));
    }
    r.data.applied.push(tier);
    r.sync(&mut d);
    d.push(event_applied(actor, tier, force, &r.digest));
    Ok((Decision::from_draft(d, transition), r))
}

/// Pause, resume or abort (`reason` for the audit trail). Abort blocks the release.
pub fn simple(
    r: &Rollout,
    ev: &Event,
    actor: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Decision, DecideError> {
    let id = r.id;
    let mut r = r.clone();
    let from = r.status.state;
    let to = next(&r.status, ev, now)
        .map_err(|e| DecideError::Conflict(format!("rollout {id}: {e}")))?;
    let mut d = r.draft();
    r.transition(&mut d, ev, to, actor, reason.unwrap_or(ev.name()));
    if *ev == Event::Abort {
        let why = format!("rollout {id} aborted by {actor}: {}", reason.unwrap_or(""));
        d.row.reason = Some(why.clone());
        d.push(Change::Release(ReleaseChange {
            release_id: r.release_id,
            status: ReleaseStatus::Blocked,
            reason: why,
        }));
    }
    Ok(Decision::from_draft(d, Some((from, r.status.state))))
}

/// Whether `r` may be rolled back (checked before its targets are read).
pub fn check_rollback(r: &Rollout, now: DateTime<Utc>) -> Result<(), DecideError> {
    next(&r.status, &Event::Rollback, now)
        .map(|_| ())
        .map_err(|e| DecideError::Conflict(format!("rollout {}: {e}", r.id)))
}

/// Puts every workspace the rollout moved back on its previous digest (`targets`: all of
/// the rollout's targets). Returns the decision and how many workspaces move back.
pub fn rollback(
    r: &Rollout,
    targets: &[TargetRow],
    restore_data: bool,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Decision, usize), DecideError> {
    let id = r.id;
    let mut r = r.clone();
    let from = r.status.state;
    let to = next(&r.status, &Event::Rollback, now)
        .map_err(|e| DecideError::Conflict(format!("rollout {id}: {e}")))?;
    let mut d = r.draft();
    let mut moved = Vec::new();
    for t in targets {
        let on_new = t.desired_digest.as_ref() == Some(&t.to_digest)
            || t.actual_digest.as_ref() == Some(&t.to_digest);
        let Some(back) = t.from_digest.clone().filter(|f| *f != t.to_digest) else {
            continue;
        };
        if !on_new {
            continue;
        }
        d.push(Change::Desired(DesiredChange {
            workspace_id: t.workspace_id,
            digest: back,
            in_rollout: true,
            forget_failed: true,
        }));
        d.push(Change::Target(TargetChange {
            workspace_id: t.workspace_id,
            status: Some(TargetStatus::RolledBack),
            rollback: Some(if restore_data { t.update_id } else { None }),
            ..TargetChange::default()
        }));
        moved.push(t.name.clone());
    }
    r.transition(&mut d, &Event::Rollback, to, actor, "rollback");
    let why = format!("rollout {id} rolled back by {actor}");
    d.push(Change::Release(ReleaseChange {
        release_id: r.release_id,
        status: ReleaseStatus::Blocked,
        reason: why,
    }));
    let n = moved.len();
    d.push(event(
        actor,
        "rollout.rollback_requested",
        None,
        serde_json::json!({ "workspaces": moved, "restore_data": restore_data }),
    ));
    Ok((Decision::from_draft(d, Some((from, r.status.state))), n))
}

/// The force rules: `all` always needs it; `production` needs it unless the canary soak
/// has passed.
fn check_force(
    tier: ApplyTier,
    force: bool,
    status: Option<(&RolloutStatus, DateTime<Utc>)>,
) -> Result<(), DecideError> {
    if force {
        return Ok(());
    }
    match tier {
        ApplyTier::Canary => Ok(()),
        ApplyTier::All => Err(DecideError::Conflict(
            "tier `all` updates every workspace at once and needs force: true".to_owned(),
        )),
        ApplyTier::Production => match status {
            Some((s, now)) if s.state == RolloutState::Soaking && s.soak_passed(now) => Ok(()),
            Some((s, _)) if s.state == RolloutState::Soaking => {
                Err(DecideError::Conflict(format!(
                    "the canary soak has not passed (it ends at {}); pass force: true to go to production now",
                    s.soak_ends_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                )))
            }
            _ => Err(DecideError::Conflict(
                "production before the canary soak has passed needs force: true".to_owned(),
            )),
        },
    }
}

fn event_applied(actor: &str, tier: ApplyTier, force: bool, digest: &Digest) -> Change {
    event(
        actor,
        "release.applied",
        None,
        serde_json::json!({ "tier": tier, "force": force, "digest": digest }),
    )
}
