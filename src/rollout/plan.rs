//! Planning one controller pass for one rollout, from a snapshot of its targets.
//!
//! Architecture invariant: pure. The caller reads the rollout, its targets and the
//! observed workspace state (one consistent snapshot), calls [`plan`] with `now`, and
//! writes the returned [`Plan`] in one transaction. Decisions are made from the whole
//! snapshot (waves, parallelism, failure thresholds), never per workspace in isolation.

use chrono::{DateTime, Utc};

use super::analysis::{Gate, Verdict};
use super::hosts::skip_for_host;
use super::machine::{Event, RolloutStatus};
use super::strategy::Strategy;
use crate::domain::{
    Digest, Health, HostName, HostState, RolloutState, Tier, UpdatePhase, WorkspaceState,
};

pub use crate::domain::TargetStatus;

#[path = "plan_waves.rs"]
mod waves;
use waves::{Pace, progress};

/// One target with what was observed about its workspace.
#[derive(Clone, Debug)]
pub struct TargetView {
    pub workspace_id: i64,
    pub name: String,
    pub tier: Tier,
    pub wave: i64,
    pub status: TargetStatus,
    pub attempts: u32,
    pub to_digest: Digest,
    /// The newest journal row already accounted for (outcomes must be newer).
    pub seen_update_id: Option<i64>,
    /// When the target's status last changed.
    pub updated_at: DateTime<Utc>,
    /// Newest `workspace_updates` row of (workspace, this rollout).
    pub latest_update: Option<(i64, UpdatePhase)>,
    pub actual_digest: Option<Digest>,
    pub health: Health,
    pub ws_state: WorkspaceState,
    /// A per-workspace maintenance window keeps an automatic rollout from starting it now.
    pub outside_window: bool,
    /// A failed canary smoke check (from the smoke adapter), during the soak.
    pub smoke_failure: Option<String>,
    /// Stands for a target that was counted, not read (see the controller): it counts in
    /// waves and thresholds like the target, and no action is ever planned for it.
    pub stand_in: bool,
    /// The Docker host of the workspace, and where it stands (see `super::hosts`).
    pub host: HostName,
    pub host_state: HostState,
    /// The last heartbeat of a `down` host.
    pub host_down_since: Option<DateTime<Utc>>,
}

/// What to do to one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetAction {
    /// Write `desired_digest = to_digest`; status `updating`; one more attempt.
    Start {
        workspace_id: i64,
    },
    /// The workspace already runs the digest: `updated` without an update.
    AlreadyThere {
        workspace_id: i64,
    },
    Succeeded {
        workspace_id: i64,
        update_id: i64,
    },
    /// A failure: `rolled_back` when the reconciler rolled the workspace back.
    Failed {
        workspace_id: i64,
        update_id: Option<i64>,
        status: TargetStatus,
        reason: String,
    },
    /// Per-workspace retry: forget the failed digest, write the desired digest again.
    Retry {
        workspace_id: i64,
        update_id: i64,
    },
    /// The target's host stayed down past `host_timeout` with `on_host_timeout = "skip"`:
    /// `skipped` with the reason. Its desired digest stays as it is.
    SkipForHost {
        workspace_id: i64,
        reason: String,
    },
}

/// The result of one planning pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<TargetAction>,
    /// A state-machine event to apply, with its reason for the audit trail.
    pub event: Option<(Event, String)>,
    /// The release never rolls out by itself again (its canary failed).
    pub block_release: bool,
}

/// Plans one pass with no metric checks (see [`plan_gated`]).
pub fn plan(
    status: &RolloutStatus,
    strategy: &Strategy,
    targets: &[TargetView],
    now: DateTime<Utc>,
    hold: bool,
) -> Plan {
    plan_gated(status, strategy, targets, now, hold, &Gate::open())
}

