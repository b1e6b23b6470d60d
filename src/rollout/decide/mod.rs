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
mod views;

pub use views::{settled_views, view};

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::analysis::Gate;
use super::hosts::HostStates;
use super::machine::{Event, IllegalTransition, next};
use super::plan::{Plan, TargetAction, TargetView, plan_gated};
use super::record::{Draft, Rollout, event};
use crate::domain::{
    AnalysisRecord, AnalysisVerdict, Change, DesiredChange, Digest, ReleaseChange, ReleaseStatus,
    RolloutState, TargetChange, TargetStatus,
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
    /// Targets skipped because their host stayed down: (name, reason).
    pub skipped_for_host: Vec<(Option<String>, String)>,
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
    /// Where the Docker hosts stand (from the `hosts` rows at `now`).
    pub hosts: &'a HostStates,
    /// Read only when [`wants_promotion`] says so.
    pub promotion: Option<Promotion<'a>>,
    /// What the metric checks say for this pass ([`Gate::open`] without checks).
    pub gate: &'a Gate,
    /// The metric checks evaluated this pass: stored with the decision.
    pub analysis: &'a [AnalysisRecord],
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
        .map(|t| {
            let smoke = v.smoke.get(&t.workspace_id).cloned();
            view(t, automatic, now, smoke, v.hosts)
        })
        .collect();
    views.extend(settled_views(v.settled, &r.digest, v.hosts));
    let p = plan_gated(&r.status, &r.strategy, &views, now, v.hold, v.gate);
    if p.actions.is_empty() && p.event.is_none() && v.analysis.is_empty() {
        return Ok(Decision::default());
    }
    if matches!(p.event, Some((Event::Promote, _))) && p.actions.is_empty() {
        let inputs = v.promotion.ok_or_else(|| {
            DecideError::Conflict(format!("rollout {}: promotion inputs not read", r.id))
        })?;
        if operator::check_promote(r, false, now)? {
            if v.analysis.is_empty() {
                return Ok(Decision::default());
            }
            return Ok(act(r, v.targets, &Plan::default(), v.analysis, now));
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
        d.changes
            .extend(v.analysis.iter().cloned().map(Change::Analysis));
        if v.gate.gated {
            d.changes.push(event(
                "system",
                "rollout.analysis_passed",
                None,
                serde_json::json!({ "stage": "soak", "checks": v.analysis.iter().map(|a| &a.check).collect::<Vec<_>>() }),
            ));
        }
        return Ok(d);
    }
    Ok(act(r, v.targets, &p, v.analysis, now))
}

/// The stored results of this pass's evaluations, and an audit event for each that
/// decided something (an abort or a pause).
fn analysis_changes(w: &mut super::record::Draft, results: &[AnalysisRecord]) {
    for a in results {
        w.push(Change::Analysis(a.clone()));
        if a.verdict != AnalysisVerdict::Continue {
            w.push(event(
                "system",
                "rollout.analysis",
                None,
                serde_json::json!({
                    "check": a.check,
                    "stage": a.stage.as_str(),
                    "query": a.query,
                    "value": a.value,
                    "outcome": a.outcome.as_str(),
                    "detail": a.detail,
                    "failures": a.failures,
                    "verdict": a.verdict.as_str(),
                }),
            ));
        }
    }
}

/// The target actions and the transition of a plan.
fn act(
    r: &Rollout,
    rows: &[TargetRow],
    p: &Plan,
    analysis: &[AnalysisRecord],
    now: DateTime<Utc>,
) -> Decision {
    let names: HashMap<i64, (&str, &str)> = rows
        .iter()
        .map(|t| (t.workspace_id, (t.name.as_str(), t.host.as_str())))
        .collect();
    let name = |id: &i64| names.get(id).map(|n| n.0);
    let host = |id: &i64| names.get(id).map(|n| n.1);
    let to_digest = &r.digest;
    let mut r = r.clone();
    let mut w = r.draft();
    let mut out = Decision::default();
    analysis_changes(&mut w, analysis);
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
            TargetAction::SkipForHost {
                workspace_id,
                reason,
            } => {
                // The workspace keeps its desired digest: nothing is rolled back.
                w.push(Change::Target(TargetChange {
                    workspace_id: *workspace_id,
                    status: Some(TargetStatus::Skipped),
                    status_reason: Some(reason.clone()),
                    ..TargetChange::default()
                }));
                let n = name(workspace_id);
                out.skipped_for_host
                    .push((n.map(str::to_owned), reason.clone()));
                w.push(event(
                    "system",
                    "target.skipped_for_host",
                    n,
                    serde_json::json!({ "host": host(workspace_id), "reason": reason }),
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
        skipped_for_host,
        ..
    } = out;
    Decision {
        started,
        failed,
        aborted,
        illegal,
        skipped_for_host,
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
        status_reason: None,
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

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
