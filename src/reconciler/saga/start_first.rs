//! The steps of a start-first update (`update_order = "start-first"`, table in
//! `reconciler::phases`): the new container is made and started beside the old one
//! under a staging name (`<name>.next`, a name no workspace container can have), joined
//! to the same networks without the aliases, and health gated; `stopping` then hands
//! over — the new container takes the workspace's network aliases and the `[router]`
//! route, the old one is stopped (gracefully: what it is serving finishes) and removed,
//! and the new one is renamed to the workspace's name. A rollback removes the new
//! container and makes sure the old one runs and is routed to again; the old container
//! was never stopped unless the failure came after the hand-over began, and its volumes
//! were never touched, so there is nothing to restore.
//!
//! Each step looks at what Docker shows first, so a repeat after a crash is harmless.

use super::Ctx;
use crate::domain::UpdatePhase;
use crate::reconciler::Inner;
use crate::reconciler::container::{belongs_to, running_digest};
use crate::reconciler::router::{Route, route_port};
use crate::reconciler::step_error::StepError;
use crate::runtime::{ContainerRuntime, ContainerSpec};
use crate::store::UpdateRow;

/// The staging name of the new container of workspace container `name`.
pub(crate) fn staged_name(name: &str) -> String {
    format!("{name}.next")
}

/// The new container's spec while it is staged: its own name, and no network aliases
/// (it takes them over only when it is handed the traffic).
fn staged_spec(ctx: &Ctx<'_>) -> ContainerSpec {
    let mut s = ctx.to.clone();
    s.name = ctx.staged.clone();
    for a in &mut s.networks {
        a.aliases.clear();
    }
    s
}

impl<R: ContainerRuntime> Inner<R> {
    pub(super) async fn step_start_first(
        &self,
        phase: UpdatePhase,
        ctx: &Ctx<'_>,
        row: &mut UpdateRow,
    ) -> Result<(), StepError> {
        match phase {
            UpdatePhase::Pulling => {
                self.rt
                    .ensure_image(&ctx.to.image)
                    .await
                    .map_err(|e| StepError::from(e).context("pull"))?;
                if ctx.w.spec.snapshot_on_start_first {
                    self.backup_possible(ctx).await?;
                }
            }
            // Taken while the old container runs: as consistent as the application's
            // files are at any instant (see the docs), never a stop.
            UpdatePhase::Snapshotting if ctx.w.spec.snapshot_on_start_first => {
                self.snapshot_all(ctx, row).await?;
            }
            UpdatePhase::Snapshotting => {}
            UpdatePhase::Recreating => {
                self.ensure_container(&ctx.staged, &staged_spec(ctx), ctx.w)
                    .await?;
            }
            UpdatePhase::Starting => self.rt.start(&ctx.staged).await.map_err(StepError::from)?,
            UpdatePhase::HealthChecking => self.gate_on(ctx, &ctx.staged).await?,
            UpdatePhase::Stopping => self.hand_over(ctx).await?,
            UpdatePhase::RollingBack => {
                self.metrics.rollbacks.inc();
                self.take_back(ctx).await?;
            }
            UpdatePhase::Verifying => self.gate_on(ctx, &ctx.name).await?,
            other => {
                return Err(StepError::Permanent(format!(
                    "phase {other} is not part of a start-first update"
                )));
            }
        }
        Ok(())
    }

    /// Traffic to the new container, the old one retired, the name handed over.
    async fn hand_over(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        let to = ctx.row.to_digest.as_str();
        let Some(new) = self
            .rt
            .inspect(&ctx.staged)
            .await
            .map_err(StepError::from)?
        else {
            // Renamed already (a repeated step): the workspace's name runs the new digest.
            return match self.rt.inspect(&ctx.name).await.map_err(StepError::from)? {
                Some(c) if running_digest(&c, ctx.w) == Some(to) => Ok(()),
                _ => Err(format!("the new container {} is gone", ctx.staged).into()),
            };
        };
        self.route_to(ctx, &ctx.staged, new.ip.as_deref(), to)
            .await?;
        if let Some(old) = self.rt.inspect(&ctx.name).await.map_err(StepError::from)? {
            if old.running {
                tokio::time::sleep(self.cfg.router.drain()).await;
            }
            if !belongs_to(&old, ctx.w) {
                return Err(format!("container {} is not managed by sluice", ctx.name).into());
            }
            self.stop_if_running(&ctx.name, self.stop_grace(ctx))
                .await?;
            self.rt.remove(&ctx.name).await.map_err(StepError::from)?;
        }
        self.rt
            .rename(&ctx.staged, &ctx.name)
            .await
            .map_err(StepError::from)
    }