/// Plans one pass. `status` is the stored rollout status; `hold` (fleet mode `paused`)
/// starts nothing new while outcomes and health are still recorded; `gate` is what the
/// metric checks say (an abort or a pause they decided; a promotion or a production
/// wave waits until every check passed).
pub fn plan_gated(
    status: &RolloutStatus,
    strategy: &Strategy,
    targets: &[TargetView],
    now: DateTime<Utc>,
    hold: bool,
    gate: &Gate,
) -> Plan {
    let mut out = Plan::default();
    let state = status.state;
    if state.is_terminal() || state == RolloutState::Pending {
        return out;
    }
    let effective = status.effective_state();
    let may_start = !hold && !matches!(state, RolloutState::Paused | RolloutState::Aborted);
    let watching = matches!(
        effective,
        RolloutState::Canary | RolloutState::Soaking | RolloutState::Production
    ) && state != RolloutState::Aborted;

    // 1. Observe: outcomes of updates in flight, health of updated workspaces, hosts that
    //    stayed down past `host_timeout` (skipped only while the tier is being rolled).
    let mut now_status: Vec<TargetStatus> = targets.iter().map(|t| t.status).collect();
    let mut updating = 0usize;
    let rolling = |t: &TargetView| match state {
        RolloutState::Production => true,
        RolloutState::Canary => t.tier == Tier::Canary,
        _ => false,
    };
    for (i, t) in targets.iter().enumerate() {
        if matches!(t.status, TargetStatus::Pending | TargetStatus::Updating)
            && observe_outcome(t).is_none()
            && rolling(t)
            && let Some(reason) = skip_for_host(strategy, t, now)
        {
            out.actions.push(TargetAction::SkipForHost {
                workspace_id: t.workspace_id,
                reason,
            });
            now_status[i] = TargetStatus::Skipped;
            continue;
        }
        match t.status {
            TargetStatus::Updating => match observe_outcome(t) {
                Some((id, UpdatePhase::Succeeded)) => {
                    out.actions.push(TargetAction::Succeeded {
                        workspace_id: t.workspace_id,
                        update_id: id,
                    });
                    now_status[i] = TargetStatus::Updated;
                }
                Some((id, phase)) => {
                    if may_start && t.attempts <= strategy.retries {
                        out.actions.push(TargetAction::Retry {
                            workspace_id: t.workspace_id,
                            update_id: id,
                        });
                        updating += 1;
                    } else {
                        let st = if phase == UpdatePhase::RolledBack {
                            TargetStatus::RolledBack
                        } else {
                            TargetStatus::Failed
                        };
                        out.actions.push(TargetAction::Failed {
                            workspace_id: t.workspace_id,
                            update_id: Some(id),
                            status: st,
                            reason: format!("update ended in phase {phase}"),
                        });
                        now_status[i] = st;
                    }
                }
                None => updating += 1,
            },
            TargetStatus::Updated if watching => {
                if let Some(reason) = unhealthy_reason(t) {
                    out.actions.push(TargetAction::Failed {
                        workspace_id: t.workspace_id,
                        update_id: None,
                        status: TargetStatus::Failed,
                        reason,
                    });
                    now_status[i] = TargetStatus::Failed;
                }
            }
            _ => {}
        }
    }

    // 2. Failure policy, per tier.
    if watching && strategy.aborts_on_failure() {
        for tier in [Tier::Canary, Tier::Production] {
            let in_tier = || {
                targets
                    .iter()
                    .zip(&now_status)
                    .filter(move |(t, s)| t.tier == tier && **s != TargetStatus::Skipped)
            };
            let total = in_tier().count();
            let failed = in_tier().filter(|(_, s)| s.is_failure()).count();
            if strategy.past_threshold(failed, total) {
                out.block_release = tier == Tier::Canary
                    || matches!(effective, RolloutState::Canary | RolloutState::Soaking);
                out.event = Some((
                    Event::Abort,
                    format!("{failed} of {total} {tier} workspaces failed"),
                ));
                return out;
            }
        }
    }
    // The metric checks: an abort stops the rollout, a pause waits for an operator.
    if watching {
        match &gate.decided {
            Some(Verdict::Abort(reason)) => {
                out.block_release =
                    matches!(effective, RolloutState::Canary | RolloutState::Soaking);
                out.event = Some((Event::Abort, reason.clone()));
                return out;
            }
            Some(Verdict::Pause(reason)) if state != RolloutState::Paused => {
                out.event = Some((Event::Pause, reason.clone()));
                return out;
            }
            _ => {}
        }
    }
    if !may_start {
        return out;
    }
    let pace = Pace {
        strategy,
        now,
        gate,
    };

    // 3. Progress of the current tier.
    match state {
        RolloutState::Canary => {
            let done = progress(
                Tier::Canary,
                &pace,
                targets,
                &now_status,
                updating,
                &mut out,
            );
            if done {
                out.event = Some((
                    Event::CanaryConverged {
                        soak_ms: strategy.soak_ms,
                    },
                    "every canary is updated and healthy".to_owned(),
                ));
            }
        }
        RolloutState::Production => {
            // Production covers every target still to do (canaries too after `apply all`).
            let done = progress(
                Tier::Production,
                &pace,
                targets,
                &now_status,
                updating,
                &mut out,
            );
            if done {
                out.event = Some((
                    Event::ProductionConverged,
                    "every workspace is updated".to_owned(),
                ));
            }
        }
        RolloutState::Soaking
            if strategy.auto_promote && status.soak_passed(now) && gate.allows_promotion() =>
        {
            let why = if gate.gated {
                "soak passed and every metric check passed; auto_promote"
            } else {
                "soak passed; auto_promote"
            };
            out.event = Some((Event::Promote, why.to_owned()));
        }
        _ => {}
    }
    out
}

/// A terminal journal row newer than what the target has seen.
fn observe_outcome(t: &TargetView) -> Option<(i64, UpdatePhase)> {
    let (id, phase) = t.latest_update?;
    (id > t.seen_update_id.unwrap_or(0) && phase.is_terminal()).then_some((id, phase))
}

/// Why an updated workspace no longer counts as good, if it does not.
fn unhealthy_reason(t: &TargetView) -> Option<String> {
    if let Some(s) = &t.smoke_failure {
        return Some(format!("smoke check failed: {s}"));
    }
    if t.health == Health::Unhealthy {
        return Some("unhealthy after update".to_owned());
    }
    if matches!(
        t.ws_state,
        WorkspaceState::Quarantined | WorkspaceState::RollingBack | WorkspaceState::Missing
    ) {
        return Some(format!("workspace is {} after update", t.ws_state));
    }
    match &t.actual_digest {
        Some(a) if *a != t.to_digest => Some(format!("workspace left the digest (runs {a})")),
        _ => None,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
