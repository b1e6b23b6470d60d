//! The controller's collectors, registered once in the shared registry.

use chrono::DateTime;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::machine::{Event, RolloutStatus, next};
use crate::domain::RolloutState;

#[derive(Clone)]
pub struct RolloutMetrics {
    /// `sluice_rollouts{state}`.
    pub rollouts: IntGaugeVec,
    /// `sluice_rollout_workspaces{rollout,status}`: active rollouts only (bounded).
    pub workspaces: IntGaugeVec,
    /// `sluice_rollout_transitions_total{from,to}`.
    pub transitions: IntCounterVec,
    /// `sluice_rollout_illegal_transitions_total`: transitions a pass planned that the
    /// state machine refused (each one is also logged with its rollout).
    pub illegal_transitions: IntCounter,
    /// `sluice_controller_tick_seconds`.
    pub tick: Histogram,
}

impl RolloutMetrics {
    /// Builds and registers the collectors; registering twice in one registry fails.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            rollouts: IntGaugeVec::new(
                Opts::new("sluice_rollouts", "Rollouts by state."),
                &["state"],
            )?,
            workspaces: IntGaugeVec::new(
                Opts::new(
                    "sluice_rollout_workspaces",
                    "Workspaces of each active rollout by target status.",
                ),
                &["rollout", "status"],
            )?,
            transitions: IntCounterVec::new(
                Opts::new(
                    "sluice_rollout_transitions_total",
                    "Rollout state transitions.",
                ),
                &["from", "to"],
            )?,
            illegal_transitions: IntCounter::new(
                "sluice_rollout_illegal_transitions_total",
                "Rollout transitions planned by the controller and refused by the state machine.",
            )?,
            tick: Histogram::with_opts(
                HistogramOpts::new(
                    "sluice_controller_tick_seconds",
                    "Duration of one controller pass.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
            )?,
        };
        // Every transition the state machine allows, exported at zero: `increase()` and
        // alerts then see the first abort, which a series born at 1 would not show.
        for (from, to) in legal_transitions() {
            m.transitions
                .with_label_values(&[from.as_str(), to.as_str()]);
        }
        registry.register(Box::new(m.rollouts.clone()))?;
        registry.register(Box::new(m.workspaces.clone()))?;
        registry.register(Box::new(m.transitions.clone()))?;
        registry.register(Box::new(m.illegal_transitions.clone()))?;
        registry.register(Box::new(m.tick.clone()))?;
        Ok(m)
    }

    /// Collectors registered nowhere (tests, benches).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }
}

/// Every `(from, to)` pair of states [`next`] allows, asked of the machine itself (so the
/// list cannot drift from it). `paused` is tried with each state a pause can come from.
fn legal_transitions() -> Vec<(RolloutState, RolloutState)> {
    let events = [
        Event::ApplyCanary,
        Event::ApplyProduction,
        Event::CanaryConverged { soak_ms: 0 },
        Event::Promote,
        Event::ProductionConverged,
        Event::Pause,
        Event::Resume,
        Event::Abort,
        Event::Rollback,
    ];
    let now = DateTime::UNIX_EPOCH;
    let status = |state, paused_from| RolloutStatus {
        state,
        paused_from,
        ..RolloutStatus::pending()
    };
    let pausable: Vec<Option<RolloutState>> = RolloutState::ALL
        .iter()
        .filter(|s| next(&status(**s, None), &Event::Pause, now).is_ok())
        .map(|s| Some(*s))
        .collect();
    let mut out = Vec::new();
    for &from in RolloutState::ALL {
        let origins = if from == RolloutState::Paused {
            pausable.clone()
        } else {
            vec![None]
        };
        for paused_from in origins {
            for e in &events {
                if let Ok(s) = next(&status(from, paused_from), e, now)
                    && s.state != from
                    && !out.contains(&(from, s.state))
                {
                    out.push((from, s.state));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legal_transition_is_exported_at_zero_and_no_other() {
        let m = RolloutMetrics::unregistered();
        let mut exported: Vec<(String, String)> =
            prometheus::core::Collector::collect(&m.transitions)
                .iter()
                .flat_map(|f| f.get_metric().to_vec())
                .map(|s| {
                    assert_eq!(s.get_counter().get_value(), 0.0);
                    let label = |n: &str| {
                        s.get_label()
                            .iter()
                            .find(|l| l.name() == n)
                            .map(|l| l.value().to_owned())
                            .unwrap_or_default()
                    };
                    (label("from"), label("to"))
                })
                .collect();
        exported.sort();
        let has = |f: &str, t: &str| exported.contains(&(f.to_owned(), t.to_owned()));
        assert!(has("canary", "aborted") && has("aborted", "rolled_back"));
        assert!(has("paused", "production") && has("production", "completed"));
        assert!(
            !has("completed", "aborted"),
            "terminal states have no way out"
        );
        assert!(
            !has("paused", "completed"),
            "resume goes back only where a pause came from"
        );
        // apply canary 1, apply production 3 (promote is soaking → production again),
        // canary converged 1, production converged 1, pause 4, resume 4, abort 5, rollback 5.
        assert_eq!(exported.len(), 24, "{exported:?}");
    }
}
