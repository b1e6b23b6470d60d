//! The rollout state machine: `next(status, event, now)`.
//!
//! Architecture invariant: this module performs no I/O and reads no clock; `now` is a
//! parameter. Every transition is listed in one `match`; everything else is an
//! [`IllegalTransition`]. Terminal states (`completed`, `rolled_back`) have no way out;
//! `paused` remembers the state it paused and `resume` returns to exactly that one.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::RolloutState;

/// Something that happens to a rollout. Serialized into the audit trail (`detail.event`),
/// so the stored state can be re-derived by replaying a rollout's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// `apply canary`: pending → canary.
    ApplyCanary,
    /// `apply production` / `apply all` (from pending, canary or soaking; the force rules
    /// are the operations' business, not the machine's).
    ApplyProduction,
    /// Every canary target is on the new digest and healthy: the soak starts.
    CanaryConverged {
        soak_ms: i64,
    },
    /// soaking → production.
    Promote,
    /// Every production target is done.
    ProductionConverged,
    Pause,
    Resume,
    Abort,
    /// The operator put the moved workspaces back on their previous digests.
    Rollback,
}

impl Event {
    /// A short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Event::ApplyCanary => "apply_canary",
            Event::ApplyProduction => "apply_production",
            Event::CanaryConverged { .. } => "canary_converged",
            Event::Promote => "promote",
            Event::ProductionConverged => "production_converged",
            Event::Pause => "pause",
            Event::Resume => "resume",
            Event::Abort => "abort",
            Event::Rollback => "rollback",
        }
    }
}

/// The persisted status of a rollout: its state and the data that state needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStatus {
    pub state: RolloutState,
    /// Set exactly when `state` is `paused`: where `resume` returns.
    pub paused_from: Option<RolloutState>,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl RolloutStatus {
    /// A freshly created rollout.
    pub fn pending() -> Self {
        Self {
            state: RolloutState::Pending,
            paused_from: None,
            soak_started_at: None,
            soak_ends_at: None,
            finished_at: None,
        }
    }

    /// The state that decides what the rollout does: the paused one while paused.
    pub fn effective_state(&self) -> RolloutState {
        self.paused_from.unwrap_or(self.state)
    }

    /// True once the soak has run its full time.
    pub fn soak_passed(&self, now: DateTime<Utc>) -> bool {
        self.soak_ends_at.is_some_and(|end| now >= end)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event `{event}` is not allowed in rollout state `{state}`")]
pub struct IllegalTransition {
    pub state: RolloutState,
    pub event: &'static str,
}

/// The one transition function.
pub fn next(
    status: &RolloutStatus,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<RolloutStatus, IllegalTransition> {
    use RolloutState as S;
    let illegal = || IllegalTransition {
        state: status.state,
        event: event.name(),
    };
    let mut out = status.clone();
    let to = |mut s: RolloutStatus, state: RolloutState| {
        s.state = state;
        s
    };
    let result = match (status.state, event) {
        (S::Pending, Event::ApplyCanary) => to(out, S::Canary),
        (S::Pending | S::Canary | S::Soaking, Event::ApplyProduction) => to(out, S::Production),
        (S::Canary, Event::CanaryConverged { soak_ms }) if *soak_ms >= 0 => {
            out.soak_started_at = Some(now);
            out.soak_ends_at = Some(now + Duration::milliseconds(*soak_ms));
            to(out, S::Soaking)
        }
        (S::Soaking, Event::Promote) => to(out, S::Production),
        (S::Production, Event::ProductionConverged) => {
            out.finished_at = Some(now);
            to(out, S::Completed)
        }
        (S::Pending | S::Canary | S::Soaking | S::Production, Event::Pause) => {
            out.paused_from = Some(status.state);
            to(out, S::Paused)
        }
        (S::Paused, Event::Resume) => {
            let back = status.paused_from.ok_or_else(illegal)?;
            out.paused_from = None;
            to(out, back)
        }
        (S::Pending | S::Canary | S::Soaking | S::Production | S::Paused, Event::Abort) => {
            out.paused_from = None;
            out.finished_at = Some(now);
            to(out, S::Aborted)
        }
        (S::Canary | S::Soaking | S::Production | S::Paused | S::Aborted, Event::Rollback) => {
            out.paused_from = None;
            out.finished_at = Some(now);
            to(out, S::RolledBack)
        }
        _ => return Err(illegal()),
    };
    Ok(result)
}

/// Folds a rollout's event log from `pending`; what the stored status must equal.
pub fn replay<'a>(
    log: impl IntoIterator<Item = (&'a Event, DateTime<Utc>)>,
) -> Result<RolloutStatus, IllegalTransition> {
    log.into_iter()
        .try_fold(RolloutStatus::pending(), |s, (e, at)| next(&s, e, at))
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
