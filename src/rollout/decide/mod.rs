//! What a rollout pass or an operator operation changes, decided from rows already read.
//!
//! Every rollout change has one shape: the caller reads one consistent view, a function
//! here returns a [`Decision`] (the [`Change`]s plus what to log and count), and the
//! caller applies the changes with one `Store::apply_rollout_changes` call (one
//! transaction, version-checked). [`decide`] is the controller's pass over one rollout;
//! [`operator`] holds the operator operations and the start of a rollout (also used by
//! the controller for automatic starts and promotion).
//!
//! Architecture invariant: pure. No I/O, no clock (`now` is a parameter), no tokio,
//! sqlx or bollard. Transitions are checked by [`super::machine::next`]; an illegal one
//! is returned in [`Decision::illegal`] for the caller to log and count, never dropped.

pub mod operator;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::machine::{Event, IllegalTransition, next};
use super::plan::{Plan, TargetAction, TargetView, plan};
use super::record::{Draft, Rollout, event};
use crate::domain::{
    Change, DesiredChange, Digest, Health, ReleaseChange, ReleaseStatus, RolloutState,
    TargetChange, TargetStatus, WorkspaceState,
};
use crate::store::{CandidateRow, SettledTargets, TargetRow};

/// Why an operation (or a promotion) cannot go on. Messages are the API's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The state of the rollout or release does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (400).
    #[error("{0}")]
    Invalid(String),
}

/// What one decision changes, and what the caller logs and counts.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Applied together by `Store::apply_rollout_changes`; empty: nothing to write.
    pub changes: Vec<Change>,
    /// The checked rollout transition this decision makes (`from`, `to`).
    pub transition: Option<(RolloutState, RolloutState)>,
    /// A transition the plan asked for that the machine refused; the rest still applies.
    pub illegal: Option<IllegalTransition>,
    /// Updates started (workspace names).
    pub started: Vec<String>,
    /// Workspaces that failed in the rollout: (name, reason).
    pub failed: Vec<(Option<String>, String)>,
    /// The failure policy aborted the rollout: (reason, release blocked).
    pub aborted: Option<(String, bool)>,
    /// Desired digests changed: the reconciler has work.
    pub writes_desired: bool,
    /// The rollout moved to production: new targets for the next pass.
    pub promoted: bool,
}

impl Decision {
    fn from_draft(d: Draft, transition: Option<(RolloutState, RolloutState)>) -> Self {
        Self {
            writes_desired: d.writes_desired(),
            changes: d.into_changes(),
            transition,
            ..Self::default()
        }
    }
}

/// What a pass reads about one rollout.
pub struct PassView<'a> {
    pub rollout: &'a Rollout,
    /// Targets read in full (see `Store::rollout_targets_for_pass`).
    pub targets: &'a [TargetRow],
    /// The settled rest, counted.
    pub settled: &'a [SettledTargets],
    /// Failed smoke checks of updated canaries, by workspace id.
    pub smoke: &'a HashMap<i64, String>,
    /// Fleet mode `paused`: start nothing.
    pub hold: bool,
    /// Read only when [`wants_promotion`] says so.
    pub promotion: Option<Promotion<'a>>,
}

/// What promoting to production needs besides the rollout.
#[derive(Clone, Copy)]
pub struct Promotion<'a> {
    /// Workspaces already covered.
    pub existing: &'a [i64],
    /// Live workspaces of the image.
    pub candidates: &'a [CandidateRow],
}

/// True when this pass may promote the rollout by itself (`auto_promote` after the soak):
/// then the caller also reads the [`Promotion`] inputs. Which code decides a canary is
/// done soaking: this, and `plan` (the same condition, plus a healthy canary tier).
pub fn wants_promotion(r: &Rollout, now: DateTime<Utc>) -> bool {
    r.status.state == RolloutState::Soaking && r.strategy.auto_promote && r.status.soak_passed(now)
}

