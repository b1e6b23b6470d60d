//! Drift: what runs differs from what the store says. A missing or stopped container, a
//! container of another digest, and — for a container recreated behind sluice's back
//! (its id is not the one recorded) — settings that differ from the spec. Drift is
//! always reported (a `drift_detected` event, `sluice_drift_total{kind}`, the
//! workspace's `drift` fields); a workspace with `drift: correct` (the default) is put
//! back: its container is stopped and removed, and the next pass recreates it from the
//! spec through the update saga (volumes untouched, snapshotted first).

use super::*;
use crate::adopt::drift::differences;
use crate::domain::spec::DriftAction;
use crate::domain::{Digest, Health, WorkspaceState};
use crate::reconciler::container::{container_spec, running_digest};
use crate::reconciler::router::{Route, route_port};
use crate::runtime::{ContainerInfo, ContainerRuntime};
use crate::store::{Observed, Workspace};

impl<R: ContainerRuntime> Reconciler<R> {
    pub(super) async fn detect_drift(&self) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        for w in inner.store.workspaces_on(&inner.cfg.host).await? {
            let (Some(actual), Some(desired)) = (&w.actual_digest, &w.desired_digest) else {
                continue;
            };
            if actual != desired || w.state != WorkspaceState::Running {
                continue;
            }
            let Some(_guard) = self.try_lock(w.id) else {
                continue;
            };
            let cname = w.container_name();
            let c = inner.rt.inspect(&cname).await?;
            let now = inner.clock.now();
            let (reason, observed) = match &c {
                None => ("container missing", None),
                Some(c) if running_digest(c, &w) != Some(actual.as_str()) => (
                    "container changed",
                    c.digest_label().and_then(|d| Digest::parse(d).ok()),
                ),
                Some(c) if !c.running => {
                    let ev = event(
                        w.name.as_str(),
                        "drift_detected",
                        serde_json::json!({"reason": "container stopped", "action": "started"}),
                        None,
                    );
                    inner.metrics.drift.with_label_values(&["stopped"]).inc();
                    inner.store.append_event(&ev, now).await?;
                    inner.rt.start(&cname).await?;
                    continue;
                }
                Some(c) => {
                    self.follow_route(&w, c, actual).await;
                    self.configuration_drift(&w, c, actual).await?;
                    continue;
                }
            };
            tracing::warn!(workspace = %w.name, reason, "drift detected");
            inner.metrics.drift.with_label_values(&["container"]).inc();
            let ev = event(
                w.name.as_str(),
                "drift_detected",
                serde_json::json!({"reason": reason, "expected": actual, "found": observed}),
                None,
            );
            let obs = Observed {
                actual_digest: observed,
                container_id: c.map(|c| c.id),
                state: WorkspaceState::Missing,
                health: Health::Unknown,
            };
            inner.store.set_observed(w.id, &obs, Some(&ev), now).await?;
        }
        Ok(())
    }

    /// The `[router]` route follows the running container's address, which Docker may
    /// have changed behind sluice's back (a restart, a reconnected network). A route
    /// that cannot be sent is logged and tried again next pass.
    async fn follow_route(&self, w: &Workspace, c: &ContainerInfo, digest: &Digest) {
        let router = &self.inner.cfg.router;
        let (Some(address), Some(port)) = (c.ip.as_deref(), route_port(&w.spec)) else {
            return;
        };
        let route = Route {
            workspace: w.name.as_str(),
            container: &c.name,
            address,
            port,
            digest: digest.as_str(),
        };
        match router.follow(&route).await {
            Ok(true) => {
                tracing::info!(workspace = %w.name, address, port, "the route follows the container's address");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(workspace = %w.name, error = %e, "the router was not told of the container's address");
            }
        }
    }

    /// A running container of the right digest. The one the reconciler recorded is as
    /// it made it; another one (recreated by hand, by another tool) is compared with the
    /// spec field by field.
    async fn configuration_drift(
        &self,
        w: &Workspace,
        c: &ContainerInfo,
        actual: &Digest,
    ) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        let now = inner.clock.now();
        if w.container_id.as_deref() == Some(c.id.as_str()) {
            if !w.drift.is_empty() {
                inner.store.set_drift(w.id, &[], None, None, now).await?;
            }
            return Ok(());
        }
        let Some(running) = inner.rt.inspect_config(&c.id).await? else {
            return Ok(());
        };
        let fields = differences(&running, &container_spec(w, actual));
        if fields.is_empty() {
            // Recreated exactly as the spec says: take it as the workspace's.
            inner
                .store
                .set_drift(w.id, &[], Some(&c.id), None, now)
                .await?;
            return Ok(());
        }
        let correct = w.spec.drift == DriftAction::Correct;
        let known = w
            .drift
            .iter()
            .map(String::as_str)
            .eq(fields.iter().copied());
        if known && !correct {
            return Ok(());
        }
        tracing::warn!(workspace = %w.name, container = %c.id, fields = ?fields, correct, "configuration drift");
        inner
            .metrics
            .drift
            .with_label_values(&["configuration"])
            .inc();
        let ev = event(
            w.name.as_str(),
            "drift_detected",
            serde_json::json!({"reason": "configuration changed", "fields": fields,
                               "container": c.id,
                               "action": if correct { "recreated" } else { "reported" }}),
            None,
        );
        inner
            .store
            .set_drift(w.id, &fields, None, Some(&ev), now)
            .await?;
        if !correct {
            return Ok(());
        }
        let grace = w.spec.stop_timeout.map_or(inner.cfg.stop_timeout, |s| {
            std::time::Duration::from_secs(s.into())
        });
        inner.rt.stop(&c.id, grace).await?;
        inner.rt.remove(&c.id).await?;
        // No container now: the next pass recreates it from the spec (the saga).
        let obs = Observed {
            actual_digest: None,
            container_id: None,
            state: WorkspaceState::Missing,
            health: Health::Unknown,
        };
        inner.store.set_observed(w.id, &obs, None, now).await?;
        Ok(())
    }
}
