//! The rollout controller loop: level-triggered, one pass at a time.
//!
//! Each pass re-reads every rollout that needs looking at, plans it from a snapshot
//! ([`super::plan::plan`]) and commits the plan in one transaction guarded by the rollout's
//! version. It then supersedes stale queued releases and, in fleet mode `auto` inside
//! `[rollout] window`, starts rollouts by itself. A pass is woken by its timer, by
//! `Wakers::controller` (API writes, reconciler results, new releases) or ends on the
//! cancellation token. All state lives in the store, so a restart continues where the
//! previous process stopped (the same soak, the same wave).
//!
//! Architecture invariant: the controller writes desired digests and wakes
//! `Wakers::reconciler`; it never talks to Docker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::machine::{Event, next};
use super::ops::{OpError, Ops};
use super::plan::{Plan, TargetAction, TargetStatus, TargetView, plan};
use super::record::{Rollout, event};
use super::smoke::{SmokeProbe, run_checks};
use crate::domain::{FleetMode, MaintenanceWindow, ReleaseStatus, RolloutState};
use crate::store::{DesiredWrite, SettledTargets, StoreError, TargetRow, TargetWrite};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller store access failed: {0}")]
    Store(#[from] StoreError),
    #[error("controller operation failed: {0}")]
    Op(#[from] OpError),
}

/// What one pass did (for tests, logs and the bench).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub rollouts_seen: usize,
    pub starts: usize,
    pub transitions: Vec<(i64, RolloutState)>,
    pub started_rollouts: Vec<i64>,
}

pub struct Controller {
    ops: Ops,
    interval: Duration,
    smoke: Option<Arc<dyn SmokeProbe>>,
}

impl Controller {
    pub fn new(ops: Ops, interval: Duration) -> Self {
        Self {
            ops,
            interval,
            smoke: None,
        }
    }

