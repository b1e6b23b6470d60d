//! One sink's delivery as a [`Task`]: takes the sink's queue in order and posts each
//! notification, retrying a failed attempt with backoff (`[notifications] retries`,
//! `backoff`) before giving up on it. The retries are part of delivering one job (one
//! pass); the driver only runs the next pass.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feed::Progress;
use super::{Counters, signature};
use crate::config::WebhookSink;
use crate::task::{Action, Pass, Task};

/// One notification for one sink.
pub(super) struct Job {
    pub(super) kind: &'static str,
    pub(super) body: Vec<u8>,
    pub(super) event_id: i64,
    /// The audit event itself, for sinks that look more up (mail: who, which changelog).
    pub(super) event: crate::store::FeedEvent,
}

/// A transport error as it may be logged. `reqwest` puts the request URL (the webhook's
/// secret) into its errors' text; this drops it and keeps the causes, which name no URL.
pub(super) fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One sink's delivery task: each pass takes the next job from the sink's queue and
/// posts it (with its retries). The pass waits for the job and between retries watching
/// the stop token: a stop abandons the job (it is sent again after the restart, the
/// cursor never passed it), never a request in flight.
pub(super) struct Delivery {
    pub(super) rx: mpsc::Receiver<Job>,
    pub(super) sink: WebhookSink,
    /// `index:host`, for metrics and logs (never the URL).
    pub(super) label: String,
    pub(super) http: reqwest::Client,
    /// `[notifications] retries`: attempts after the first.
    pub(super) retries: u32,
    /// `[notifications] backoff`: the first wait between attempts, doubling.
    pub(super) backoff: Duration,
    pub(super) counters: Counters,
    pub(super) progress: Arc<Progress>,
}

impl Task for Delivery {
    const NAME: &'static str = "notifier_delivery";
    type Error = std::convert::Infallible;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Self::Error> {
        let job = tokio::select! {
            () = cx.stop().cancelled() => return Ok(Action::await_change()),
            j = self.rx.recv() => match j {
                Some(j) => j,
                // The tail has gone (it only does when stopping).
                None => return Ok(Action::await_change()),
            },
        };
        cx.worked_on(format_args!("event:{}", job.event_id));
        if self.send(&job, cx.stop()).await.is_none() {
            return Ok(Action::await_change());
        }
        self.progress
            .done_through
            .store(job.event_id, Ordering::Release);
        self.progress.open.fetch_sub(1, Ordering::AcqRel);
        Ok(Action::requeue(Duration::ZERO))
    }
}

impl Delivery {
    /// Posts `job` until it is delivered or given up (`Some`); `None` when `stop` came
    /// during a wait between attempts.
    async fn send(&self, job: &Job, stop: &CancellationToken) -> Option<()> {
        let secret = self.sink.secret.as_ref();
        let label = &self.label;
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(self.sink.url.expose().clone())
                .header("content-type", "application/json")
                .header("x-sluice-event", job.kind)
                .header("x-sluice-delivery", job.event_id.to_string())
                .body(job.body.clone());
            if let Some(s) = secret {
                req = req.header("x-sluice-signature", signature(s.expose(), &job.body));
            }
            let outcome = match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(transport_error(e)),
            };
            match outcome {
                Ok(()) => {
                    self.counters.inc(label, "delivered");
                    tracing::debug!(sink = %label, event_id = job.event_id, attempt, "notification delivered");
                    return Some(());
                }
                Err(e) if attempt <= self.retries => {
                    tracing::warn!(sink = %label, event_id = job.event_id, attempt, error = %e, "notification failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    self.counters.inc(label, "failed");
                    tracing::error!(sink = %label, event_id = job.event_id, attempts = attempt, error = %e, "notification given up");
                    return Some(());
                }
            }
        }
    }
}
