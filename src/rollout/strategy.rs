//! The strategy a rollout runs with, frozen into the rollout row when it is created so a
//! config change does not alter a rollout in flight. Pure data.

use serde::{Deserialize, Serialize};

use crate::config::{RolloutSettings, StrategyKind};
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