    /// Adds the HTTP adapter for `[[rollout.smoke]]` checks.
    #[must_use]
    pub fn with_smoke(mut self, probe: Arc<dyn SmokeProbe>) -> Self {
        self.smoke = Some(probe);
        self
    }

    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// The longest wait between passes (`[rollout] tick_interval`); the driver runs
    /// [`Controller::tick`] (`super::controller_task`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// One level-triggered pass.
    pub async fn tick(&self) -> Result<TickReport, ControllerError> {
        let started = Instant::now();
        let now = self.ops.clock.now();
        let fleet = self.ops.store.fleet_mode().await?;
        let mut report = TickReport::default();
        for row in self.ops.store.rollouts_to_tick().await? {
            report.rollouts_seen += 1;
            let id = row.id;
            let r = Rollout::from_row(row)?;
            match self
                .step(r, fleet == FleetMode::Paused, now, &mut report)
                .await
            {
                Ok(()) => {}
                Err(ControllerError::Store(StoreError::Conflict { .. })) => {
                    tracing::debug!(rollout = id, "rollout changed during the pass; next pass");
                }
                Err(e) => tracing::warn!(rollout = id, error = %e, "rollout step failed"),
            }
        }
        self.releases(fleet, now, &mut report).await?;
        self.gauges().await?;
        self.ops
            .metrics
            .tick
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    async fn step(
        &self,
        mut r: Rollout,
        hold: bool,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ControllerError> {
        // Waves matter unless the strategy runs everything as one wave (see `plan`), and
        // a pass can start at most `parallel` updates, so only that many pending targets
        // of the current wave need reading in full.
        let later_pending = r.strategy.aborts_on_failure();
        let (rows, settled) = self
            .ops
            .store
            .rollout_targets_for_pass(r.id, later_pending, r.strategy.start_window())
            .await?;
        let smoke = self.smoke_failures(&r, &rows).await;
        let automatic = r.started_by == "system";
        let mut views: Vec<TargetView> = rows
            .iter()
            .map(|t| view(t, automatic, now, smoke.get(&t.workspace_id).cloned()))
            .collect();
        views.extend(settled_views(&settled, &r.digest));
        let p = plan(&r.status, &r.strategy, &views, now, hold);
        if p.actions.is_empty() && p.event.is_none() {
            return Ok(());
        }
        if matches!(p.event, Some((Event::Promote, _))) && p.actions.is_empty() {
            self.ops.promote(r.id, false, "system").await?;
            report.transitions.push((r.id, RolloutState::Production));
            return Ok(());
        }
        let names: HashMap<i64, &str> = rows
            .iter()
            .map(|t| (t.workspace_id, t.name.as_str()))
            .collect();
        let to_digest = r.digest.clone();
        let mut w = r.write();
        let mut started = Vec::new();
        for a in &p.actions {
            match a {
                TargetAction::Start { workspace_id } => {
                    w.targets
                        .push(tw(*workspace_id, TargetStatus::Updating, true, None));
                    w.desired.push(desired(*workspace_id, &to_digest, false));
                    started.push(names.get(workspace_id).copied().unwrap_or_default());
                }
                TargetAction::AlreadyThere { workspace_id } => {
                    w.targets
                        .push(tw(*workspace_id, TargetStatus::Updated, false, None));
                }
                TargetAction::Succeeded {
                    workspace_id,
                    update_id,
                } => {
                    w.targets.push(tw(
                        *workspace_id,
                        TargetStatus::Updated,
                        false,
                        Some(*update_id),
                    ));
                }
                TargetAction::Failed {
                    workspace_id,
                    update_id,
                    status,
                    reason,
                } => {
                    w.targets
                        .push(tw(*workspace_id, *status, false, *update_id));
                    let name = names.get(workspace_id).copied();
                    tracing::warn!(
                        rollout = r.id,
                        workspace = name,
                        reason,
                        "workspace failed in rollout"
                    );
                    w.events.push(event(
                        "system",
                        "rollout.workspace_failed",
                        name,
                        serde_json::json!({ "reason": reason, "status": status.as_str() }),
                    ));
                }
                TargetAction::Retry {
                    workspace_id,
                    update_id,
                } => {
                    w.targets.push(tw(
                        *workspace_id,
                        TargetStatus::Updating,
                        true,
                        Some(*update_id),
                    ));
                    w.desired.push(desired(*workspace_id, &to_digest, true));
                    let name = names.get(workspace_id).copied();
                    w.events.push(event(
                        "system",
                        "rollout.workspace_retry",
                        name,
                        serde_json::json!({ "failed_update": update_id }),
                    ));
                }
            }
        }
        if !started.is_empty() {
            tracing::info!(rollout = r.id, count = started.len(), digest = %to_digest, "starting updates");
            w.events.push(event(
                "system",
                "rollout.updates_started",
                None,
                serde_json::json!({ "workspaces": started }),
            ));
        }
        report.starts += started.len();
        let from = r.status.state;
        if let Some((ev, reason)) = transition_of(&p)
            && let Ok(to) = next(&r.status, &ev, now)
        {
            r.transition(&mut w, &ev, to, "system", &reason);
            match ev {
                Event::Abort => {
                    let why = format!("rollout {} aborted: {reason}", r.id);
                    w.reason = Some(why.clone());
                    w.release_status = Some((r.release_id, ReleaseStatus::Blocked, why));
                    tracing::warn!(
                        rollout = r.id,
                        reason,
                        blocked = p.block_release,
                        "rollout aborted by its failure policy"
                    );
                }
                Event::ProductionConverged => {
                    w.release_status = Some((
                        r.release_id,
                        ReleaseStatus::Completed,
                        format!("rollout {} completed", r.id),
                    ));
                }
                _ => {}
            }
        }
        self.ops.store.write_rollout(&w, now).await?;
        if r.status.state != from {
            self.ops
                .metrics
                .transitions
                .with_label_values(&[from.as_str(), r.status.state.as_str()])
                .inc();
            tracing::info!(rollout = r.id, from = %from, to = %r.status.state, "rollout transition");
            report.transitions.push((r.id, r.status.state));
        }
        if !w.desired.is_empty() {
            self.ops.wakers.reconciler.notify_one();
        }
        Ok(())
    }

    /// Smoke-check verdicts for updated canaries of a soaking rollout.
    async fn smoke_failures(&self, r: &Rollout, rows: &[TargetRow]) -> HashMap<i64, String> {
        let mut out = HashMap::new();
        let Some(probe) = &self.smoke else { return out };
        if r.status.state != RolloutState::Soaking {
            return out;
        }
        for t in rows
            .iter()
            .filter(|t| t.tier == crate::domain::Tier::Canary && t.status == "updated")
        {
            if let Some(reason) =
                run_checks(probe.as_ref(), &self.ops.settings.smoke, &r.image, &t.name).await
            {
                out.insert(t.workspace_id, reason);
            }
        }
        out
    }

    /// Supersedes stale queued releases; in fleet mode `auto`, starts rollouts.
    async fn releases(
        &self,
        fleet: FleetMode,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ControllerError> {
        let queued = self.ops.store.queued_releases().await?;
        let mut newest: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
        for rel in &queued {
            let e = newest.entry(rel.image.as_str()).or_insert((rel.id, 0));
            *e = (rel.id, e.1 + 1); // ordered by detected_at: the last one is the newest
        }
        for (image, (id, count)) in &newest {
            if *count > 1 {
                self.ops
                    .store
                    .supersede_older_queued(image, *id, now)
                    .await?;
            }
        }
        if fleet != FleetMode::Auto || !in_window(self.ops.settings.window.as_deref(), now) {
            return Ok(());
        }
        for (image, (id, _)) in newest {
            if self
                .ops
                .store
                .active_rollout_for_image(image)
                .await?
                .is_some()
            {
                continue;
            }
            let cands = self.ops.store.rollout_candidates(image).await?;
            if !cands
                .iter()
                .any(|c| c.update_mode == crate::domain::UpdateMode::Auto)
            {
                continue;
            }
            match self.ops.auto_start(id).await {
                Ok(o) => report.started_rollouts.push(o.rollout.id),
                Err(e) => {
                    tracing::warn!(release = id, error = %e, "automatic rollout did not start")
                }
            }
        }
        Ok(())
    }

    async fn gauges(&self) -> Result<(), ControllerError> {
        let m = &self.ops.metrics;
        m.rollouts.reset();
        for s in RolloutState::ALL {
            m.rollouts.with_label_values(&[s.as_str()]).set(0);
        }
        for (state, n) in self.ops.store.rollout_state_counts().await? {
            m.rollouts.with_label_values(&[&state]).set(n);
        }
        m.workspaces.reset();
        for row in self.ops.store.rollouts_to_tick().await? {
            let id = row.id.to_string();
            let mut counts: BTreeMap<&str, i64> =
                TargetStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
            for (status, n) in self.ops.store.rollout_target_counts(row.id).await? {
                if let Some(s) = TargetStatus::parse(&status) {
                    counts.insert(s.as_str(), n);
                }
            }
            for (status, n) in counts {
                m.workspaces.with_label_values(&[&id, status]).set(n);
            }
        }
        Ok(())
    }
}

fn transition_of(p: &Plan) -> Option<(Event, String)> {
    match &p.event {
        Some((Event::Promote, _)) | None => None,
        Some((e, r)) => Some((e.clone(), r.clone())),
    }
}

fn in_window(window: Option<&str>, now: DateTime<Utc>) -> bool {
    match window.filter(|w| !w.is_empty()) {
        None => true,
        Some(w) => MaintenanceWindow::parse(w).is_ok_and(|w| w.contains(now)),
    }
}

fn tw(
    workspace_id: i64,
    status: TargetStatus,
    add_attempt: bool,
    update_id: Option<i64>,
) -> TargetWrite {
    TargetWrite {
        workspace_id,
        status: Some(status.as_str()),
        add_attempt,
        update_id,
        rollback: None,
    }
}

fn desired(workspace_id: i64, digest: &crate::domain::Digest, forget_failed: bool) -> DesiredWrite {
    DesiredWrite {
        workspace_id,
        digest: digest.clone(),
        in_rollout: true,
        forget_failed,
    }
}

/// Stand-ins for settled targets (see `Store::rollout_targets_for_pass`): no action is
/// planned for them; they count in the failure thresholds and wave progress exactly as
/// the rows they stand for (same tier, wave and status, healthy when `updated`, newest
/// `updated_at` of their group).
fn settled_views(groups: &[SettledTargets], digest: &crate::domain::Digest) -> Vec<TargetView> {
    let mut out = Vec::new();
    for g in groups {
        let mut status = TargetStatus::parse(&g.status).unwrap_or(TargetStatus::Failed);
        if status == TargetStatus::Pending && g.held {
            status = TargetStatus::Skipped;
        }
        let n = usize::try_from(g.count).unwrap_or(0);
        out.extend(std::iter::repeat_n(
            TargetView {
                workspace_id: 0,
                name: String::new(),
                tier: g.tier,
                wave: g.wave,
                status,
                attempts: 0,
                to_digest: digest.clone(),
                seen_update_id: None,
                updated_at: g.last_updated_at,
                latest_update: None,
                actual_digest: None,
                health: crate::domain::Health::Healthy,
                ws_state: crate::domain::WorkspaceState::Running,
                outside_window: false,
                smoke_failure: None,
                stand_in: true,
            },
            n,
        ));
    }
    out
}

fn view(
    t: &TargetRow,
    automatic: bool,
    now: DateTime<Utc>,
    smoke_failure: Option<String>,
) -> TargetView {
    let mut status = TargetStatus::parse(&t.status).unwrap_or(TargetStatus::Failed);
    // A workspace pinned after the rollout started is held where it is.
    if status == TargetStatus::Pending
        && t.pinned_digest.as_ref().is_some_and(|p| *p != t.to_digest)
    {
        status = TargetStatus::Skipped;
    }
    TargetView {
        workspace_id: t.workspace_id,
        name: t.name.clone(),
        tier: t.tier,
        wave: t.wave,
        status,
        attempts: u32::try_from(t.attempts).unwrap_or(u32::MAX),
        to_digest: t.to_digest.clone(),
        seen_update_id: t.update_id,
        updated_at: t.updated_at,
        latest_update: t.latest_update,
        actual_digest: t.actual_digest.clone(),
        health: t.health,
        ws_state: t.ws_state,
        outside_window: automatic && t.maintenance_window.is_some_and(|w| !w.contains(now)),
        smoke_failure,
        stand_in: false,
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
