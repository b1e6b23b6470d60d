//! One shape for every long-lived loop of the daemon.
//!
//! A loop is a [`Task`]: one pass does its work and says when it wants to run again (an
//! [`Action`]); a failed pass is handed to [`Task::error_policy`]. The [`Driver`] owns
//! everything else, the same way for every task:
//!
//! - **wake-ups**: the pass's requested requeue, a [`tokio::sync::Notify`] (one of
//!   `crate::wake::Wakers`) and the task's own source ([`Task::changed`]);
//! - **backoff**: after a failed pass the wait grows exponentially up to a cap
//!   ([`Backoff`]) and resets after a pass that succeeds;
//! - **tracing**: one `task_pass` span per pass with the task's name and the ids the pass
//!   reported ([`Pass::worked_on`]);
//! - **metrics**: `sluice_task_pass_seconds{task}` and `sluice_task_errors_total{task}`
//!   (`crate::metrics::TaskMetrics`);
//! - **shutdown**: a `CancellationToken`. No pass starts once it is cancelled; a pass in
//!   progress runs to its end unless it watches [`Pass::stop`] itself; then
//!   [`Task::stopped`] runs and [`Driver::run`] returns the task.
//!
//! Guaranteed: passes of one task never overlap; a wake-up that arrives during a pass is
//! not lost (it causes one more pass). Assumed: every loop is level-triggered (a pass
//! re-reads the state it acts on), so a pass may run more often than strictly needed.
//! Architecture invariant: no task sleeps or loops by hand between passes; retries that
//! are part of one step (a webhook's delivery attempts, a saga step's retries) may.

mod driver;
#[cfg(test)]
mod tests;

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use driver::Driver;

/// What a task wants after a pass. Built only by [`Action::requeue`] and
/// [`Action::await_change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Run again after `after` at the latest (sooner on a wake-up).
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
        }
    }

    /// Run again only on a wake-up (the notifier or [`Task::changed`]).
    pub fn await_change() -> Self {
        Self {
            requeue_after: None,
        }
    }

    /// The longest wait before the next pass; `None` waits for a wake-up.
    pub fn requeue_after(&self) -> Option<Duration> {
        self.requeue_after
    }
}

/// Exponential backoff after consecutive failed passes: `initial`, doubling, at most
/// `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The wait after the `failures`-th failed pass in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .saturating_mul(1_u32 << doublings)
            .min(self.max)
    }
}

impl Default for Backoff {
    /// 1 s doubling to 30 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

/// What the driver lends one pass: the stop token and a place to report the ids it
/// worked on (recorded on the pass's span).
pub struct Pass {
    stop: CancellationToken,
    span: tracing::Span,
    worked_on: Vec<String>,
}

impl Pass {
    /// The daemon's stop token. A pass that may safely end early (a wait, a stream it
    /// follows) watches it; every other pass ignores it and runs to its end.
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Reports an id this pass worked on (a workspace, a rollout, a release, an event);
    /// it is recorded on the pass's span as `worked_on`.
    pub fn worked_on(&mut self, id: impl Display) {
        self.worked_on.push(id.to_string());
        self.span.record(
            "worked_on",
            tracing::field::display(self.worked_on.join(",")),
        );
    }

    /// The ids reported so far.
    pub fn ids(&self) -> &[String] {
        &self.worked_on
    }
}

/// A long-lived loop, run by a [`Driver`].
pub trait Task: Send + 'static {
    /// The task's name in spans, logs and the `task` metric label.
    const NAME: &'static str;
    type Error: std::error::Error + Send + Sync + 'static;

    /// One pass. It must be safe to repeat (the loops are level-triggered).
    fn pass(&mut self, cx: &mut Pass) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// What to do after a failed pass; `backoff` is the driver's wait for this many
    /// failures in a row. The driver has already logged and counted the error.
    fn error_policy(&self, _error: &Self::Error, backoff: Duration) -> Action {
        Action::requeue(backoff)
    }

    /// A wake-up source of the task's own (e.g. a saga it spawned has ended). Must be
    /// cancel-safe; the default never fires.
    fn changed(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Runs once after the last pass, when stopping (e.g. wait for spawned work, store a
    /// cursor).
    fn stopped(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}
