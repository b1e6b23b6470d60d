//! The watcher's Prometheus collectors, registered once into the daemon's registry.

use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Registry requests, probe durations, releases found and last successful probes.
#[derive(Clone)]
pub struct RegistryMetrics {
    /// `sluice_registry_requests_total{registry,kind,outcome}`.
    pub requests: IntCounterVec,
    /// `sluice_registry_probe_duration_seconds`: one tag resolution, all requests included.
    pub probe_duration: Histogram,
    /// `sluice_releases_detected_total`.
    pub releases_detected: IntCounter,
    /// `sluice_image_last_probe_success_timestamp_seconds{image}`.
    pub last_success: GaugeVec,
}

impl RegistryMetrics {
    /// Creates the collectors and registers them; fails if they already are.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.probe_duration.clone()))?;
        registry.register(Box::new(m.releases_detected.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        Ok(m)
    }

    /// Collectors registered nowhere (benchmarks, unit tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "sluice_registry_requests_total",
                    "Registry HTTP requests by registry, kind (head, get, token, manifest, blob) and outcome.",
                ),
                &["registry", "kind", "outcome"],
            )?,
            probe_duration: Histogram::with_opts(HistogramOpts::new(
                "sluice_registry_probe_duration_seconds",
                "Time to resolve one tracked image reference to a digest.",
            ))?,
            releases_detected: IntCounter::new(
                "sluice_releases_detected_total",
                "New digests of tracked images recorded as releases.",
            )?,
            last_success: GaugeVec::new(
                Opts::new(
                    "sluice_image_last_probe_success_timestamp_seconds",
                    "Unix time of the last successful probe of each tracked image reference.",
                ),
                &["image"],
            )?,
        })
    }

    pub fn request(&self, registry: &str, kind: &str, outcome: &str) {
        self.requests
            .with_label_values(&[registry, kind, outcome])
            .inc();
    }

    /// Total requests of `kind` so far, all registries and outcomes (benchmarks, tests).
    pub fn requests_of_kind(&self, kind: &str) -> u64 {
        let mut total = 0;
        for mf in prometheus::core::Collector::collect(&self.requests) {
            for m in mf.get_metric() {
                if m.get_label()
                    .iter()
                    .any(|l| l.name() == "kind" && l.value() == kind)
                {
                    total += m.get_counter().get_value() as u64;
                }
            }
        }
        total
    }
}
