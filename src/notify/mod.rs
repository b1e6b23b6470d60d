//! Webhook notifications, fed by tailing the audit trail (`events`): every loop's audit
//! events become notifications without the loops knowing about sinks.
//!
//! Each sink has its own bounded queue and delivery task, so a slow or failing sink
//! never blocks another sink, the tail, or anything else: when its queue is full new
//! notifications for it are dropped and counted (`sluice_notifications_total{outcome="dropped"}`).

mod hmac;
pub mod payload;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use hmac::{hmac_sha256, signature};

use crate::config::{NotificationSettings, WebhookSink};
use crate::metrics::Metrics;
use crate::store::{FeedEvent, Store};

/// Events read per query of the tail.
const PAGE: i64 = 500;

#[derive(Clone)]
struct Counters(Option<IntCounterVec>);

impl Counters {
    fn register(metrics: &Metrics) -> Self {
        let c = IntCounterVec::new(
            Opts::new(
                "sluice_notifications_total",
                "Webhook notifications by sink and outcome (delivered, failed, dropped).",
            ),
            &["sink", "outcome"],
        )
        .ok()
        .filter(|c| metrics.registry().register(Box::new(c.clone())).is_ok());
        Self(c)
    }
    fn inc(&self, sink: &str, outcome: &str) {
        if let Some(c) = &self.0 {
            c.with_label_values(&[sink, outcome]).inc();
        }
    }
}

struct Job {
    kind: &'static str,
    body: Vec<u8>,
    event_id: i64,
}

struct Sink {
    label: String,
    events: Vec<String>,
    tx: mpsc::Sender<Job>,
    format: String,
}

/// A label for metrics and logs: the sink's host and port, never its path or secret.
fn sink_label(i: usize, url: &str) -> String {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', '?']).next())
        .map(|h| h.rsplit('@').next().unwrap_or(h))
        .unwrap_or("?");
    format!("{i}:{host}")
}

/// Starts the tail and one delivery task per sink; nothing when no sink is configured.
pub fn spawn(
    store: Store,
    settings: &NotificationSettings,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if settings.webhooks.is_empty() {
        return None;
    }
    let counters = Counters::register(metrics);
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .unwrap_or_default();
    let mut sinks = Vec::new();
    for (i, w) in settings.webhooks.iter().enumerate() {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let label = sink_label(i, &w.url);
        tokio::spawn(deliver(
            rx,
            w.clone(),
            label.clone(),
            http.clone(),
            settings.retries,
            settings.backoff,
            counters.clone(),
            shutdown.clone(),
        ));
        sinks.push(Sink {
            label,
            events: w.events.clone(),
            tx,
            format: w.format.clone().unwrap_or_else(|| "json".to_owned()),
        });
    }
    let interval = settings.poll_interval;
    Some(tokio::spawn(tail(
        store, sinks, interval, counters, shutdown,
    )))
}

async fn tail(
    store: Store,
    sinks: Vec<Sink>,
    interval: Duration,
    counters: Counters,
    shutdown: CancellationToken,
) {
    let mut cursor = loop {
        match store.last_event_id().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = %e, "notifications: cannot read the audit trail; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    tracing::info!(
        sinks = sinks.len(),
        from_event = cursor,
        "notifications started"
    );
    loop {
        match store.feed_events(cursor, PAGE).await {
            Ok(batch) => {
                let full = batch.len() as i64 == PAGE;
                for ev in &batch {
                    cursor = ev.id;
                    fan_out(ev, &sinks, &counters);
                }
                if full {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "notifications: cannot read new events"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

fn fan_out(ev: &FeedEvent, sinks: &[Sink], counters: &Counters) {
    let Some(kind) = payload::classify(ev) else {
        return;
    };
    for s in sinks {
        if !s.events.is_empty() && !s.events.iter().any(|e| e == kind || e == "*") {
            continue;
        }
        let body = payload::body(kind, ev, &s.format).to_string().into_bytes();
        let job = Job {
            kind,
            body,
            event_id: ev.id,
        };
        if s.tx.try_send(job).is_err() {
            counters.inc(&s.label, "dropped");
            tracing::warn!(sink = %s.label, event_id = ev.id, kind, "notification queue full; dropped");
        }
    }
}

#[allow(clippy::too_many_arguments)] // reason: one task's whole configuration, passed once
async fn deliver(
    mut rx: mpsc::Receiver<Job>,
    sink: WebhookSink,
    label: String,
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
    counters: Counters,
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
                .post(&sink.url)
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
                Err(e) => Err(e.to_string()),
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
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_hide_paths_and_credentials() {
        assert_eq!(
            super::sink_label(0, "https://u:p@hooks.example/T/B/secret"),
            "0:hooks.example"
        );
        assert_eq!(
            super::sink_label(2, "http://127.0.0.1:9000/x?y"),
            "2:127.0.0.1:9000"
        );
    }
}
