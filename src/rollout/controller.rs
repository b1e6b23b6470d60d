//! The rollout controller loop: level-triggered, one pass at a time.
//!
//! Each pass has one shape: **read → decide → write**. For every rollout that needs
//! looking at it reads one view (the rollout, its targets for the pass, smoke verdicts,
//! and what a promotion adds when one is due), calls the pure
//! [`super::decide::decide`], and applies the returned changes with one store call
//! ([`RolloutDeps::commit`]: one transaction guarded by the rollout's version). It then
//! supersedes stale queued releases and, in fleet mode `auto` inside `[rollout] window`,
//! starts rollouts by itself through the same path ([`super::decide::operator::start`]).
//! The controller never calls the operator layer (`super::ops`).
//!
//! A pass is woken by its timer, by `Wakers::controller` (API writes, reconciler
//! results, new releases) or ends on the cancellation token. All state lives in the
//! store, so a restart continues where the previous process stopped (the same soak, the
//! same wave).
//!
//! Architecture invariant: the controller writes desired digests and wakes
//! `Wakers::reconciler`; it never talks to Docker.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::decide::operator::{self, Start};
use super::decide::{DecideError, Decision, PassView, Promotion, decide, wants_promotion};
use super::deps::RolloutDeps;
use super::hosts::HostStates;
use super::prometheus::MetricSource;

