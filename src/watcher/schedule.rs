//! When to probe each tracked image: pure functions of `now`, the image's history and a
//! random number in `[0, 1)` handed in by the caller (so tests pin the jitter).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::PollSettings;
use crate::domain::ImageRef;

/// A `Retry-After` longer than this is treated as this (a registry asking for a week).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The probe schedule from `[poll]`.
#[derive(Clone, Debug)]
pub struct Policy {
    pub interval: Duration,
    /// Per-reference intervals (normalised reference → interval).
    pub overrides: HashMap<String, Duration>,
    /// Fraction of the delay added at random (0.0–1.0).
    pub jitter: f64,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Policy {
    /// From validated settings; an override whose reference does not parse is skipped
    /// (config validation already refused it).
    pub fn from_settings(poll: &PollSettings) -> Self {
        let overrides = poll
            .images
            .iter()
            .filter_map(|p| {
                ImageRef::parse_tracked(&p.image)
                    .ok()
                    .map(|r| (r.to_string(), p.interval))
            })
            .collect();
        Self {
            interval: poll.interval,
            overrides,
            jitter: poll.jitter.clamp(0.0, 1.0),
            backoff_initial: poll.backoff_initial,
            backoff_max: poll.backoff_max,
        }
    }

    /// The interval of `image` (normalised reference).
    pub fn interval_for(&self, image: &str) -> Duration {
        self.overrides.get(image).copied().unwrap_or(self.interval)
    }

    /// Next probe after a success: the interval plus up to `jitter` of it.
    pub fn after_success(&self, image: &str, now: DateTime<Utc>, unit: f64) -> DateTime<Utc> {
        let interval = self.interval_for(image);
        now + to_chrono(interval.mul_f64(1.0 + self.jitter * unit.clamp(0.0, 1.0)))
    }

    /// The backoff after `failures` consecutive failures (≥ 1): doubling from
    /// `backoff_initial`, jittered, never above `backoff_max`.
    pub fn backoff(&self, failures: u32, unit: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self
            .backoff_initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max);
        base.mul_f64(1.0 + self.jitter * unit.clamp(0.0, 1.0))
            .min(self.backoff_max)
    }

    /// Next probe after a failure. A rate-limited registry's `Retry-After` is honoured
    /// even beyond the backoff cap (up to [`MAX_RETRY_AFTER`]).
    pub fn after_failure(
        &self,
        failures: u32,
        retry_after: Option<Duration>,
        now: DateTime<Utc>,
        unit: f64,
    ) -> DateTime<Utc> {
        let backoff = self.backoff(failures, unit);
        let wait = match retry_after {
            Some(r) => backoff.max(r.min(MAX_RETRY_AFTER)),
            None => backoff,
        };
        now + to_chrono(wait)
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A reference with no next time (never probed) is due at once.
pub fn is_due(next_probe_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    next_probe_at.is_none_or(|t| t <= now)
}

/// Whether `image` (normalised) may be tracked under `[images] allow` (empty = all).
pub fn allowed(image: &str, allow: &[String]) -> bool {
    allow.is_empty() || allow.iter().any(|p| image.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy() -> Policy {
        Policy {
            interval: Duration::from_secs(300),
            overrides: HashMap::from([(
                "reg.example/app:stable".to_owned(),
                Duration::from_secs(60),
            )]),
            jitter: 0.1,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(600),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn success_waits_the_interval_plus_jitter() {
        let p = policy();
        let s = |image, unit| (p.after_success(image, t0(), unit) - t0()).num_seconds();
        assert_eq!(s("reg.example/other:1", 0.0), 300);
        assert_eq!(s("reg.example/other:1", 0.5), 315);
        assert_eq!(s("reg.example/app:stable", 0.0), 60, "per-image override");
        assert!(
            s("reg.example/other:1", 0.999) < 330,
            "jitter stays within its fraction"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        let b: Vec<u64> = (1..=8).map(|f| p.backoff(f, 0.0).as_secs()).collect();
        assert_eq!(b, [30, 60, 120, 240, 480, 600, 600, 600]);
        assert_eq!(
            p.backoff(u32::MAX, 0.99).as_secs(),
            600,
            "cap holds with jitter"
        );
        assert_eq!(p.backoff(1, 0.5).as_millis(), 31_500);
    }

    #[test]
    fn retry_after_is_honoured_even_past_the_cap() {
        let p = policy();
        let wait = |r| (p.after_failure(1, r, t0(), 0.0) - t0()).num_seconds();
        assert_eq!(wait(None), 30);
        assert_eq!(
            wait(Some(Duration::from_secs(5))),
            30,
            "never sooner than the backoff"
        );
        assert_eq!(
            wait(Some(Duration::from_secs(3600))),
            3600,
            "beyond backoff_max"
        );
        assert_eq!(
            wait(Some(Duration::from_secs(10 * 24 * 3600))),
            24 * 3600,
            "absurd values are bounded"
        );
    }

    #[test]
    fn due_and_allowed() {
        assert!(is_due(None, t0()));
        assert!(is_due(Some(t0()), t0()));
        assert!(!is_due(Some(t0() + chrono::Duration::seconds(1)), t0()));
        assert!(allowed("reg/x:1", &[]));
        assert!(allowed("reg/x:1", &["reg/".to_owned()]));
        assert!(!allowed("other/x:1", &["reg/".to_owned()]));
    }
}
