//! Converging one workspace: taking a matching container as it is, or opening an update
//! and driving its saga.

use super::*;
use crate::domain::spec::UpdateOrder;
use crate::domain::{Digest, Health, WorkspaceName, WorkspaceState};
use crate::reconciler::container::{belongs_to, running_digest};
use crate::runtime::ContainerRuntime;
use crate::store::{Observed, StoreError};

impl<R: ContainerRuntime> Reconciler<R> {
    pub(super) async fn converge(
        &self,
        name: &str,
        rollout: Option<i64>,
    ) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        let wname = WorkspaceName::parse(name).map_err(|e| StoreError::Corrupt {
            what: "workspace",
            message: e.to_string(),
        })?;
        let w = inner.store.workspace(&wname).await?;
        let Some(desired) = w.desired_digest.clone() else {
            return Ok(());
        };
        let cname = w.container_name();
        let existing = inner.rt.inspect(&cname).await?;
        let now = inner.clock.now();
        // A pending restore_data must go through the saga even when the digest already
        // runs (its data is what has to change), and stop-first (a restore needs the
        // container stopped).
        let restore_pending = match rollout {
            Some(r) => inner
                .store
                .pending_restore(r, w.id, &desired)
                .await?
                .is_some(),
            None => false,
        };
        if let Some(c) = &existing {
            if !belongs_to(c, &w) {
                tracing::warn!(workspace = name, container = %cname, "a container sluice does not manage holds the name; not touching it");
                return Ok(());
            }
            if running_digest(c, &w) == Some(desired.as_str()) && !restore_pending {
                if !c.running {
                    inner.rt.start(&cname).await?;
                }
                let obs = Observed {
                    actual_digest: Some(desired.clone()),
                    container_id: Some(c.id.clone()),
                    state: WorkspaceState::Running,
                    health: Health::Unknown,
                };
                let ev = event(
                    name,
                    "workspace_adopted",
                    serde_json::json!({"digest": desired, "container": c.id}),
                    rollout,
                );
                inner.store.set_observed(w.id, &obs, Some(&ev), now).await?;
                tracing::info!(workspace = name, digest = %desired, "adopted existing container");
                return Ok(());
            }
        }
        let from = existing
            .as_ref()
            .and_then(|c| running_digest(c, &w))
            .and_then(|d| Digest::parse(d).ok())
            .or_else(|| w.actual_digest.clone());
        if inner.stopping() {
            // Stopping: no new journal row, no new saga.
            return Ok(());
        }
        // Start-first needs an old container that runs (else there is nothing to keep
        // serving) and no data to restore.
        let wanted =
            crate::domain::spec::effective_order(&w.spec, inner.cfg.default_order(&w.image));
        let order = match (&existing, wanted) {
            (Some(c), UpdateOrder::StartFirst)
                if c.running && from.is_some() && !restore_pending =>
            {
                UpdateOrder::StartFirst
            }
            _ => UpdateOrder::StopFirst,
        };
        let row = inner
            .store
            .open_update_ordered(w.id, rollout, from.as_ref(), &desired, order, now)
            .await?;
        tracing::info!(workspace = name, update = row.id, digest = %desired, "update started");
        inner.drive(row, w).await
    }
}
