//! The workspace reconciler: makes Docker run each workspace's `desired_digest`, through
//! the journaled update saga ([`saga`]), one saga per workspace, at most
//! `[update] max_parallel` at once. Also: crash resume of unfinished journal rows
//! ([`Reconciler::resume_all`], run by [`Reconciler::run`] before its first pass),
//! adoption of an existing matching container without a restart, and drift detection.
//!
//! # Stopping
//!
//! [`Reconciler::run`] owns every saga it starts (a `JoinSet`). When its stop token is
//! cancelled (SIGTERM/SIGINT) it starts nothing new — no pass, no saga; a saga still
//! waiting for a `max_parallel` slot gives up before opening or touching anything — and
//! sets the reconciler's own stop flag. Running sagas are **not** cut: they go on until
//! they reach their next journal point, bounded by `[update] shutdown_grace`. Whatever
//! still runs after that is aborted; its journal row stays at its phase and is resumed at
//! the next start, as after a crash.
//!
//! Contract with the saga driver ([`saga`]): after journaling a phase and before acting
//! on it, the driver calls `Inner::stopping()`; when it returns `true` the driver returns
//! `Ok(())` without acting, leaving the row at the phase just journaled. A step that has
//! begun always runs to its end (a snapshot is complete or failed, never half-written;
//! a restore is verified or failed), so a graceful stop never leaves a step half done.
//! Long waits inside a step that are safe to leave early (the health gate's polling) may
//! also watch `Inner::stop_token().cancelled()`; leaving early there must not journal a
//! failure.
//!
//! Test-only hook, compiled into the test build only (the `fault-injection` feature, see
//! `crate::fault` for the finer fault points): when the environment variable
//! `SLUICE_TEST_PAUSE_AT` names a saga phase (e.g. `snapshotting`), the saga logs
//! `test_pause` with that phase right after journaling it and then sleeps forever, so a
//! test can SIGKILL the daemon exactly there. A production build never reads it.

pub mod container;
pub mod health;
mod metrics;
pub mod phases;
mod restore;
mod saga;
pub mod smoke;
mod step_error;
pub mod task;
pub mod volumes;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use metrics::ReconcilerMetrics;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{Digest, Health, WorkspaceName, WorkspaceState};
use crate::runtime::{ContainerRuntime, LABEL_WORKSPACE, RuntimeError};
use crate::snapshot::{SnapshotError, Snapshots};
use crate::store::{NewEvent, Observed, Store, StoreError, UnreadableRow, UpdateKind};
use crate::wake::Wakers;

/// Environment variable of the test-only pause hook (see the module docs).
pub const PAUSE_ENV: &str = "SLUICE_TEST_PAUSE_AT";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Tunables, from `[update]` and `[snapshots]`.
#[derive(Clone, Debug)]
pub struct ReconcilerConfig {
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
}

impl ReconcilerConfig {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
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
        }
    }
}

pub(crate) struct Inner<R> {
    rt: R,
    store: Store,
    snaps: Snapshots,
    cfg: ReconcilerConfig,
    clock: Arc<dyn Clock>,
    metrics: ReconcilerMetrics,
    wakers: Wakers,
    busy: Mutex<HashSet<i64>>,
    sem: Arc<Semaphore>,
    http: reqwest::Client,
    pause_at: Option<String>,
    /// Cancelled once the daemon is stopping: sagas read it between steps (see the module
    /// docs, "Stopping") so a graceful stop ends them at a journal point, never mid-step.
    stop: CancellationToken,
}

impl<R> Inner<R> {
    /// True once a stop was requested. The saga driver checks it after journaling a
    /// phase and before acting on it; `true` means: return without acting, the row stays
    /// at that phase and is resumed at the next start.
    pub(super) fn stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The stop flag as a token, for waits inside a step that may end early
    /// (`self.stop_token().cancelled().await`).
    #[allow(dead_code)] // reason: part of the saga contract; the saga driver adopts it
    pub(super) fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }
}

