//! `[rollout]`: how a release is rolled out (strategy, per-image overrides, smoke checks).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Waves of `batch`, at most `max_parallel` at once, `pause_between_waves` apart.
    #[default]
    Rolling,
    /// One workspace at a time.
    OneAtATime,
    /// Everything at once, failures skipped: the emergency path.
    Immediate,
}

/// What a rollout does with the targets of a host that stayed down past `host_timeout`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostTimeoutPolicy {
    /// Keep waiting: the tier does not converge until the host is back.
    #[default]
    Wait,
    /// Mark them `skipped` (with the reason) so the rest of the rollout can finish.
    Skip,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutSettings {
    /// How long canaries must stay healthy before production may start.
    #[serde(with = "humantime_serde")]
    pub soak: Duration,
    /// Go from soaking to production without an operator once the soak passes.
    pub auto_promote: bool,
    /// Maintenance window for automatic rollouts, UTC hours `"HH:MM-HH:MM"`; empty = always.
    pub window: Option<String>,
    pub strategy: StrategyKind,
    /// Wave size: a count (`"3"`) or a share of the tier (`"25%"`).
    pub batch: String,
    /// Updates running at once within a rollout.
    pub max_parallel: u32,
    /// Updates running at once on one Docker host, when a rollout spans several hosts
    /// (never all of a host's targets at once while it has two or more).
    pub max_parallel_per_host: u32,
    /// How long a rollout waits for a host that is down before `on_host_timeout` applies.
    #[serde(with = "humantime_serde")]
    pub host_timeout: Duration,
    /// `wait` (default) or `skip` the targets of a host down for longer than `host_timeout`.
    pub on_host_timeout: HostTimeoutPolicy,
    #[serde(with = "humantime_serde")]
    pub pause_between_waves: Duration,
    /// Failed workspaces tolerated before the rollout aborts.
    pub max_failures: u32,
    /// Failed share of the tier tolerated before the rollout aborts (0.0–1.0).
    pub max_failure_ratio: f64,
    /// Extra attempts per workspace before it counts as failed.
    pub retries: u32,
    /// Per-image strategy overrides: `[[rollout.images]] image = "reg/app:stable"`.
    pub images: Vec<RolloutImage>,
    /// Per-image canary smoke checks run during the soak: `[[rollout.smoke]]`.
    pub smoke: Vec<SmokeCheck>,
    /// The Prometheus that `analysis` checks ask.
    pub prometheus: super::analysis_types::PrometheusSettings,
    /// Metric checks gating the soak (and, per check, each production wave).
    pub analysis: Vec<super::analysis_types::AnalysisCheck>,
    /// How often the controller re-reads every rollout without a wake-up.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
}

/// Strategy fields that differ for one tracked image; unset fields use `[rollout]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutImage {
    /// The tracked `repo:tag`, exactly as the workspaces name it.
    pub image: String,
    #[serde(default)]
    pub strategy: Option<StrategyKind>,
    #[serde(default)]
    pub batch: Option<String>,
    #[serde(default)]
    pub max_parallel: Option<u32>,
    #[serde(default)]
    pub max_parallel_per_host: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub soak: Option<Duration>,
    /// The update order of this image's workspaces that name none (see `[update] order`).
    #[serde(default)]
    pub update_order: Option<crate::domain::spec::UpdateOrder>,
}

/// An HTTP GET run against every canary of `image` during the soak.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    pub image: String,
    /// Path requested on the workspace's health port, e.g. `/version`.
    pub path: String,
    /// Expected HTTP status (default 200).
    #[serde(default = "default_smoke_status")]
    pub status: u16,
    /// When set, the body must contain this text.
    #[serde(default)]
    pub body_contains: Option<String>,
}

fn default_smoke_status() -> u16 {
    200
}

impl Default for RolloutSettings {
    fn default() -> Self {
        Self {
            soak: Duration::from_secs(600),
            auto_promote: false,
            window: None,
            strategy: StrategyKind::Rolling,
            batch: "25%".to_owned(),
            max_parallel: 4,
            max_parallel_per_host: 1,
            host_timeout: Duration::from_secs(600),
            on_host_timeout: HostTimeoutPolicy::Wait,
            pause_between_waves: Duration::from_secs(30),
            max_failures: 1,
            max_failure_ratio: 0.1,
            retries: 0,
            images: Vec::new(),
            smoke: Vec::new(),
            prometheus: super::analysis_types::PrometheusSettings::default(),
            analysis: Vec::new(),
            tick_interval: Duration::from_secs(5),
        }
    }
}
