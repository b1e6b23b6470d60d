//! `sluice_leader` and `sluice_leader_changes_total`.

use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone, Debug)]
pub struct LeaderMetrics {
    leader: IntGauge,
    changes: IntCounter,
}

impl LeaderMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let leader = IntGauge::new(
            "sluice_leader",
            "1 while this instance leads (drives the loops), 0 on a standby.",
        )?;
        let changes = IntCounter::new(
            "sluice_leader_changes_total",
            "Times this instance started or stopped leading.",
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(changes.clone()))?;
        Ok(Self { leader, changes })
    }

    pub fn lead(&self, leading: bool) {
        let now = i64::from(leading);
        if self.leader.get() != now {
            self.leader.set(now);
            self.changes.inc();
        }
    }
}
