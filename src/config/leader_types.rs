//! `[leader]`: how instances sharing one PostgreSQL database elect the one that drives
//! the loops (see `src/leader/`). Ignored on SQLite, where the one daemon always leads.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderSettings {
    /// How long a lease lasts without renewal. The leader renews every third of it and
    /// stops (exits) when two thirds passed without a renewal; a standby takes over at
    /// the latest one lease after the leader's last renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// This instance's name in the lease, the audit trail and `/readyz`; empty means
    /// `<hostname>-<pid>`.
    pub instance: String,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(15),
            instance: String::new(),
        }
    }
}

/// Bounds of `leader.lease_ttl`.
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(2);
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(300);

impl LeaderSettings {
    /// The configured name, or `<hostname>-<pid>`.
    pub fn instance_name(&self) -> String {
        if !self.instance.is_empty() {
            return self.instance.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sluice".to_owned());
        format!("{host}-{}", std::process::id())
    }

    /// How often the leader renews its lease.
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// How long after its last renewal a leader still starts work.
    pub fn step_down_after(&self) -> Duration {
        self.lease_ttl * 2 / 3
    }

    /// How often a standby tries for the lock.
    pub fn standby_poll(&self) -> Duration {
        (self.lease_ttl / 5).min(Duration::from_secs(1))
    }

    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(LEASE_TTL_MIN..=LEASE_TTL_MAX).contains(&self.lease_ttl) {
            return Err((
                "leader.lease_ttl",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(LEASE_TTL_MIN),
                    humantime::format_duration(LEASE_TTL_MAX)
                ),
            ));
        }
        if self.instance.len() > 128 || self.instance.chars().any(|c| c.is_control()) {
            return Err((
                "leader.instance",
                "must be at most 128 characters, without control characters".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timings_follow_the_lease() {
        let s = LeaderSettings {
            lease_ttl: Duration::from_secs(15),
            instance: String::new(),
        };
        assert_eq!(s.renew_every(), Duration::from_secs(5));
        assert_eq!(s.step_down_after(), Duration::from_secs(10));
        assert_eq!(s.standby_poll(), Duration::from_secs(1));
        assert!(
            s.step_down_after() < s.lease_ttl,
            "a leader steps down before its lease ends"
        );
        let short = LeaderSettings {
            lease_ttl: Duration::from_secs(3),
            ..s.clone()
        };
        assert_eq!(short.standby_poll(), Duration::from_millis(600));
    }

    #[test]
    fn an_empty_instance_name_is_the_host_and_pid() {
        let s = LeaderSettings::default();
        let name = s.instance_name();
        assert!(
            name.ends_with(&format!("-{}", std::process::id())),
            "{name}"
        );
        let named = LeaderSettings {
            instance: "ctl-1".to_owned(),
            ..s
        };
        assert_eq!(named.instance_name(), "ctl-1");
    }
}
