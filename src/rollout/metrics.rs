//! The controller's collectors, registered once in the shared registry.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

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