/// One controller pass over one rollout.
pub fn decide(v: &PassView<'_>, now: DateTime<Utc>) -> Result<Decision, DecideError> {
    let r = v.rollout;
    let automatic = r.started_by == "system";
    let mut views: Vec<TargetView> = v
        .targets
        .iter()
        .map(|t| view(t, automatic, now, v.smoke.get(&t.workspace_id).cloned()))
        .collect();
    views.extend(settled_views(v.settled, &r.digest));
    let p = plan(&r.status, &r.strategy, &views, now, v.hold);
    if p.actions.is_empty() && p.event.is_none() {
        return Ok(Decision::default());
    }
    if matches!(p.event, Some((Event::Promote, _))) && p.actions.is_empty() {
        let inputs = v.promotion.ok_or_else(|| {
            DecideError::Conflict(format!("rollout {}: promotion inputs not read", r.id))
        })?;
        if operator::check_promote(r, false, now)? {
            return Ok(Decision::default());
        }
        let (mut d, _) = operator::to_production(
            r,
            crate::domain::ApplyTier::Production,
            "system",
            false,
            inputs,
            now,
        )?;
        d.promoted = true;
        return Ok(d);
    }
    Ok(act(r, v.targets, &p, now))
}

/// The target actions and the transition of a plan.
fn act(r: &Rollout, rows: &[TargetRow], p: &Plan, now: DateTime<Utc>) -> Decision {
    let names: HashMap<i64, &str> = rows
        .iter()
        .map(|t| (t.workspace_id, t.name.as_str()))
        .collect();
    let name = |id: &i64| names.get(id).copied();
    let to_digest = &r.digest;
    let mut r = r.clone();
    let mut w = r.draft();
    let mut out = Decision::default();
    for a in &p.actions {
        match a {
            TargetAction::Start { workspace_id } => {
                w.push(tw(*workspace_id, TargetStatus::Updating, true, None));
                w.push(desired(*workspace_id, to_digest, false));
                out.started
                    .push(name(workspace_id).unwrap_or_default().to_owned());
            }
            TargetAction::AlreadyThere { workspace_id } => {
                w.push(tw(*workspace_id, TargetStatus::Updated, false, None));
            }
            TargetAction::Succeeded {
                workspace_id,
                update_id,
            } => w.push(tw(
                *workspace_id,
                TargetStatus::Updated,
                false,
                Some(*update_id),
            )),
            TargetAction::Failed {
                workspace_id,
                update_id,
                status,
                reason,
            } => {
                w.push(tw(*workspace_id, *status, false, *update_id));
                let n = name(workspace_id);
                out.failed.push((n.map(str::to_owned), reason.clone()));
                w.push(event(
                    "system",
                    "rollout.workspace_failed",
                    n,
                    serde_json::json!({ "reason": reason, "status": status.as_str() }),
                ));
            }
            TargetAction::Retry {
                workspace_id,
                update_id,
            } => {
                w.push(tw(
                    *workspace_id,
                    TargetStatus::Updating,
                    true,
                    Some(*update_id),
                ));
                w.push(desired(*workspace_id, to_digest, true));
                w.push(event(
                    "system",
                    "rollout.workspace_retry",
                    name(workspace_id),
                    serde_json::json!({ "failed_update": update_id }),
                ));
            }
        }
    }
    if !out.started.is_empty() {
        w.push(event(
            "system",
            "rollout.updates_started",
            None,
            serde_json::json!({ "workspaces": out.started }),
        ));
    }
    let from = r.status.state;
    if let Some((ev, reason)) = transition_of(p) {
        match next(&r.status, &ev, now) {
            Ok(to) => {
                r.transition(&mut w, &ev, to, "system", &reason);
                match ev {
                    Event::Abort => {
                        let why = format!("rollout {} aborted: {reason}", r.id);
                        w.row.reason = Some(why.clone());
                        w.push(Change::Release(ReleaseChange {
                            release_id: r.release_id,
                            status: ReleaseStatus::Blocked,
                            reason: why,
                        }));
                        out.aborted = Some((reason, p.block_release));
                    }
                    Event::ProductionConverged => w.push(Change::Release(ReleaseChange {
                        release_id: r.release_id,
                        status: ReleaseStatus::Completed,
                        reason: format!("rollout {} completed", r.id),
                    })),
                    _ => {}
                }
            }
            Err(e) => out.illegal = Some(e),
        }
    }
    let transition = (r.status.state != from).then_some((from, r.status.state));
    let Decision {
        started,
        failed,
        aborted,
        illegal,
        ..
    } = out;
    Decision {
        started,
        failed,
        aborted,
        illegal,
        ..Decision::from_draft(w, transition)
    }
}

