//! The watcher as a [`Task`]: each pass is one [`Watcher::pass`]. The pure schedule
//! decides the next one: the earliest `next_probe_at` of any tracked reference (interval,
//! jitter, backoff, `Retry-After`), at most [`RESCAN`] away, or [`HINT_RETRY`] while a
//! push notification's tag has not moved yet. `Wakers::watcher` (a push notification,
//! the tracked set changed) wakes it sooner. A pass is abandoned when the daemon stops:
//! it only probes and records, so leaving it loses nothing.

use std::time::Duration;

use crate::metrics::TaskMetrics;
use crate::registry::Registry;
use crate::task::{Action, Backoff, Driver, Pass, Task};

use super::{HINT_RETRY, RESCAN, Watcher, WatcherError};

/// Drives [`Watcher::pass`].
pub struct WatcherTask<R> {
    watcher: Watcher<R>,
}

impl<R: Registry> WatcherTask<R> {
    pub fn new(watcher: Watcher<R>) -> Self {
        Self { watcher }
    }

    /// The task with its wake-up (`Wakers::watcher`) and backoff (1 s doubling, at
    /// most [`RESCAN`]), ready to run.
    pub fn driver(watcher: Watcher<R>, metrics: TaskMetrics) -> Driver<Self> {
        let wake = watcher.wakers.watcher.clone();
        Driver::new(Self::new(watcher), metrics)
            .wake_on(wake)
            .backoff(Backoff::new(Backoff::default().initial, RESCAN))
    }
}

impl<R: Registry + Send + Sync + 'static> Task for WatcherTask<R> {
    const NAME: &'static str = "watcher";
    type Error = WatcherError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, WatcherError> {
        let w = &self.watcher;
        let report = tokio::select! {
            biased;
            () = cx.stop().cancelled() => return Ok(Action::await_change()),
            r = w.pass() => r?,
        };
        for release in &report.releases {
            cx.worked_on(format_args!("release:{release}"));
        }
        let wait = report
            .next_due
            .and_then(|t| (t - w.clock.now()).to_std().ok())
            .unwrap_or(Duration::ZERO);
        let cap = if w.hints.pending() {
            HINT_RETRY
        } else {
            RESCAN
        };
        Ok(Action::requeue(wait.min(cap)))
    }

    fn error_policy(&self, _error: &WatcherError, backoff: Duration) -> Action {
        // Hints still waiting are retried as soon as they would have been.
        let cap = if self.watcher.hints.pending() {
            HINT_RETRY
        } else {
            RESCAN
        };
        Action::requeue(backoff.min(cap))
    }
}