#[path = "controller_analysis.rs"]
mod analysis_pass;
use super::record::Rollout;
use super::smoke::{SmokeProbe, run_checks};
use crate::config::HostsSettings;
use crate::domain::{FleetMode, MaintenanceWindow, RolloutState, TargetStatus, Tier, UpdateMode};
use crate::store::{CandidateRow, Release, StoreError, TargetRow};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("controller store access failed: {0}")]
    Store(#[from] StoreError),
    #[error("controller decision refused: {0}")]
    Refused(#[from] DecideError),
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
    deps: RolloutDeps,
    interval: Duration,
    smoke: Option<Arc<dyn SmokeProbe>>,
    /// Where `[[rollout.analysis]]` queries go (`[rollout.prometheus]`).
    metrics_source: Option<Arc<dyn MetricSource>>,
    /// `[hosts]`: when a host counts as down.
    hosts: HostsSettings,
}

impl Controller {
    pub fn new(deps: RolloutDeps, interval: Duration) -> Self {
        Self {
            deps,
            interval,
            smoke: None,
            metrics_source: None,
            hosts: HostsSettings::default(),
        }
    }

    /// Judges hosts with `[hosts]` (default: its defaults).
    #[must_use]
    pub fn with_hosts(mut self, hosts: HostsSettings) -> Self {
        self.hosts = hosts;
        self
    }

    /// Adds the HTTP adapter for `[[rollout.smoke]]` checks.
    #[must_use]
    pub fn with_smoke(mut self, probe: Arc<dyn SmokeProbe>) -> Self {
        self.smoke = Some(probe);
        self
    }

    /// Adds the Prometheus that `[[rollout.analysis]]` checks ask.
    #[must_use]
    pub fn with_analysis(mut self, source: Arc<dyn MetricSource>) -> Self {
        self.metrics_source = Some(source);
        self
    }

    /// What the controller's wake-up is taken from.
    pub fn wakers(&self) -> &crate::wake::Wakers {
        &self.deps.wakers
    }

    /// The longest wait between passes (`[rollout] tick_interval`); the driver runs
    /// [`Controller::tick`] (`super::controller_task`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// One level-triggered pass.
    pub async fn tick(&self) -> Result<TickReport, ControllerError> {
        let started = Instant::now();
        let now = self.deps.clock.now();
        let fleet = self.deps.store.fleet_mode().await?;
        let mut report = TickReport::default();
        let hosts = HostStates::from_rows(
            &self.deps.store.hosts().await?,
            now,
            self.hosts.down_after(),
        );
        for row in self.deps.store.rollouts_to_tick().await? {
            report.rollouts_seen += 1;
            let id = row.id;
            let r = Rollout::from_row(row)?;
            match self
                .step(&r, &hosts, fleet == FleetMode::Paused, now, &mut report)
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
        self.deps
            .metrics
            .tick
            .observe(started.elapsed().as_secs_f64());
        Ok(report)
    }

    /// Read one rollout's view, decide, write.
    async fn step(
        &self,
        r: &Rollout,
        hosts: &HostStates,
        hold: bool,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), ControllerError> {
        let store = &self.deps.store;
        // Waves matter unless the strategy runs everything as one wave (see `plan`), and
        // a pass can start at most `parallel` updates, so only that many pending targets
        // of the current wave need reading in full. Once several hosts are registered,
        // targets waiting for a host let later waves go on and per-host limits let the
        // planner pass over targets it cannot start, so every unfinished target is read in
        // full. With one host that is ready (the single-host default registers its own)
        // neither can happen and no per-host limit applies.
        let later_pending = r.strategy.aborts_on_failure() && hosts.at_most_one_ready();
        let (rows, settled) = store
            .rollout_targets_for_pass(r.id, later_pending, r.strategy.start_window())
            .await?;
        let smoke = self.smoke_failures(r, &rows).await;
        let (existing, candidates) = if wants_promotion(r, now) {
            (
                store.rollout_target_workspaces(r.id).await?,
                store.rollout_candidates(&r.image).await?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let (gate, results) = self.analyse(r, now).await?;
        let view = PassView {
            rollout: r,
            targets: &rows,
            settled: &settled,
            smoke: &smoke,
            hold,
            hosts,
            promotion: wants_promotion(r, now).then_some(Promotion {
                existing: &existing,
                candidates: &candidates,
            }),
            gate: &gate,
            analysis: &results,
        };
        let d = decide(&view, now)?;
        self.log(r, &d);
        if d.changes.is_empty() {
            return Ok(());
        }
        self.deps.commit(&d, now).await?;
        report.starts += d.started.len();
        if let Some((from, to)) = d.transition {
            tracing::info!(rollout = r.id, from = %from, to = %to, "rollout transition");
            report.transitions.push((r.id, to));
        }
        if d.promoted {
            self.deps.wakers.controller.notify_one();
            self.deps.wakers.reconciler.notify_one();
        } else if d.writes_desired {
            self.deps.wakers.reconciler.notify_one();
        }
        Ok(())
    }

    /// What a decision says that is not a row: log lines and the illegal-transition count.
    fn log(&self, r: &Rollout, d: &Decision) {
        for (workspace, reason) in &d.failed {
            tracing::warn!(
                rollout = r.id,
                workspace = workspace.as_deref(),
                reason,
                "workspace failed in rollout"
            );
        }
        for (workspace, reason) in &d.skipped_for_host {
            tracing::warn!(
                rollout = r.id,
                workspace = workspace.as_deref(),
                reason,
                "workspace skipped: its host stayed down"
            );
        }
        if !d.started.is_empty() {
            tracing::info!(rollout = r.id, count = d.started.len(), digest = %r.digest, "starting updates");
        }
        if let Some((reason, blocked)) = &d.aborted {
            tracing::warn!(
                rollout = r.id,
                reason,
                blocked,
                "rollout aborted by its failure policy"
            );
        }
        if let Some(e) = &d.illegal {
            tracing::warn!(rollout = r.id, error = %e, "planned rollout transition refused by the state machine");
            self.deps.metrics.illegal_transitions.inc();
        }
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
            .filter(|t| t.tier == Tier::Canary && t.status == TargetStatus::Updated)
        {
            if let Some(reason) =
                run_checks(probe.as_ref(), &self.deps.settings.smoke, &r.image, &t.name).await
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
        let store = &self.deps.store;
        let queued = store.queued_releases().await?;
        let mut newest: BTreeMap<&str, (i64, usize)> = BTreeMap::new();
        for rel in &queued {
            let e = newest.entry(rel.image.as_str()).or_insert((rel.id, 0));
            *e = (rel.id, e.1 + 1); // ordered by detected_at: the last one is the newest
        }
        for (image, (id, count)) in &newest {
            if *count > 1 {
                store.supersede_older_queued(image, *id, now).await?;
            }
        }
        if fleet != FleetMode::Auto || !in_window(self.deps.settings.window.as_deref(), now) {
            return Ok(());
        }
        for (image, (id, _)) in newest {
            if store.active_rollout_for_image(image).await?.is_some() {
                continue;
            }
            let cands = store.rollout_candidates(image).await?;
            if !cands.iter().any(|c| c.update_mode == UpdateMode::Auto) {
                continue;
            }
            match self.auto_start(id, &cands, now).await {
                Ok(rollout) => report.started_rollouts.push(rollout),
                Err(e) => {
                    tracing::warn!(release = id, error = %e, "automatic rollout did not start");
                }
            }
        }
        Ok(())
    }

    /// Starts a rollout of `release_id` by itself: canaries first when there are any.
    async fn auto_start(
        &self,
        release_id: i64,
        candidates: &[CandidateRow],
        now: DateTime<Utc>,
    ) -> Result<i64, ControllerError> {
        let store = &self.deps.store;
        let release: Release = store.release(release_id).await?;
        if let Some(row) = store.rollout_for_release(release_id).await? {
            // A release keeps its one rollout; an ended one is not restarted by itself.
            return Err(DecideError::Conflict(format!(
                "rollout {} is {}; nothing more can be applied to it",
                row.id, row.state
            ))
            .into());
        }
        let (tier, force) = operator::automatic_tier(candidates);
        let d = operator::start(
            &Start {
                release: &release,
                active: None,
                candidates,
                settings: &self.deps.settings,
                tier,
                force,
                actor: "system",
                automatic: true,
            },
            now,
        )?;
        let id = self.deps.commit(&d, now).await?;
        tracing::info!(rollout = id, release = release_id, %tier, actor = "system", "rollout started");
        self.deps.wakers.controller.notify_one();
        self.deps.wakers.reconciler.notify_one();
        Ok(id)
    }

    async fn gauges(&self) -> Result<(), ControllerError> {
        let m = &self.deps.metrics;
        m.rollouts.reset();
        for s in RolloutState::ALL {
            m.rollouts.with_label_values(&[s.as_str()]).set(0);
        }
        for (state, n) in self.deps.store.rollout_state_counts().await? {
            m.rollouts.with_label_values(&[state.as_str()]).set(n);
        }
        m.workspaces.reset();
        for row in self.deps.store.rollouts_to_tick().await? {
            let id = row.id.to_string();
            let mut counts: BTreeMap<TargetStatus, i64> =
                TargetStatus::ALL.iter().map(|s| (*s, 0)).collect();
            for (status, n) in self.deps.store.rollout_target_counts(row.id).await? {
                counts.insert(status, n);
            }
            for (status, n) in counts {
                m.workspaces
                    .with_label_values(&[&id, status.as_str()])
                    .set(n);
            }
        }
        Ok(())
    }
}

fn in_window(window: Option<&str>, now: DateTime<Utc>) -> bool {
    match window.filter(|w| !w.is_empty()) {
        None => true,
        Some(w) => MaintenanceWindow::parse(w).is_ok_and(|w| w.contains(now)),
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
