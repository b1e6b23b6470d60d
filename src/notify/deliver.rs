//! One sink's delivery task: takes the sink's queue in order and posts each
//! notification, retrying a failed attempt with backoff (`[notifications] retries`,
//! `backoff`) before giving up on it. It is a queue consumer, not a periodic loop: it
//! waits for the next job, and its retries are part of delivering one job.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feed::Progress;
use super::{Counters, signature};
use crate::config::WebhookSink;

/// One notification for one sink.
pub(super) struct Job {
    pub(super) kind: &'static str,
    pub(super) body: Vec<u8>,
    pub(super) event_id: i64,
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

#[allow(clippy::too_many_arguments)] // reason: one task's whole configuration, passed once
pub(super) async fn deliver(
    mut rx: mpsc::Receiver<Job>,
    sink: WebhookSink,
    label: String,
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
    counters: Counters,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
) {
    let secret = sink.secret.clone().map(Arc::new);
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            j = rx.recv() => match j { Some(j) => j, None => return },
        };
        let mut delay = backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = http
                .post(sink.url.expose().clone())
                .header("content-type", "application/json")
                .header("x-sluice-event", job.kind)
                .header("x-sluice-delivery", job.event_id.to_string())
                .body(job.body.clone());
            if let Some(s) = &secret {
                req = req.header("x-sluice-signature", signature(s.expose(), &job.body));
            }
            let outcome = match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(transport_error(e)),
            };
            match outcome {
                Ok(()) => {
                    counters.inc(&label, "delivered");
                    tracing::debug!(sink = %label, event_id = job.event_id, attempt, "notification delivered");
                    break;
                }
                Err(e) if attempt <= retries => {
                    tracing::warn!(sink = %label, event_id = job.event_id, attempt, error = %e, "notification failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = delay.saturating_mul(2);
                }
                Err(e) => {
                    counters.inc(&label, "failed");
                    tracing::error!(sink = %label, event_id = job.event_id, attempts = attempt, error = %e, "notification given up");
                    break;
                }
            }
        }
        progress.done_through.store(job.event_id, Ordering::Release);
        progress.open.fetch_sub(1, Ordering::AcqRel);
    }
}
