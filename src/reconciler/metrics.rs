//! The reconciler's Prometheus collectors, registered into the daemon's one registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use crate::domain::{HostName, UpdatePhase};

#[derive(Clone)]
/// `sluice_workspaces{tier,state}` is not here: the API refreshes it from the store on
/// every scrape (`src/api/gauges.rs`), so it counts workspaces whatever loop moved them.
pub struct ReconcilerMetrics {
    pub updates: IntCounterVec,
    pub rollbacks: IntCounter,
    pub duration: Histogram,
    pub downtime: Histogram,
    pub snapshot_bytes: IntCounter,
    pub drift: IntCounterVec,
}

/// The `kind` label's values of `sluice_drift_total` (`drift.rs`).
const DRIFT_KINDS: [&str; 3] = ["container", "stopped", "configuration"];

const BUCKETS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

impl ReconcilerMetrics {
    /// Creates the collectors and registers them (a second registration is ignored, so
    /// tests can build several reconcilers on one registry).
    pub fn register(registry: &Registry) -> Self {
        Self::register_on(registry, &HostName::local())
    }

    /// The same, every series labelled `host` with the Docker host this reconciler
    /// converges (one reconciler per process, so a constant label).
    #[allow(clippy::missing_panics_doc)] // reason: static definitions are valid
    pub fn register_on(registry: &Registry, host: &HostName) -> Self {
        let labels: std::collections::HashMap<String, String> =
            [("host".to_owned(), host.to_string())].into();
        let opts = |name: &str, help: &str| Opts::new(name, help).const_labels(labels.clone());
        let hist = |name: &str, help: &str| {
            HistogramOpts::new(name, help)
                .const_labels(labels.clone())
                .buckets(BUCKETS.to_vec())
        };
        let m = Self {
            updates: IntCounterVec::new(
                opts(
                    "sluice_workspace_updates_total",
                    "Finished workspace updates by result (succeeded, rolled_back, failed, quarantined).",
                ),
                &["result"],
            )
            .expect("valid metric"),
            rollbacks: IntCounter::with_opts(opts("sluice_rollbacks_total", "Rollbacks started."))
                .expect("valid metric"),
            duration: Histogram::with_opts(hist(
                "sluice_update_duration_seconds",
                "Wall time of one update saga, pull to verdict.",
            ))
            .expect("valid metric"),
            downtime: Histogram::with_opts(hist(
                "sluice_update_downtime_seconds",
                "Time from stopping the old container to the new one passing its health gate.",
            ))
            .expect("valid metric"),
            snapshot_bytes: IntCounter::with_opts(opts(
                "sluice_snapshot_bytes_total",
                "Bytes of volume data snapshotted (each snapshot's whole size; the incremental store writes only what changed).",
            ))
            .expect("valid metric"),
            drift: IntCounterVec::new(
                opts(
                    "sluice_drift_total",
                    "Drift found between what runs and the store or spec, by kind (container: missing or another digest; stopped; configuration: settings differ from the spec).",
                ),
                &["kind"],
            )
            .expect("valid metric"),
        };
        // Every fixed label value exported at zero, so `increase()` and alerts see the
        // first update of each result and the first drift of each kind.
        for phase in UpdatePhase::ALL.iter().filter(|p| p.is_terminal()) {
            m.updates.with_label_values(&[phase.as_str()]);
        }
        for kind in DRIFT_KINDS {
            m.drift.with_label_values(&[kind]);
        }
        for c in [
            Box::new(m.updates.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.rollbacks.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.downtime.clone()),
            Box::new(m.snapshot_bytes.clone()),
            Box::new(m.drift.clone()),
        ] {
            let _ = registry.register(c);
        }
        m
    }
}
