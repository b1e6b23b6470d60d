//! `sluice_workspaces{tier,state}`, `sluice_hosts{state}` and
//! `sluice_agent_heartbeat_age_seconds{host}`: refreshed from the store on every scrape,
//! so they are never stale and need no loop of their own.

use prometheus::{IntGaugeVec, Opts};

use crate::domain::{HostState, Tier, WorkspaceState, host_state};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

#[derive(Clone)]
pub struct WorkspaceGauge(IntGaugeVec);

impl WorkspaceGauge {
    /// Registers the gauge; `None` if another part of the daemon already registered the name.
    pub fn register(metrics: &Metrics) -> Option<Self> {
        let g = IntGaugeVec::new(
            Opts::new(
                "sluice_workspaces",
                "Live workspaces by update tier and state.",
            ),
            &["tier", "state"],
        )
        .ok()?;
        metrics.registry().register(Box::new(g.clone())).ok()?;
        Some(Self(g))
    }

    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let counts = store.workspace_counts().await?;
        for t in Tier::ALL {
            for s in WorkspaceState::ALL {
                let n = counts
                    .iter()
                    .find(|(ct, cs, _)| ct == t && cs == s)
                    .map_or(0, |c| c.2);
                self.0.with_label_values(&[t.as_str(), s.as_str()]).set(n);
            }
        }
        Ok(())
    }
}

/// `sluice_hosts{state}` and `sluice_agent_heartbeat_age_seconds{host}`: refreshed from
/// the `hosts` table on every scrape, like [`WorkspaceGauge`].
#[derive(Clone)]
pub struct HostGauge {
    hosts: IntGaugeVec,
    age: prometheus::GaugeVec,
}

impl HostGauge {
    /// Registers both gauges; `None` if the names are taken already.
    pub fn register(metrics: &Metrics) -> Option<Self> {
        let hosts = IntGaugeVec::new(
            Opts::new(
                "sluice_hosts",
                "Registered Docker hosts by state (ready, cordoned, draining, down, unseen).",
            ),
            &["state"],
        )
        .ok()?;
        let age = prometheus::GaugeVec::new(
            Opts::new(
                "sluice_agent_heartbeat_age_seconds",
                "Seconds since each host's agent last heartbeated (absent: never).",
            ),
            &["host"],
        )
        .ok()?;
        metrics.registry().register(Box::new(hosts.clone())).ok()?;
        metrics.registry().register(Box::new(age.clone())).ok()?;
        Some(Self { hosts, age })
    }

    pub async fn refresh(
        &self,
        store: &Store,
        now: chrono::DateTime<chrono::Utc>,
        down_after: chrono::Duration,
    ) -> Result<(), StoreError> {
        let rows = store.hosts().await?;
        self.age.reset();
        for s in HostState::ALL {
            let n = rows
                .iter()
                .filter(|h| host_state(h.schedule, h.heartbeat_at, now, down_after) == *s)
                .count();
            self.hosts
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for h in &rows {
            if let Some(at) = h.heartbeat_at {
                #[allow(clippy::cast_precision_loss)] // reason: ages in ms are far below 2^52
                let secs = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                self.age.with_label_values(&[h.name.as_str()]).set(secs);
            }
        }
        Ok(())
    }
}
