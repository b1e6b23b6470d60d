//! Rollouts across Docker hosts: where each host of a rollout stands, whether a target
//! waits for its host, and how many updates a host may run at once. Pure: the caller
//! hands in the `hosts` rows (plain data), `now` and `[hosts] down_after`.
//!
//! A target *waits for its host* while it is `pending` or `updating` and its host is not
//! `ready` (down, unseen, cordoned or draining). That is derived on every pass and in the
//! views, never stored. Waiting is not failing: it never counts toward the failure
//! thresholds, and an `updating` target on a host that went down simply has no outcome
//! yet (its agent resumes the update from the journal when it returns).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::plan::TargetView;
use super::strategy::Strategy;
use crate::config::HostTimeoutPolicy;
use crate::domain::{HostName, HostState, TargetStatus, host_state};
use crate::store::HostRow;

/// Where one host stands for the planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostView {
    pub state: HostState,
    /// The last heartbeat of a `down` host (when it went quiet); `None` otherwise.
    pub down_since: Option<DateTime<Utc>>,
}

const READY: HostView = HostView {
    state: HostState::Ready,
    down_since: None,
};

/// The state of every registered host at one instant.
#[derive(Clone, Debug, Default)]
pub struct HostStates {
    hosts: HashMap<HostName, HostView>,
}

impl HostStates {
    /// From the `hosts` rows, judged at `now` with `down_after`.
    pub fn from_rows(rows: &[HostRow], now: DateTime<Utc>, down_after: Duration) -> Self {
        let hosts = rows
            .iter()
            .map(|h| {
                let state = host_state(h.schedule, h.heartbeat_at, now, down_after);
                let down_since = (state == HostState::Down)
                    .then_some(h.heartbeat_at)
                    .flatten();
                (h.name.clone(), HostView { state, down_since })
            })
            .collect();
        Self { hosts }
    }

    /// Whether any host is registered. An install that never registered one runs as
    /// before hosts existed: every workspace's host counts as ready.
    pub fn registered(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether at most one host is registered (the single-host default registers its own)
    /// and it is ready: no per-host limit applies and no target waits, so a pass plans
    /// on the reduced read exactly as on every target.
    pub fn at_most_one_ready(&self) -> bool {
        self.hosts.len() <= 1 && self.hosts.values().all(|h| h.state == HostState::Ready)
    }

    /// Where `host` stands: `unseen` when hosts are registered but not this one.
    pub fn of(&self, host: &HostName) -> HostView {
        if !self.registered() {
            return READY;
        }
        self.hosts.get(host).copied().unwrap_or(HostView {
            state: HostState::Unseen,
            down_since: None,
        })
    }
}

/// True when `t` (with status `status` in this pass) cannot go on until its host is ready.
pub fn waits_for_host(t: &TargetView, status: TargetStatus) -> bool {
    matches!(status, TargetStatus::Pending | TargetStatus::Updating)
        && t.host_state != HostState::Ready
}

/// Why `t` is to be skipped for its host, if its host has been down for longer than
/// `host_timeout` and the policy is `skip`. Hosts never seen, cordoned or draining are
/// waited for without a timeout (nothing says they are gone).
pub fn skip_for_host(strategy: &Strategy, t: &TargetView, now: DateTime<Utc>) -> Option<String> {
    if strategy.on_host_timeout != HostTimeoutPolicy::Skip
        || t.stand_in
        || t.host_state != HostState::Down
    {
        return None;
    }
    let since = t.host_down_since?;
    let timeout = Duration::milliseconds(strategy.host_timeout_ms);
    (now - since > timeout).then(|| {
        format!(
            "host {} down since {} (longer than host_timeout {}s)",
            t.host,
            since.to_rfc3339_opts(SecondsFormat::Secs, true),
            strategy.host_timeout_ms / 1000
        )
    })
}

/// Updates in flight per host against each host's limit
/// ([`Strategy::per_host_parallel`]). The limit applies only when the rollout's live
/// targets span two or more hosts; on one host `max_parallel` alone governs.
pub struct HostSlots<'a> {
    limited: bool,
    /// Per host: (live targets in scope, updates in flight).
    hosts: BTreeMap<&'a HostName, (usize, usize)>,
}

impl<'a> HostSlots<'a> {
    /// `status` is each target's status in this pass; `in_scope` the live targets of the
    /// tier being rolled. In-flight updates count whatever their tier.
    pub fn new(targets: &'a [TargetView], status: &[TargetStatus], in_scope: &[usize]) -> Self {
        let mut hosts: BTreeMap<&HostName, (usize, usize)> = BTreeMap::new();
        for (t, s) in targets.iter().zip(status) {
            if *s == TargetStatus::Skipped {
                continue;
            }
            let e = hosts.entry(&t.host).or_default();
            if *s == TargetStatus::Updating {
                e.1 += 1;
            }
        }
        let limited = hosts.len() >= 2;
        for &i in in_scope {
            if let Some(e) = hosts.get_mut(&targets[i].host) {
                e.0 += 1;
            }
        }
        Self { limited, hosts }
    }

    /// Whether one more update may start on `host`.
    pub fn has_room(&self, strategy: &Strategy, host: &HostName) -> bool {
        if !self.limited {
            return true;
        }
        let (total, busy) = self.hosts.get(host).copied().unwrap_or((0, 0));
        busy < strategy.per_host_parallel(total)
    }

    /// Counts an update started on `host`.
    pub fn take(&mut self, host: &HostName) {
        if let Some(e) = self.hosts.get_mut(host) {
            e.1 += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HostSchedule;

    fn row(name: &str, heartbeat_secs_ago: i64, now: DateTime<Utc>) -> HostRow {
        HostRow {
            name: HostName::parse(name).unwrap(),
            labels: Default::default(),
            capacity: None,
            schedule: HostSchedule::Active,
            has_token: true,
            agent_instance: None,
            agent_version: None,
            heartbeat_at: Some(now - Duration::seconds(heartbeat_secs_ago)),
            created_at: now,
        }
    }

    /// The reduced read is kept only where it plans like the full one: no host, or one
    /// host that is up.
    #[test]
    fn only_a_lone_ready_host_keeps_the_reduced_read() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let down_after = Duration::seconds(30);
        let states = |rows: &[HostRow]| HostStates::from_rows(rows, now, down_after);
        assert!(states(&[]).at_most_one_ready());
        assert!(states(&[row("a", 1, now)]).at_most_one_ready());
        assert!(!states(&[row("a", 60, now)]).at_most_one_ready(), "down");
        assert!(
            !states(&[row("a", 1, now), row("b", 1, now)]).at_most_one_ready(),
            "two hosts"
        );
    }
}