/// Cheap to clone; clones share the per-workspace locks and the parallelism limit.
pub struct Reconciler<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Reconciler<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Holds a workspace's "one saga at a time" slot; released on drop.
struct BusyGuard<R: ContainerRuntime> {
    inner: Arc<Inner<R>>,
    id: i64,
}

impl<R: ContainerRuntime> Drop for BusyGuard<R> {
    fn drop(&mut self) {
        self.inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

fn event(
    workspace: &str,
    action: &str,
    detail: serde_json::Value,
    rollout: Option<i64>,
) -> NewEvent {
    NewEvent {
        actor: "system".to_owned(),
        subject: format!("workspace:{workspace}"),
        action: action.to_owned(),
        detail,
        rollout_id: rollout,
        workspace: Some(workspace.to_owned()),
    }
}

impl<R: ContainerRuntime> Reconciler<R> {
    pub fn new(
        rt: R,
        store: Store,
        snaps: Snapshots,
        cfg: ReconcilerConfig,
        clock: Arc<dyn Clock>,
        metrics: ReconcilerMetrics,
        wakers: Wakers,
    ) -> Self {
        // Only a build with fault points (the tests') reads the hook.
        let pause_at = cfg!(feature = "fault-injection")
            .then(|| std::env::var(PAUSE_ENV).ok())
            .flatten()
            .filter(|p| !p.is_empty());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                rt,
                store,
                sem: Arc::new(Semaphore::new(cfg.max_parallel)),
                snaps,
                cfg,
                clock,
                metrics,
                wakers,
                busy: Mutex::new(HashSet::new()),
                http,
                pause_at,
                stop: CancellationToken::new(),
            }),
        }
    }

    pub fn runtime(&self) -> &R {
        &self.inner.rt
    }

    fn try_lock(&self, id: i64) -> Option<BusyGuard<R>> {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        busy.insert(id).then(|| BusyGuard {
            inner: self.inner.clone(),
            id,
        })
    }

    /// Waits for a `max_parallel` slot. `None` once a stop was requested: the caller must
    /// not start (nothing was opened or touched yet).
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::select! {
            biased;
            () = self.inner.stop.cancelled() => return None,
            p = self.inner.sem.clone().acquire_owned() => p.ok()?,
        };
        (!self.inner.stopping()).then_some(permit)
    }

    /// Spawns one task per unfinished journal row into `set` (forwards where safe,
    /// otherwise back). Returns how many rows were open.
    async fn spawn_resumes(&self, set: &mut JoinSet<()>) -> Result<usize, ReconcileError> {
        let (rows, unreadable) = self.inner.store.open_updates_checked().await?;
        self.quarantine_unreadable(&unreadable).await?;
        let n = rows.len() + unreadable.len();
        for row in rows {
            self.spawn_drive(set, row);
        }
        Ok(n)
    }

    /// Drives an open journal row to its end in a task of `set`, unless its workspace
    /// already has a saga running (then the row waits for the next pass or start).
    fn spawn_drive(&self, set: &mut JoinSet<()>, row: crate::store::UpdateRow) {
        let Some(guard) = self.try_lock(row.workspace_id) else {
            return;
        };
        let me = self.clone();
        set.spawn(async move {
            let _guard = guard;
            let Some(_permit) = me.slot().await else {
                return;
            };
            tracing::warn!(update = row.id, phase = %row.phase, kind = row.kind.as_str(), "driving an open journal row");
            if let Err(e) = me.inner.resume(row).await {
                tracing::error!(error = %e, "driving a journal row failed");
            }
        });
    }

    /// A journal row this version cannot read is refused: its workspace is quarantined
    /// with the reason, naming the row; nothing in Docker is touched.
    async fn quarantine_unreadable(&self, rows: &[UnreadableRow]) -> Result<(), ReconcileError> {
        for r in rows {
            let name = self.inner.store.workspace_name(r.workspace_id).await?;
            let reason = format!("journal row {} cannot be read: {}", r.id, r.error);
            tracing::error!(workspace = %name, update = r.id, error = %reason, "workspace quarantined: operator action needed");
            let ev = event(
                &name,
                "update_quarantined",
                serde_json::json!({"update_id": r.id, "error": reason}),
                None,
            );
            self.inner
                .store
                .quarantine_unreadable(r, &reason, &ev, self.inner.clock.now())
                .await?;
        }
        Ok(())
    }

    /// Resumes every unfinished journal row (forwards where safe, otherwise back) and
    /// waits for all of them to reach a terminal phase. Returns how many were resumed.
    /// [`Reconciler::run`] does the same first, stop-aware.
    pub async fn resume_all(&self) -> Result<usize, ReconcileError> {
        let mut set = JoinSet::new();
        let n = self.spawn_resumes(&mut set).await?;
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// One pass: drift detection, then a saga for every workspace that needs one (not
    /// waited for: they are added to `set`).
    pub async fn pass(&self, set: &mut JoinSet<()>) -> Result<(), ReconcileError> {
        self.detect_drift().await?;
        // Operator restores and recoveries are queued as journal rows; they run here.
        let (rows, unreadable) = self.inner.store.open_updates_checked().await?;
        self.quarantine_unreadable(&unreadable).await?;
        for row in rows.into_iter().filter(|r| r.kind != UpdateKind::Update) {
            self.spawn_drive(set, row);
        }
        for t in self.inner.store.converge_targets().await? {
            let Some(guard) = self.try_lock(t.workspace_id) else {
                continue;
            };
            let me = self.clone();
            set.spawn(async move {
                let _guard = guard;
                let Some(_permit) = me.slot().await else {
                    return;
                };
                if let Err(e) = me.converge(&t.name, t.rollout_id).await {
                    tracing::error!(workspace = %t.name, error = %e, "converging failed");
                }
            });
        }
        Ok(())
    }

    /// Runs passes until every saga started has finished and nothing is left to do
    /// (for tests and the benchmark).
    /// Stops when a pass starts nothing, or finds the same targets as the pass before
    /// (nothing it can do, e.g. a name held by an unmanaged container).
    pub async fn converge_all(&self) -> Result<(), ReconcileError> {
        let mut previous = None;
        loop {
            let targets = self.inner.store.converge_targets().await?;
            if previous.as_ref() == Some(&targets) {
                return Ok(());
            }
            let mut set = JoinSet::new();
            self.pass(&mut set).await?;
            if set.is_empty() {
                return Ok(());
            }
            while set.join_next().await.is_some() {}
            previous = Some(targets);
        }
    }

    /// The loop, until `stop`: first every unfinished journal row is resumed (no new work
    /// starts before they have ended), then a pass on every wake-up and every
    /// `reconcile_interval`. On `stop` it starts nothing more and lets running sagas reach
    /// their next journal point for at most `shutdown_grace` (module docs, "Stopping").
    /// Runs [`task::ReconcilerTask`] on the task driver, without pass metrics (the daemon
    /// uses [`spawn`]).
    pub async fn run(self, stop: CancellationToken) {
        task::ReconcilerTask::driver(self, crate::metrics::TaskMetrics::unregistered())
            .run(stop)
            .await;
    }

    /// Stopping: raises the sagas' stop flag, waits up to `shutdown_grace` for the running
    /// ones to return, then aborts the rest (their rows resume at the next start).
    async fn drain(&self, mut set: JoinSet<()>) {
        self.inner.stop.cancel();
        crate::fault::release();
        let grace = self.inner.cfg.shutdown_grace;
        if !set.is_empty() {
            tracing::info!(
                running = set.len(),
                grace = %humantime::format_duration(grace),
                "stopping: letting running updates reach their next journal point"
            );
        }
        if tokio::time::timeout(grace, join_all(&mut set))
            .await
            .is_err()
        {
            tracing::warn!(
                aborted = set.len(),
                grace = %humantime::format_duration(grace),
                "updates still running after update.shutdown_grace; aborting them \
                 (they resume from their journaled phase at the next start)"
            );
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
        tracing::info!("reconciler stopped");
    }

    async fn converge(&self, name: &str, rollout: Option<i64>) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        let wname = WorkspaceName::parse(name).map_err(|e| StoreError::Corrupt {
            what: "workspace",
            message: e.to_string(),
        })?;
        let w = inner.store.workspace(&wname).await?;
        let Some(desired) = w.desired_digest.clone() else {
            return Ok(());
        };
        let cname = wname.container_name();
        let existing = inner.rt.inspect(&cname).await?;
        let now = inner.clock.now();
        if let Some(c) = &existing {
            if !c.is_managed() || c.labels.get(LABEL_WORKSPACE).map(String::as_str) != Some(name) {
                tracing::warn!(workspace = name, container = %cname, "a container sluice does not manage holds the name; not touching it");
                return Ok(());
            }
            // A pending restore_data must go through the saga even when the digest
            // already runs: its data is what has to change.
            let restore_pending = match rollout {
                Some(r) => inner
                    .store
                    .pending_restore(r, w.id, &desired)
                    .await?
                    .is_some(),
                None => false,
            };
            if c.digest_label() == Some(desired.as_str()) && !restore_pending {
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
            .and_then(|c| c.digest_label())
            .and_then(|d| Digest::parse(d).ok())
            .or_else(|| w.actual_digest.clone());
        if inner.stopping() {
            // Stopping: no new journal row, no new saga.
            return Ok(());
        }
        let row = inner
            .store
            .open_update(w.id, rollout, from.as_ref(), &desired, now)
            .await?;
        tracing::info!(workspace = name, update = row.id, digest = %desired, "update started");
        inner.drive(row, w).await
    }

    async fn detect_drift(&self) -> Result<(), ReconcileError> {
        let inner = &self.inner;
        for w in inner.store.workspaces().await? {
            let (Some(actual), Some(desired)) = (&w.actual_digest, &w.desired_digest) else {
                continue;
            };
            if actual != desired || w.state != WorkspaceState::Running {
                continue;
            }
            let Some(_guard) = self.try_lock(w.id) else {
                continue;
            };
            let cname = w.name.container_name();
            let c = inner.rt.inspect(&cname).await?;
            let now = inner.clock.now();
            let (reason, observed) = match &c {
                None => ("container missing", None),
                Some(c) if c.digest_label() != Some(actual.as_str()) => (
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
                    inner.store.append_event(&ev, now).await?;
                    inner.rt.start(&cname).await?;
                    continue;
                }
                Some(_) => continue,
            };
            tracing::warn!(workspace = %w.name, reason, "drift detected");
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
}

/// Waits for every task of `set`, logging any that panicked.
async fn join_all(set: &mut JoinSet<()>) {
    while let Some(r) = set.join_next().await {
        report_join(r);
    }
}

fn report_join(r: Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        tracing::error!(error = %e, "an update task panicked");
    }
}

/// Spawns the reconciler and the snapshot cleanup on `tasks`, each on the task driver;
/// both end on `stop` (the reconciler after its running sagas, see the module docs), and
/// the daemon waits for them through `tasks` before it exits.
pub fn spawn<R: ContainerRuntime>(
    rec: Reconciler<R>,
    cleanup: task::SnapshotCleanup,
    metrics: &crate::metrics::TaskMetrics,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    let reconciler = task::ReconcilerTask::driver(rec, metrics.clone());
    let cleanup = task::SnapshotCleanup::driver(cleanup, metrics.clone());
    let s = stop.clone();
    tasks.spawn(async move {
        reconciler.run(s).await;
    });
    tasks.spawn(async move {
        cleanup.run(stop).await;
    });
}

#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod tests;
