//! The update saga's phase table: which phase follows which, for every outcome of a step.
//! Pure (no I/O, no clock): the driver in `saga.rs` runs a step, classifies how it ended,
//! and asks [`next`]; it never picks a phase itself. Anything the table does not list is
//! an [`IllegalPhaseTransition`], including every outcome in a terminal phase.
//!
//! ```text
//! phase            Done              Failed            NothingToRevert
//! pulling          stopping          failed            -
//! stopping         snapshotting      rolling_back      -
//! snapshotting     recreating        failed  (*)       -
//! recreating       starting          rolling_back      -
//! starting         health_checking   rolling_back      -
//! health_checking  succeeded         rolling_back      -
//! rolling_back     restoring         quarantined       -
//! restoring        reverting         quarantined       -
//! reverting        verifying         quarantined       failed
//! verifying        rolled_back       quarantined       -
//! succeeded, rolled_back, failed, quarantined: terminal, nothing follows
//! ```
//! (*) a snapshot that cannot be taken has changed nothing yet: the stopped container
//! starts again and nothing is restored.
//!
//! A start-first update (`update_order = "start-first"`) has its own table: the new
//! container is created and started beside the old one under a staging name, health
//! gated, and only then does `stopping` switch traffic to it, stop and remove the old
//! container and give the new one the workspace's name. Its rollback removes the new
//! container and makes sure the old one runs and receives traffic: nothing to restore.
//!
//! ```text
//! start-first      Done              Failed
//! pulling          snapshotting      failed
//! snapshotting     recreating        failed      (a snapshot only if asked; nothing stops)
//! recreating       starting          rolling_back   (create the new one beside the old)
//! starting         health_checking   rolling_back
//! health_checking  stopping          rolling_back   (the new one's gate)
//! stopping         succeeded         rolling_back   (switch traffic, retire the old, rename)
//! rolling_back     verifying         quarantined    (remove the new one, old one serves)
//! verifying        rolled_back       quarantined    (the old one's gate)
//! restoring, reverting: not part of a start-first update
//! ```

use crate::domain::UpdatePhase;
use crate::domain::spec::UpdateOrder;

/// How a step ended, as far as the table cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The step did what it is for.
    Done,
    /// The step failed (after any retries of transient errors).
    Failed,
    /// `reverting` found no previous digest to return to (a workspace's first update).
    NothingToRevert,
}

/// A phase and an outcome the table has no row for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal update phase transition: {outcome:?} in phase {phase}")]
pub struct IllegalPhaseTransition {
    pub phase: UpdatePhase,
    pub outcome: StepOutcome,
}

/// The phase that follows `phase` when its step ended with `outcome`.
pub fn next(
    phase: UpdatePhase,
    outcome: StepOutcome,
) -> Result<UpdatePhase, IllegalPhaseTransition> {
    use StepOutcome::{Done, Failed, NothingToRevert};
    use UpdatePhase as P;
    Ok(match (phase, outcome) {
        (P::Pulling, Done) => P::Stopping,
        (P::Pulling, Failed) => P::Failed,
        (P::Stopping, Done) => P::Snapshotting,
        (P::Snapshotting, Done) => P::Recreating,
        (P::Snapshotting, Failed) => P::Failed,
        (P::Recreating, Done) => P::Starting,
        (P::Starting, Done) => P::HealthChecking,
        (P::HealthChecking, Done) => P::Succeeded,
        (P::Stopping | P::Recreating | P::Starting | P::HealthChecking, Failed) => P::RollingBack,
        (P::RollingBack, Done) => P::Restoring,
        (P::Restoring, Done) => P::Reverting,
        (P::Reverting, Done) => P::Verifying,
        (P::Reverting, NothingToRevert) => P::Failed,
        (P::Verifying, Done) => P::RolledBack,
        (P::RollingBack | P::Restoring | P::Reverting | P::Verifying, Failed) => P::Quarantined,
        (phase, outcome) => return Err(IllegalPhaseTransition { phase, outcome }),
    })
}

/// The phase that follows `phase` in an update of `order` (see the tables above).
pub fn next_in(
    order: UpdateOrder,
    phase: UpdatePhase,
    outcome: StepOutcome,
) -> Result<UpdatePhase, IllegalPhaseTransition> {
    use StepOutcome::{Done, Failed};
    use UpdatePhase as P;
    if order == UpdateOrder::StopFirst {
        return next(phase, outcome);
    }
    Ok(match (phase, outcome) {
        (P::Pulling, Done) => P::Snapshotting,
        (P::Pulling | P::Snapshotting, Failed) => P::Failed,
        (P::Snapshotting, Done) => P::Recreating,
        (P::Recreating, Done) => P::Starting,
        (P::Starting, Done) => P::HealthChecking,
        (P::HealthChecking, Done) => P::Stopping,
        (P::Stopping, Done) => P::Succeeded,
        (P::Recreating | P::Starting | P::HealthChecking | P::Stopping, Failed) => P::RollingBack,
        (P::RollingBack, Done) => P::Verifying,
        (P::Verifying, Done) => P::RolledBack,
        (P::RollingBack | P::Verifying, Failed) => P::Quarantined,
        (phase, outcome) => return Err(IllegalPhaseTransition { phase, outcome }),
    })
}

