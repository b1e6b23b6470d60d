//! Runs one [`Task`]: passes, waits between them, backoff, span, metrics, shutdown.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Action, Backoff, Pass, Task};
use crate::metrics::TaskMetrics;

/// Runs a [`Task`] until its stop token is cancelled (module docs).
pub struct Driver<T> {
    /// The loop being driven.
    task: T,
    /// Wakes the task early (one of `crate::wake::Wakers`); a wake-up that arrives during
    /// a pass is kept by the `Notify` and causes one more pass.
    wake: Option<Arc<Notify>>,
    /// The wait after consecutive failed passes.
    backoff: Backoff,
    /// Pass duration and errors, labelled with `T::NAME`.
    metrics: TaskMetrics,
}

impl<T: Task> Driver<T> {
    /// A driver with the default [`Backoff`] and no notifier. The task's error counter
    /// is exported at zero from now on, so `rate()` and alerts see it before a failure.
    pub fn new(task: T, metrics: TaskMetrics) -> Self {
        metrics.errors.with_label_values(&[T::NAME]);
        Self {
            task,
            wake: None,
            backoff: Backoff::default(),
            metrics,
        }
    }

    /// Wakes the task early whenever `notify` is notified.
    #[must_use]
    pub fn wake_on(mut self, notify: Arc<Notify>) -> Self {
        self.wake = Some(notify);
        self
    }

    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Runs passes until `stop` is cancelled, then [`Task::stopped`]; returns the task.
    /// A pass in progress when `stop` is cancelled runs to its end (module docs).
    pub async fn run(mut self, stop: CancellationToken) -> T {
        tracing::info!(task = T::NAME, "task started");
        let mut failures = 0_u32;
        while !stop.is_cancelled() {
            let action = self.pass(&stop, &mut failures).await;
            if !self.wait(action, &stop).await {
                break;
            }
        }
        self.task.stopped().await;
        tracing::info!(task = T::NAME, "task stopped");
        self.task
    }

    /// One pass in its own span, measured and counted; the action that follows it.
    async fn pass(&mut self, stop: &CancellationToken, failures: &mut u32) -> Action {
        let span = tracing::info_span!(
            "task_pass",
            task = T::NAME,
            worked_on = tracing::field::Empty
        );
        let mut cx = Pass {
            stop: stop.clone(),
            span: span.clone(),
            worked_on: Vec::new(),
        };
        // Measures how long the pass took (for the histogram); it reads no wall-clock
        // time. Tokio's clock, so paused-time tests see the advanced time.
        let started = tokio::time::Instant::now();
        let result = self.task.pass(&mut cx).instrument(span.clone()).await;
        let took = started.elapsed();
        self.metrics
            .pass_seconds
            .with_label_values(&[T::NAME])
            .observe(took.as_secs_f64());
        let _entered = span.enter();
        match result {
            Ok(action) => {
                *failures = 0;
                tracing::debug!(task = T::NAME, took = ?took, next = ?action.requeue_after(), "pass done");
                action
            }
            Err(error) => {
                *failures = failures.saturating_add(1);
                self.metrics.errors.with_label_values(&[T::NAME]).inc();
                let action = self
                    .task
                    .error_policy(&error, self.backoff.delay(*failures));
                tracing::warn!(task = T::NAME, error = %error, failures = *failures, retry_in = ?action.requeue_after(), "pass failed");
                action
            }
        }
    }

    /// Waits for the next pass: `action`'s requeue, the notifier or the task's own
    /// wake-up. `false` when stopping.
    async fn wait(&mut self, action: Action, stop: &CancellationToken) -> bool {
        let Self { task, wake, .. } = self;
        let timer = async {
            match action.requeue_after() {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let notified = async {
            match wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            () = timer => true,
            () = notified => true,
            () = task.changed() => true,
        }
    }
}
