//! The heartbeat task: records every `[agent] heartbeat_interval` that this host's agent
//! is alive, with its instance name and version. The control plane derives the host's
//! state from the age of the last one (`domain::host_state`).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::HostName;
use crate::store::{Store, StoreError};
use crate::task::{Action, Pass, Task};

pub struct Heartbeat {
    store: Store,
    clock: Arc<dyn Clock>,
    host: HostName,
    instance: String,
    every: Duration,
    /// `[agent] capacity` (None: not limited).
    capacity: Option<i64>,
    /// Whether the first pass still has to look for workspaces no host serves.
    check_placements: bool,
    /// The built-in host of `sluice run` registers itself (an agent's host must have
    /// been added by an operator, with a token).
    builtin: bool,
}

impl Heartbeat {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        host: HostName,
        instance: String,
        every: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            host,
            instance,
            every,
            capacity: None,
            check_placements: true,
            builtin: false,
        }
    }

    /// Reports `capacity` workspaces (0: not limited) with every heartbeat.
    #[must_use]
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = (capacity > 0).then_some(i64::from(capacity));
        self
    }

    /// For `sluice run`'s own host: registers it (without a token) when it is missing.
    #[must_use]
    pub fn builtin(mut self) -> Self {
        self.builtin = true;
        self
    }
}

impl Task for Heartbeat {
    const NAME: &'static str = "heartbeat";
    type Error = StoreError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, StoreError> {
        cx.worked_on(&self.host);
        let hb = crate::store::Heartbeat {
            host: &self.host,
            instance: &self.instance,
            version: env!("CARGO_PKG_VERSION"),
            capacity: self.capacity,
        };
        let now = self.clock.now();
        match self.store.heartbeat(&hb, now).await {
            Err(StoreError::NotFound { .. }) if self.builtin => {
                self.store.ensure_builtin_host(&self.host, now).await?;
                self.store.heartbeat(&hb, now).await?;
            }
            r => r?,
        }
        if std::mem::take(&mut self.check_placements) {
            for (host, n) in self.store.unregistered_placements().await? {
                tracing::error!(
                    host,
                    workspaces = n,
                    "workspaces are placed on a host that is not registered: no agent converges them (was [agent] host renamed?)"
                );
            }
        }
        Ok(Action::requeue(self.every))
    }

    /// A failed heartbeat is retried at the heartbeat's own pace, not backed off to 30 s:
    /// a host whose heartbeats lapse is taken for down.
    fn error_policy(&self, _error: &StoreError, backoff: Duration) -> Action {
        Action::requeue(backoff.min(self.every))
    }
}