fn transition_of(p: &Plan) -> Option<(Event, String)> {
    match &p.event {
        Some((Event::Promote, _)) | None => None,
        Some((e, r)) => Some((e.clone(), r.clone())),
    }
}

fn tw(
    workspace_id: i64,
    status: TargetStatus,
    add_attempt: bool,
    update_id: Option<i64>,
) -> Change {
    Change::Target(TargetChange {
        workspace_id,
        status: Some(status),
        add_attempt,
        update_id,
        rollback: None,
    })
}

fn desired(workspace_id: i64, digest: &Digest, forget_failed: bool) -> Change {
    Change::Desired(DesiredChange {
        workspace_id,
        digest: digest.clone(),
        in_rollout: true,
        forget_failed,
    })
}

/// Stand-ins for settled targets (see `Store::rollout_targets_for_pass`): no action is
/// planned for them; they count in the failure thresholds and wave progress exactly as
/// the rows they stand for (same tier, wave and status, healthy when `updated`, newest
/// `updated_at` of their group).
pub fn settled_views(groups: &[SettledTargets], digest: &Digest) -> Vec<TargetView> {
    let mut out = Vec::new();
    for g in groups {
        let mut status = g.status;
        if status == TargetStatus::Pending && g.held {
            status = TargetStatus::Skipped;
        }
        let n = usize::try_from(g.count).unwrap_or(0);
        out.extend(std::iter::repeat_n(
            TargetView {
                workspace_id: 0,
                name: String::new(),
                tier: g.tier,
                wave: g.wave,
                status,
                attempts: 0,
                to_digest: digest.clone(),
                seen_update_id: None,
                updated_at: g.last_updated_at,
                latest_update: None,
                actual_digest: None,
                health: Health::Healthy,
                ws_state: WorkspaceState::Running,
                outside_window: false,
                smoke_failure: None,
                stand_in: true,
            },
            n,
        ));
    }
    out
}

/// The planner's view of one target read in full.
pub fn view(
    t: &TargetRow,
    automatic: bool,
    now: DateTime<Utc>,
    smoke_failure: Option<String>,
) -> TargetView {
    let mut status = t.status;
    // A workspace pinned after the rollout started is held where it is.
    if status == TargetStatus::Pending
        && t.pinned_digest.as_ref().is_some_and(|p| *p != t.to_digest)
    {
        status = TargetStatus::Skipped;
    }
    TargetView {
        workspace_id: t.workspace_id,
        name: t.name.clone(),
        tier: t.tier,
        wave: t.wave,
        status,
        attempts: u32::try_from(t.attempts).unwrap_or(u32::MAX),
        to_digest: t.to_digest.clone(),
        seen_update_id: t.update_id,
        updated_at: t.updated_at,
        latest_update: t.latest_update,
        actual_digest: t.actual_digest.clone(),
        health: t.health,
        ws_state: t.ws_state,
        outside_window: automatic && t.maintenance_window.is_some_and(|w| !w.contains(now)),
        smoke_failure,
        stand_in: false,
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
