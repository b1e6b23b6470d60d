//! The strategy a rollout runs with, frozen into the rollout row when it is created so a
//! config change does not alter a rollout in flight. Pure data.

use serde::{Deserialize, Serialize};

use crate::config::{HostTimeoutPolicy, RolloutSettings, StrategyKind};
use crate::domain::{BatchSize, ParseError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Strategy {
    pub kind: StrategyKind,
    /// Wave size as configured (`"3"` or `"25%"`).
    pub batch: String,
    pub max_parallel: u32,
    pub pause_between_waves_ms: i64,
    pub max_failures: u32,
    pub max_failure_ratio: f64,
    pub retries: u32,
    pub soak_ms: i64,
    pub auto_promote: bool,
    /// Updates in flight on one host when the rollout spans several hosts. Rollouts
    /// stored before hosts existed read the defaults of these three fields.
    #[serde(default = "one")]
    pub max_parallel_per_host: u32,
    /// How long a down host is waited for before `on_host_timeout` applies.
    #[serde(default = "default_host_timeout_ms")]
    pub host_timeout_ms: i64,
    #[serde(default)]
    pub on_host_timeout: HostTimeoutPolicy,
}

fn one() -> u32 {
    1
}

fn default_host_timeout_ms() -> i64 {
    600_000
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Strategy {
    /// The strategy for `image`: `[rollout]`, with a matching `[[rollout.images]]` entry's
    /// fields taking precedence.
    pub fn for_image(s: &RolloutSettings, image: &str) -> Self {
        let mut out = Self {
            kind: s.strategy,
            batch: s.batch.clone(),
            max_parallel: s.max_parallel,
            pause_between_waves_ms: millis(s.pause_between_waves),
            max_failures: s.max_failures,
            max_failure_ratio: s.max_failure_ratio,
            retries: s.retries,
            soak_ms: millis(s.soak),
            auto_promote: s.auto_promote,
            max_parallel_per_host: s.max_parallel_per_host,
            host_timeout_ms: millis(s.host_timeout),
            on_host_timeout: s.on_host_timeout,
        };
        if let Some(o) = s.images.iter().find(|o| o.image == image) {
            if let Some(k) = o.strategy {
                out.kind = k;
            }
            if let Some(b) = &o.batch {
                out.batch.clone_from(b);
            }
            if let Some(p) = o.max_parallel {
                out.max_parallel = p;
            }
            if let Some(p) = o.max_parallel_per_host {
                out.max_parallel_per_host = p;
            }
            if let Some(d) = o.soak {
                out.soak_ms = millis(d);
            }
        }
        out
    }

    /// `apply all`: everything at once, failures skipped.
    pub fn emergency(mut self) -> Self {
        self.kind = StrategyKind::Immediate;
        self
    }

    pub fn batch_size(&self) -> Result<BatchSize, ParseError> {
        BatchSize::parse(&self.batch)
    }

    /// Wave length for a tier of `total` targets.
    pub fn wave_len(&self, total: usize) -> usize {
        match self.kind {
            StrategyKind::Immediate => total.max(1),
            StrategyKind::OneAtATime => 1,
            StrategyKind::Rolling => self.batch_size().map_or(1, |b| b.wave_len(total)).max(1),
        }
    }

    /// Updates in flight at once.
    pub fn parallel(&self) -> usize {
        match self.kind {
            StrategyKind::Immediate => usize::MAX,
            StrategyKind::OneAtATime => 1,
            StrategyKind::Rolling => self.max_parallel.max(1) as usize,
        }
    }

    /// Updates in flight at once on one host that has `host_targets` live targets in the
    /// tier being rolled, when the rollout spans two or more hosts: at most
    /// `max_parallel_per_host`, and never every one of a host's targets at once while it
    /// has two or more, so part of each host keeps serving through the update.
    /// `immediate` (the emergency path) has no per-host limit, as it has no `max_parallel`.
    pub fn per_host_parallel(&self, host_targets: usize) -> usize {
        if self.kind == StrategyKind::Immediate {
            return usize::MAX;
        }
        let cap = self.max_parallel_per_host.max(1) as usize;
        cap.min(host_targets.saturating_sub(1)).max(1)
    }

    /// At most how many updates one pass can start, when that is a bound (not `immediate`).
    pub fn start_window(&self) -> Option<usize> {
        let parallel = self.parallel();
        (parallel != usize::MAX).then_some(parallel)
    }

    /// Whether the failure thresholds abort the rollout (`immediate` skips failures).
    pub fn aborts_on_failure(&self) -> bool {
        self.kind != StrategyKind::Immediate
    }

    /// True when `failed` out of `total` is past the tolerated count or share.
    pub fn past_threshold(&self, failed: usize, total: usize) -> bool {
        if failed == 0 || total == 0 {
            return false;
        }
        #[allow(clippy::cast_precision_loss)] // reason: workspace counts are far below 2^52
        let ratio = failed as f64 / total as f64;
        failed > self.max_failures as usize || ratio > self.max_failure_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strategy_stored_before_hosts_reads_the_host_defaults() {
        let old = r#"{"kind":"rolling","batch":"25%","max_parallel":4,"pause_between_waves_ms":0,
            "max_failures":1,"max_failure_ratio":0.1,"retries":0,"soak_ms":0,"auto_promote":false}"#;
        let s: Strategy = serde_json::from_str(old).unwrap();
        assert_eq!(s.max_parallel_per_host, 1);
        assert_eq!(s.host_timeout_ms, 600_000);
        assert_eq!(s.on_host_timeout, HostTimeoutPolicy::Wait);
    }

    #[test]
    fn per_host_parallel_never_takes_a_whole_host_with_two_or_more_targets() {
        let mut s = Strategy::for_image(&RolloutSettings::default(), "x");
        s.max_parallel_per_host = 3;
        assert_eq!(s.per_host_parallel(1), 1);
        assert_eq!(s.per_host_parallel(2), 1);
        assert_eq!(s.per_host_parallel(3), 2);
        assert_eq!(s.per_host_parallel(10), 3);
        s.kind = StrategyKind::Immediate;
        assert_eq!(s.per_host_parallel(2), usize::MAX);
    }

    #[test]
    fn image_overrides_set_the_per_host_limit() {
        let mut settings = RolloutSettings::default();
        settings.images.push(crate::config::RolloutImage {
            image: "reg/app:1".to_owned(),
            strategy: None,
            batch: None,
            max_parallel: None,
            max_parallel_per_host: Some(2),
            soak: None,
            update_order: None,
        });
        assert_eq!(
            Strategy::for_image(&settings, "reg/app:1").max_parallel_per_host,
            2
        );
        assert_eq!(
            Strategy::for_image(&settings, "reg/other:1").max_parallel_per_host,
            1
        );
    }
}
