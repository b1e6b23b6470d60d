//! `sluice_workspaces{tier,state}`: refreshed from the store on every scrape, so it is
//! never stale and needs no loop of its own.

use prometheus::{IntGaugeVec, Opts};

use crate::domain::{Tier, WorkspaceState};
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
