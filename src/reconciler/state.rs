//! What the reconciler's tasks share: `Inner` (runtime, store, tunables, the stop flag),
//! the cloneable `Reconciler` handle, the per-workspace "one saga at a time" lock and the
//! `max_parallel` slots.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use metrics::ReconcilerMetrics;

use super::*;
use crate::clock::Clock;
use crate::runtime::ContainerRuntime;
use crate::snapshot::Snapshots;
use crate::store::{NewEvent, Store};
use crate::wake::Wakers;

pub(crate) struct Inner<R> {
    pub(super) rt: R,
    pub(super) store: Store,
    pub(super) snaps: Snapshots,
    pub(super) cfg: ReconcilerConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) metrics: ReconcilerMetrics,
    pub(super) wakers: Wakers,
    pub(super) busy: Mutex<HashSet<i64>>,
    pub(super) sem: Arc<Semaphore>,
    pub(super) http: reqwest::Client,
    pub(super) pause_at: Option<String>,
    /// Set when a saga has stopped at `pause_at` (tests wait for it: the phase is
    /// journaled a moment before the saga reaches the pause).
    pub(super) parked: std::sync::atomic::AtomicBool,
    /// Cancelled once the daemon is stopping: sagas read it between steps (see the module
    /// docs, "Stopping") so a graceful stop ends them at a journal point, never mid-step.
    pub(super) stop: CancellationToken,
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
    pub(super) inner: Arc<Inner<R>>,
}

impl<R> Clone for Reconciler<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// Holds a workspace's "one saga at a time" slot; released on drop.
pub(super) struct BusyGuard<R: ContainerRuntime> {
    pub(super) inner: Arc<Inner<R>>,
    pub(super) id: i64,
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

pub(super) fn event(
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
                parked: std::sync::atomic::AtomicBool::new(false),
                stop: CancellationToken::new(),
            }),
        }
    }

    pub fn runtime(&self) -> &R {
        &self.inner.rt
    }

    pub(super) fn try_lock(&self, id: i64) -> Option<BusyGuard<R>> {
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
    pub(super) async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::select! {
            biased;
            () = self.inner.stop.cancelled() => return None,
            p = self.inner.sem.clone().acquire_owned() => p.ok()?,
        };
        (!self.inner.stopping()).then_some(permit)
    }
}
