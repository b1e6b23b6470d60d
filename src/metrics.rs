//! One Prometheus registry for the whole daemon. Each loop registers its own collectors
//! here at startup; `/metrics` renders the registry.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Every long-lived task's passes (`crate::task::Driver`).
    tasks: TaskMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new(
                "sluice_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("static metric definition is valid");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry
            .register(Box::new(build.clone()))
            .expect("registered once");
        let tasks = TaskMetrics::unregistered();
        registry
            .register(Box::new(tasks.pass_seconds.clone()))
            .expect("registered once");
        registry
            .register(Box::new(tasks.errors.clone()))
            .expect("registered once");
        Self { registry, tasks }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The task driver's metrics, registered in this registry.
    pub fn tasks(&self) -> &TaskMetrics {
        &self.tasks
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What the task driver measures, per task (`task` label = `Task::NAME`).
#[derive(Clone)]
pub struct TaskMetrics {
    /// `sluice_task_pass_seconds{task}`: how long each pass took.
    pub pass_seconds: HistogramVec,
    /// `sluice_task_errors_total{task}`: passes that failed.
    pub errors: IntCounterVec,
}

impl TaskMetrics {
    /// Collectors in no registry (tests, benchmarks); [`Metrics::tasks`] is the daemon's.
    pub fn unregistered() -> Self {
        let pass_seconds = HistogramVec::new(
            HistogramOpts::new(
                "sluice_task_pass_seconds",
                "Duration of one pass of a long-lived task.",
            )
            .buckets(vec![
                0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0,
            ]),
            &["task"],
        )
        .expect("static metric definition is valid");
        let errors = IntCounterVec::new(
            Opts::new(
                "sluice_task_errors_total",
                "Failed passes of a long-lived task.",
            ),
            &["task"],
        )
        .expect("static metric definition is valid");
        Self {
            pass_seconds,
            errors,
        }
    }
}
