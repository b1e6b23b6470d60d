//! Webhook notifications, fed by tailing the audit trail (`events`): every loop's audit
//! events become notifications without the loops knowing about sinks.
//!
//! Each sink has its own bounded queue and delivery task, so a slow or failing sink
//! never blocks another sink, the tail, or anything else: when its queue is full new
//! notifications for it are dropped and counted (`sluice_notifications_total{outcome="dropped"}`).
//!
//! Delivery is at least once across restarts: the tail stores a cursor (`settings` row
//! `notify_cursor`) up to which every sink has delivered or given up, and a new start
//! continues from it. Events written while the daemon was down or starting up (the
//! outcomes of updates resumed after a crash) are sent; a notification that was queued
//! or in flight when the daemon stopped is sent again. Receivers deduplicate on the
//! `X-Sluice-Delivery` header (the audit event id). The very first start with sinks
//! begins at the newest event, so history is not replayed.

mod hmac;
pub mod payload;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use hmac::{hmac_sha256, signature};

use crate::config::{NotificationSettings, WebhookSink, WebhookUrl};
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
    progress: Arc<Progress>,
}

/// What a sink's delivery task has finished, for the stored cursor.
#[derive(Default)]
struct Progress {
    /// Jobs queued or in flight.
    open: AtomicUsize,
    /// Event id of the last job finished (delivered or given up); jobs run in order.
    done_through: AtomicI64,
}

/// The newest event id that every sink is done with, given that the tail has fanned out
/// everything up to `fanned_out`.
fn safe_cursor(sinks: &[Sink], fanned_out: i64) -> i64 {
    sinks
        .iter()
        .map(|s| {
            if s.progress.open.load(Ordering::Acquire) == 0 {
                fanned_out
            } else {
                s.progress.done_through.load(Ordering::Acquire)
            }
        })
        .min()
        .unwrap_or(fanned_out)
}

/// A label for metrics and logs: the sink's position and host (with port), never its
/// path, query or credentials.
fn sink_label(i: usize, url: &WebhookUrl) -> String {
    format!("{i}:{}", url.host())
}

/// A transport error as it may be logged. `reqwest` puts the request URL (the webhook's
/// secret) into its errors' text; this drops it and keeps the causes, which name no URL.
fn transport_error(e: reqwest::Error) -> String {
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

/// Starts the tail and one delivery task per sink; nothing when no sink is configured.
/// The returned handle finishes once all of them have stopped (on `shutdown`).
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
    let mut deliveries = Vec::new();
    for (i, w) in settings.webhooks.iter().enumerate() {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let label = sink_label(i, &w.url);
        let progress = Arc::new(Progress::default());
        deliveries.push(tokio::spawn(deliver(
            rx,
            w.clone(),
            label.clone(),
            http.clone(),
            settings.retries,
            settings.backoff,
            counters.clone(),
            progress.clone(),
            shutdown.clone(),
        )));
        sinks.push(Sink {
            label,
            events: w.events.clone(),
            tx,
            format: w.format.clone().unwrap_or_else(|| "json".to_owned()),
            progress,
        });
    }
    let interval = settings.poll_interval;
    // The handle ends only when the tail and every delivery task have: a daemon that
    // waits for it at shutdown leaves no delivery half-sent behind its back.
    Some(tokio::spawn(async move {
        tail(store, sinks, interval, counters, shutdown).await;
        for d in deliveries {
            if let Err(e) = d.await {
                tracing::error!(error = %e, "a webhook delivery task ended abnormally");
            }
        }
    }))
}

async fn tail(
    store: Store,
    sinks: Vec<Sink>,
    interval: Duration,
    counters: Counters,
    shutdown: CancellationToken,
) {
    let mut cursor = loop {
        match start_cursor(&store).await {
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
    let mut stored = cursor;
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
        stored = store_cursor(&store, safe_cursor(&sinks, cursor), stored).await;
        tokio::select! {
            () = shutdown.cancelled() => {
                store_cursor(&store, safe_cursor(&sinks, cursor), stored).await;
                return;
            }
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// The stored cursor, or the newest event on the first start (history is not replayed);
/// a cursor past the newest event (the database was replaced) starts at the newest.
async fn start_cursor(store: &Store) -> Result<i64, crate::store::StoreError> {
    let last = store.last_event_id().await?;
    match store.notify_cursor().await? {
        Some(c) if c <= last => {
            if c < last {
                tracing::info!(
                    events = last - c,
                    "notifications: sending events written since the last run"
                );
            }
            Ok(c)
        }
        _ => {
            store.set_notify_cursor(last, chrono::Utc::now()).await?;
            Ok(last)
        }
    }
}

/// Stores `safe` when it moved past `stored`; returns what is stored now.
async fn store_cursor(store: &Store, safe: i64, stored: i64) -> i64 {
    if safe <= stored {
        return stored;
    }
    match store.set_notify_cursor(safe, chrono::Utc::now()).await {
        Ok(()) => safe,
        Err(e) => {
            tracing::warn!(error = %e, "notifications: cannot store the cursor");
            stored
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
        s.progress.open.fetch_add(1, Ordering::AcqRel);
        if s.tx.try_send(job).is_err() {
            s.progress.open.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use crate::config::WebhookUrl;

    #[test]
    fn labels_hide_paths_and_credentials() {
        let url = |s: &str| WebhookUrl::parse(s).unwrap();
        assert_eq!(
            super::sink_label(0, &url("https://u:p@hooks.example/T/B/secret")),
            "0:hooks.example"
        );
        assert_eq!(
            super::sink_label(2, &url("http://127.0.0.1:9000/x?y")),
            "2:127.0.0.1:9000"
        );
    }

    #[tokio::test]
    async fn transport_errors_name_no_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/T0/B0/hook-s3cr3t"))
            .send()
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("hook-s3cr3t"),
            "reqwest names it: {e}"
        );
        let shown = super::transport_error(e);
        assert!(!shown.contains("hook-s3cr3t"), "{shown}");
        assert!(shown.contains("error sending request"), "{shown}");
    }
}