/// True for the phases that undo an update (a failure there quarantines).
pub fn is_rollback(phase: UpdatePhase) -> bool {
    matches!(
        phase,
        UpdatePhase::RollingBack
            | UpdatePhase::Restoring
            | UpdatePhase::Reverting
            | UpdatePhase::Verifying
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepOutcome::{Done, Failed, NothingToRevert};
    use UpdatePhase as P;

    const OUTCOMES: [StepOutcome; 3] = [Done, Failed, NothingToRevert];

    /// The whole table, written out once more: every phase × every outcome.
    fn expected(phase: UpdatePhase, outcome: StepOutcome) -> Option<UpdatePhase> {
        let row: [Option<UpdatePhase>; 3] = match phase {
            P::Pulling => [Some(P::Stopping), Some(P::Failed), None],
            P::Stopping => [Some(P::Snapshotting), Some(P::RollingBack), None],
            P::Snapshotting => [Some(P::Recreating), Some(P::Failed), None],
            P::Recreating => [Some(P::Starting), Some(P::RollingBack), None],
            P::Starting => [Some(P::HealthChecking), Some(P::RollingBack), None],
            P::HealthChecking => [Some(P::Succeeded), Some(P::RollingBack), None],
            P::RollingBack => [Some(P::Restoring), Some(P::Quarantined), None],
            P::Restoring => [Some(P::Reverting), Some(P::Quarantined), None],
            P::Reverting => [Some(P::Verifying), Some(P::Quarantined), Some(P::Failed)],
            P::Verifying => [Some(P::RolledBack), Some(P::Quarantined), None],
            P::Succeeded | P::RolledBack | P::Failed | P::Quarantined => [None, None, None],
        };
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap();
        row[i]
    }

    #[test]
    fn every_phase_and_outcome_is_in_the_table() {
        for phase in UpdatePhase::ALL {
            for outcome in OUTCOMES {
                match expected(*phase, outcome) {
                    Some(to) => assert_eq!(next(*phase, outcome), Ok(to), "{phase} {outcome:?}"),
                    None => assert_eq!(
                        next(*phase, outcome),
                        Err(IllegalPhaseTransition {
                            phase: *phase,
                            outcome
                        }),
                        "{phase} {outcome:?}"
                    ),
                }
            }
        }
    }

    /// The start-first table, written out once more.
    fn expected_start_first(phase: UpdatePhase, outcome: StepOutcome) -> Option<UpdatePhase> {
        let row: [Option<UpdatePhase>; 3] = match phase {
            P::Pulling => [Some(P::Snapshotting), Some(P::Failed), None],
            P::Snapshotting => [Some(P::Recreating), Some(P::Failed), None],
            P::Recreating => [Some(P::Starting), Some(P::RollingBack), None],
            P::Starting => [Some(P::HealthChecking), Some(P::RollingBack), None],
            P::HealthChecking => [Some(P::Stopping), Some(P::RollingBack), None],
            P::Stopping => [Some(P::Succeeded), Some(P::RollingBack), None],
            P::RollingBack => [Some(P::Verifying), Some(P::Quarantined), None],
            P::Verifying => [Some(P::RolledBack), Some(P::Quarantined), None],
            P::Restoring | P::Reverting => [None, None, None],
            P::Succeeded | P::RolledBack | P::Failed | P::Quarantined => [None, None, None],
        };
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap();
        row[i]
    }

    #[test]
    fn every_phase_and_outcome_of_a_start_first_update_is_in_its_table() {
        for phase in UpdatePhase::ALL {
            for outcome in OUTCOMES {
                let got = next_in(UpdateOrder::StartFirst, *phase, outcome);
                match expected_start_first(*phase, outcome) {
                    Some(to) => assert_eq!(got, Ok(to), "{phase} {outcome:?}"),
                    None => assert!(got.is_err(), "{phase} {outcome:?}: {got:?}"),
                }
                assert_eq!(
                    next_in(UpdateOrder::StopFirst, *phase, outcome),
                    next(*phase, outcome)
                );
            }
        }
        // Walks end, and only rollback phases quarantine, in this table too.
        fn walk(phase: UpdatePhase, depth: usize) {
            assert!(depth <= 10, "no end from {phase}");
            for outcome in OUTCOMES {
                if let Ok(to) = next_in(UpdateOrder::StartFirst, phase, outcome) {
                    walk(to, depth + 1);
                }
            }
        }
        walk(P::Pulling, 0);
        for phase in UpdatePhase::ALL {
            if next_in(UpdateOrder::StartFirst, *phase, Failed) == Ok(P::Quarantined) {
                assert!(is_rollback(*phase), "{phase}");
            }
        }
    }

    #[test]
    fn terminal_phases_refuse_everything() {
        for phase in UpdatePhase::ALL.iter().filter(|p| p.is_terminal()) {
            for outcome in OUTCOMES {
                assert!(next(*phase, outcome).is_err(), "{phase} {outcome:?}");
            }
        }
    }

    #[test]
    fn every_walk_ends_in_a_terminal_phase_within_ten_steps() {
        // From any phase, any sequence of outcomes the table accepts reaches a terminal
        // phase: the saga cannot loop.
        fn walk(phase: UpdatePhase, depth: usize) {
            assert!(depth <= 10, "no end from {phase}");
            if phase.is_terminal() {
                return;
            }
            let mut any = false;
            for outcome in OUTCOMES {
                if let Ok(to) = next(phase, outcome) {
                    any = true;
                    walk(to, depth + 1);
                }
            }
            assert!(any, "{phase} is stuck");
        }
        for phase in UpdatePhase::ALL {
            walk(*phase, 0);
        }
    }

    #[test]
    fn only_rollback_phases_quarantine() {
        for phase in UpdatePhase::ALL {
            let q = next(*phase, Failed) == Ok(P::Quarantined);
            assert_eq!(q, is_rollback(*phase), "{phase}");
        }
    }
}
