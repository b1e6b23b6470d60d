//! Leadership: which instance drives the loops (controller, watcher, reconciler,
//! notifier) when several `sluice run` share one PostgreSQL database. Every instance
//! serves the API; exactly one leads.
//!
//! - **Election**: a session advisory lock on a connection of its own, plus the `leases`
//!   row whose `epoch` grows at every change of leader (`store::LeaseSession`).
//! - **Fencing**: the leader's loops write through a pool whose connections carry the
//!   epoch; the database refuses their writes once a newer epoch holds the lease
//!   (`migrations/postgres/0007_leadership.sql`).
//! - **Timing**: the leader renews every third of `leader.lease_ttl`. When two thirds
//!   passed without a renewal it exits, so that it starts no step after its lease runs out
//!   (the journal makes an exit at any point safe, as after a crash). A new leader starts
//!   no step before the previous lease has run out, and ends the session of a leader
//!   whose lease ran out while it still holds the lock (frozen, or cut off without the
//!   database noticing).
//! - **SQLite**: one daemon, which leads at once at epoch 0; nothing here runs.
//!
//! - **Wake-ups**: every instance's API publishes a wake-up after an operator's write;
//!   the leader's [`WakeRelay`] wakes its loops (`store::WakeListener`).
//!
//! The long-lived parts are [`Task`]s ([`LeaderTask`], [`WakeRelay`]).

mod metrics;
mod task;
mod wake_relay;

use std::sync::{Arc, Mutex};

pub use metrics::LeaderMetrics;
pub use task::{LeaderError, LeaderTask, OnLead, Released, release};
pub use wake_relay::WakeRelay;

/// Exit status of an instance that lost its lease (systemd restarts it as a standby).
pub const EXIT_LOST_LEADERSHIP: i32 = 3;

/// What this instance is, as shown by `/readyz` and `fleet show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Role {
    /// Serves the API; waits for the lease.
    Standby,
    /// Won the lease; waits for the previous one to run out before starting loops.
    Starting { epoch: i64 },
    /// Drives the loops.
    Leader { epoch: i64 },
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Starting { .. } => "starting",
            Self::Leader { .. } => "leader",
        }
    }

    pub fn epoch(self) -> Option<i64> {
        match self {
            Self::Standby => None,
            Self::Starting { epoch } | Self::Leader { epoch } => Some(epoch),
        }
    }
}

/// This instance's name and role, shared with the API.
#[derive(Clone, Debug)]
pub struct LeaderView {
    instance: Arc<str>,
    role: Arc<Mutex<Role>>,
}

impl LeaderView {
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.into(),
            role: Arc::new(Mutex::new(Role::Standby)),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn role(&self) -> Role {
        *self.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, role: Role) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = role;
    }
}
