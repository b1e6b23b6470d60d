//! Starting the next wave of a tier: the part of [`super::plan`] that paces waves
//! (earlier waves finished and healthy, `pause_between_waves`, the metric checks that
//! gate production waves, parallelism and per-host limits). Pure, like the plan.

use chrono::{DateTime, Duration, Utc};

use super::{Plan, TargetAction, TargetStatus, TargetView};
use crate::domain::{Health, Tier};
use crate::rollout::analysis::Gate;
use crate::rollout::hosts::{HostSlots, waits_for_host};
use crate::rollout::strategy::Strategy;

/// What paces the waves of a pass.
pub(super) struct Pace<'a> {
    pub strategy: &'a Strategy,
    pub now: DateTime<Utc>,
    /// Production waves wait for the metric checks `after_waves`.
    pub gate: &'a Gate,
}

/// Starts what the waves allow in `scope`; true when the scope is finished and healthy.
/// `Tier::Production` means every target (after `apply all` canaries are in it too).
pub(super) fn progress(
    scope: Tier,
    pace: &Pace<'_>,
    targets: &[TargetView],
    status: &[TargetStatus],
    mut updating: usize,
    out: &mut Plan,
) -> bool {
    let Pace {
        strategy,
        now,
        gate,
    } = *pace;
    let in_scope: Vec<usize> = (0..targets.len())
        .filter(|&i| scope == Tier::Production || targets[i].tier == scope)
        .filter(|&i| status[i] != TargetStatus::Skipped)
        .collect();
    let healthy =
        |i: usize| status[i] != TargetStatus::Updated || targets[i].health == Health::Healthy;
    // A target waiting for its host holds back neither its wave nor later ones, but the
    // scope is not finished while any waits.
    let waiting = |i: usize| waits_for_host(&targets[i], status[i]);
    // `immediate` (and `apply all`) is one wave whatever was numbered before.
    let one_wave = !strategy.aborts_on_failure();
    let wave_of = |i: usize| if one_wave { 0 } else { targets[i].wave };
    let Some(wave) = in_scope
        .iter()
        .filter(|&&i| !status[i].is_done() && !waiting(i))
        .map(|&i| wave_of(i))
        .min()
    else {
        return !in_scope.iter().any(|&i| waiting(i)) && in_scope.iter().all(|&i| healthy(i));
    };
    // Earlier waves must be finished and healthy before this one goes on.
    let earlier: Vec<usize> = in_scope
        .iter()
        .copied()
        .filter(|&i| wave_of(i) < wave)
        .collect();
    if !earlier.iter().all(|&i| healthy(i)) {
        return false;
    }
    let current: Vec<usize> = in_scope
        .iter()
        .copied()
        .filter(|&i| wave_of(i) == wave)
        .collect();
    let wave_started = current.iter().any(|&i| status[i] != TargetStatus::Pending);
    // A target whose outcome this pass records finishes now, not when its row last changed.
    let finished = |i: usize| {
        if status[i] == targets[i].status {
            targets[i].updated_at
        } else {
            now
        }
    };
    if !wave_started && let Some(last) = earlier.iter().map(|&i| finished(i)).max() {
        let pause = Duration::milliseconds(strategy.pause_between_waves_ms);
        if now < last + pause || !gate.allows_wave_after(last) {
            return false;
        }
    }
    let mut slots = HostSlots::new(targets, status, &in_scope);
    for &i in &current {
        let t = &targets[i];
        if status[i] != TargetStatus::Pending || t.outside_window || t.stand_in || waiting(i) {
            continue;
        }
        if t.actual_digest.as_ref() == Some(&t.to_digest) {
            out.actions.push(TargetAction::AlreadyThere {
                workspace_id: t.workspace_id,
            });
            continue;
        }
        if updating >= strategy.parallel() {
            break;
        }
        if !slots.has_room(strategy, &t.host) {
            continue;
        }
        out.actions.push(TargetAction::Start {
            workspace_id: t.workspace_id,
        });
        slots.take(&t.host);
        updating += 1;
    }
    false
}
