//! What the controller and the operator operations share: the store, the settings, the
//! wakers, the clock and the metrics; and [`RolloutDeps::commit`], the one way a rollout
//! decision is written.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::decide::Decision;
use super::metrics::RolloutMetrics;
use crate::clock::Clock;
use crate::config::RolloutSettings;
use crate::store::{Store, StoreError};
use crate::wake::Wakers;

#[derive(Clone)]
pub struct RolloutDeps {
    /// Where every rollout decision is read from and written to.
    pub store: Store,
    /// `[rollout]`: strategies, smoke checks, the automatic window.
    pub settings: Arc<RolloutSettings>,
    /// Wakes the reconciler after desired digests change, and the controller after
    /// operator writes.
    pub wakers: Wakers,
    /// The one source of `now` for decisions.
    pub clock: Arc<dyn Clock>,
    pub metrics: RolloutMetrics,
}

impl RolloutDeps {
    /// Applies `d` in one transaction (`Store::apply_rollout_changes`) and counts its
    /// transition; returns the rollout id.
    pub async fn commit(&self, d: &Decision, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let id = self.store.apply_rollout_changes(&d.changes, now).await?;
        // Agents on other hosts converge what a desired digest change asks; tell them
        // now rather than at their next timer (PostgreSQL; best effort, they also poll).
        if d.changes
            .iter()
            .any(|c| matches!(c, crate::domain::Change::Desired(_)))
            && let Err(e) = self.store.publish_wake().await
        {
            tracing::warn!(rollout = id, error = %e, "cannot publish a wake-up to the agents");
        }
        if let Some((from, to)) = d.transition {
            self.metrics
                .transitions
                .with_label_values(&[from.as_str(), to.as_str()])
                .inc();
        }
        Ok(id)
    }
}
