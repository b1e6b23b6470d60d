//! `[hosts]`: how the controller judges the fleet's Docker hosts (see `src/domain/host.rs`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostsSettings {
    /// A host whose agent has not heartbeated for this long is `down`: rollouts start
    /// nothing there and wait for it (`[rollout] host_timeout`, `on_host_timeout`).
    #[serde(with = "humantime_serde")]
    pub down_after: Duration,
}

impl Default for HostsSettings {
    fn default() -> Self {
        Self {
            down_after: Duration::from_secs(30),
        }
    }
}

/// Bounds of `hosts.down_after`: shorter than a couple of heartbeats would flap, longer
/// than an hour would leave rollouts starting work on hosts long gone.
pub const DOWN_AFTER_MIN: Duration = Duration::from_secs(2);
pub const DOWN_AFTER_MAX: Duration = Duration::from_secs(3600);

impl HostsSettings {
    /// `down_after` as a `chrono` duration, for `domain::host_state`.
    pub fn down_after(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.down_after).unwrap_or(chrono::Duration::MAX)
    }

    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(DOWN_AFTER_MIN..=DOWN_AFTER_MAX).contains(&self.down_after) {
            return Err((
                "hosts.down_after",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(DOWN_AFTER_MIN),
                    humantime::format_duration(DOWN_AFTER_MAX)
                ),
            ));
        }
        Ok(())
    }
}
