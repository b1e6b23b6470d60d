//! The reconciler's tunables, read from `[update]` and `[snapshots]`.

use std::time::Duration;

use crate::config::Settings;
use crate::domain::HostName;

/// Tunables, from `[update]` and `[snapshots]`.
#[derive(Clone, Debug)]
pub struct ReconcilerConfig {
    /// The Docker host this reconciler converges (`[agent] host`): it reads and changes
    /// only the workspaces placed there.
    pub host: HostName,
    pub stop_timeout: Duration,
    pub min_healthy_time: Duration,
    pub healthy_deadline: Duration,
    pub max_parallel: usize,
    pub reconcile_interval: Duration,
    pub require_snapshot: bool,
    pub health_poll: Duration,
    /// How long a failed step waits for an unreachable Docker before it counts.
    pub docker_outage_grace: Duration,
    /// Attempts of a rollback step that fails transiently before the workspace is
    /// quarantined (each after a backoff that starts at `retry_backoff` and doubles: 1 +
    /// 2 + 4 + 8 s by default): a hiccup must not quarantine.
    pub rollback_attempts: u32,
    pub retry_backoff: Duration,
    /// Test build only: run every step that succeeded a second time and fail it unless
    /// the second run changed nothing (the steps' idempotence, checked on real Docker).
    #[cfg(feature = "fault-injection")]
    pub repeat_steps: bool,
    /// After a stop is requested, how long running sagas may go on to their next journal
    /// point before they are aborted (`[update] shutdown_grace`).
    pub shutdown_grace: Duration,
    /// Where a start-first update switches traffic (`[router]`).
    pub router: super::router::Router,
    /// `[update] order`, and `[[rollout.images]] update_order` by image.
    pub order: crate::domain::spec::UpdateOrder,
    pub image_orders: Vec<(crate::domain::ImageRef, crate::domain::spec::UpdateOrder)>,
}

impl ReconcilerConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            host: s.agent.host.clone(),
            stop_timeout: s.update.stop_timeout,
            min_healthy_time: s.update.min_healthy_time,
            healthy_deadline: s.update.healthy_deadline,
            max_parallel: s.update.max_parallel.max(1) as usize,
            reconcile_interval: s.update.reconcile_interval,
            require_snapshot: s.snapshots.require_snapshot,
            health_poll: Duration::from_millis(250),
            docker_outage_grace: s.update.docker_outage_grace,
            rollback_attempts: 5,
            retry_backoff: Duration::from_secs(1),
            #[cfg(feature = "fault-injection")]
            repeat_steps: false,
            shutdown_grace: s.update.shutdown_grace,
            router: super::router::Router::new(s.router.clone()),
            order: s.update.order,
            image_orders: s
                .rollout
                .images
                .iter()
                .filter_map(|i| {
                    Some((
                        crate::domain::ImageRef::parse(&i.image).ok()?,
                        i.update_order?,
                    ))
                })
                .collect(),
        }
    }

    /// The update order for a workspace of `image` whose spec names none.
    pub fn default_order(
        &self,
        image: &crate::domain::ImageRef,
    ) -> crate::domain::spec::UpdateOrder {
        self.image_orders
            .iter()
            .find(|(i, _)| i == image)
            .map_or(self.order, |(_, o)| *o)
    }
}