    /// The old container runs and is routed to; the new one is gone.
    async fn take_back(&self, ctx: &Ctx<'_>) -> Result<(), StepError> {
        let from = ctx.from.as_ref().ok_or(StepError::NothingToRevert)?;
        // The old container is there unless the hand-over had already removed it: then it
        // is made again from its spec (the volumes it used were never touched).
        self.rt
            .ensure_image(&from.image)
            .await
            .map_err(StepError::from)?;
        self.ensure_container(&ctx.name, from, ctx.w).await?;
        self.rt.start(&ctx.name).await.map_err(StepError::from)?;
        let ip = self
            .rt
            .inspect(&ctx.name)
            .await
            .map_err(StepError::from)?
            .and_then(|c| c.ip);
        let back = ctx.row.from_digest.as_ref().map_or("", |d| d.as_str());
        // The old container runs and is healthy: a proxy that cannot be told so (the
        // router failing again, often the very failure being undone) is an operator's
        // to fix, loudly, not a reason to quarantine a workspace that serves.
        if let Err(e) = self.route_to(ctx, &ctx.name, ip.as_deref(), back).await {
            if matches!(e, StepError::Permanent(ref m) if m.starts_with("router:")) {
                tracing::error!(workspace = %ctx.w.name, update = ctx.row.id, error = %e, "the router was not told of the rollback; the proxy may still point at the new container");
            } else {
                return Err(e);
            }
        }
        self.rt.remove(&ctx.staged).await.map_err(StepError::from)
    }

    /// After a stop-first update (or its rollback) the workspace's container is a new one
    /// with a new address: the `[router]` route follows it. The update has already ended
    /// (the container is healthy), so a route that fails is logged, not rolled back.
    pub(super) async fn reroute(&self, ctx: &Ctx<'_>, digest: &str) {
        if ctx.order == crate::domain::spec::UpdateOrder::StartFirst
            || !self.cfg.router.is_configured()
        {
            return;
        }
        let ip = match self.rt.inspect(&ctx.name).await {
            Ok(Some(c)) => c.ip,
            _ => None,
        };
        if let Err(e) = self.route_to(ctx, &ctx.name, ip.as_deref(), digest).await {
            tracing::error!(workspace = %ctx.w.name, update = ctx.row.id, error = %e, "the router was not told of the workspace's new container");
        }
    }

    /// Gives `container` the workspace's network aliases and the `[router]` route.
    async fn route_to(
        &self,
        ctx: &Ctx<'_>,
        container: &str,
        ip: Option<&str>,
        digest: &str,
    ) -> Result<(), StepError> {
        for a in ctx.to.networks.iter().filter(|a| !a.aliases.is_empty()) {
            self.rt
                .attach(container, a)
                .await
                .map_err(StepError::from)?;
        }
        let router = &self.cfg.router;
        if !router.is_configured() {
            return Ok(());
        }
        let (Some(address), Some(port)) = (ip, route_port(&ctx.w.spec)) else {
            return Err(StepError::Permanent(format!(
                "router: no address or port for {container} (the port is health.http.port, \
                 health.tcp.port or ports[0].container)"
            )));
        };
        crate::fault::point("route.before").await;
        let result = router
            .switch(&Route {
                workspace: ctx.w.name.as_str(),
                container,
                address,
                port,
                digest,
            })
            .await
            .map_err(|e| StepError::Permanent(format!("router: {e}")));
        crate::fault::point("route.after").await;
        result
    }
}
