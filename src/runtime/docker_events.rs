//! Docker's event stream as a [`Task`]: every managed container that dies, stops or is
//! destroyed wakes the reconciler, so drift is found on Docker's word at once, not at
//! the next periodic pass. The wake-up is only a hint (the reconciler's periodic pass is
//! the backstop).
//!
//! One pass follows one subscription until it ends or fails, or the daemon stops (the
//! pass watches the stop token: leaving a stream loses nothing). The next subscription
//! starts from the second of the last event seen, so a hiccup loses nothing either. A
//! subscription that ended without delivering an event counts as a failure (the driver
//! backs off: 1 s doubling to 30 s); one that delivered events is followed again after
//! the first backoff step.

use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::Notify;

use bollard::query_parameters::EventsOptionsBuilder;

use super::DockerRuntime;
use super::docker_convert::managed_exit_filters;
use crate::metrics::TaskMetrics;
use crate::task::{Action, Backoff, Driver, Pass, Task};

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("docker events: the event stream ended")]
    Ended,
    #[error("docker events: {0}")]
    Failed(#[source] bollard::errors::Error),
}

/// Follows the event stream of one engine and notifies `wake` (normally
/// `Wakers::reconciler`).
pub struct DockerEvents {
    runtime: DockerRuntime,
    wake: Arc<Notify>,
    /// Unix seconds from which the next subscription asks for events.
    since: i64,
}

impl DockerEvents {
    /// Follows events from now on (the runtime's clock).
    pub fn new(runtime: DockerRuntime, wake: Arc<Notify>) -> Self {
        let since = runtime.clock().now().timestamp();
        Self {
            runtime,
            wake,
            since,
        }
    }

    /// The task with the default backoff, ready to run.
    pub fn driver(self, metrics: TaskMetrics) -> Driver<Self> {
        Driver::new(self, metrics)
    }
}

impl Task for DockerEvents {
    const NAME: &'static str = "docker_events";
    type Error = EventsError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, EventsError> {
        let filters = managed_exit_filters();
        let opts = EventsOptionsBuilder::default()
            .since(&self.since.to_string())
            .filters(&filters)
            .build();
        let mut stream = self.runtime.docker().events(Some(opts));
        let mut seen = false;
        let failure = loop {
            let next = tokio::select! {
                () = cx.stop().cancelled() => return Ok(Action::await_change()),
                n = stream.next() => n,
            };
            match next {
                None => break EventsError::Ended,
                Some(Err(e)) => break EventsError::Failed(e),
                Some(Ok(ev)) => {
                    seen = true;
                    if let Some(t) = ev.time {
                        self.since = self.since.max(t);
                    }
                    if let Some(name) = ev
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|a| a.get("name").cloned())
                    {
                        tracing::debug!(container = %name, "docker event: waking the reconciler");
                        cx.worked_on(format_args!("container:{name}"));
                        self.wake.notify_one();
                    }
                }
            }
        };
        if seen {
            let retry_in = Backoff::default().initial;
            tracing::warn!(error = %failure, retry_in = ?retry_in, "docker events: following again");
            return Ok(Action::requeue(retry_in));
        }
        Err(failure)
    }
}

/// Names of managed containers that died, were stopped or destroyed from `since` to
/// `until` (Unix seconds; `until` is exclusive, so pass one past now).
pub(super) async fn exited_since(
    docker: &bollard::Docker,
    since: i64,
    until: i64,
) -> Result<Vec<String>, super::RuntimeError> {
    let filters = managed_exit_filters();
    let opts = EventsOptionsBuilder::default()
        .since(&since.to_string())
        .until(&until.to_string())
        .filters(&filters)
        .build();
    let mut stream = docker.events(Some(opts));
    let mut names = Vec::new();
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(super::docker_convert::err("events", "managed containers"))?;
        if let Some(name) = ev
            .actor
            .and_then(|a| a.attributes)
            .and_then(|a| a.get("name").cloned())
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    Ok(names)
}
