//! Webhook and mail notifications, fed by tailing the audit trail (`events`): every
//! loop's audit events become notifications without the loops knowing about sinks.
//! Mail (`[email]`, [`email`]) runs its own tail and cursor beside the webhooks'.
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

mod deliver;
pub mod email;
mod feed;
mod hmac;
pub mod payload;

use std::sync::Arc;

use prometheus::{IntCounterVec, Opts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use feed::FeedError;
pub use hmac::{hmac_sha256, signature};

use crate::clock::Clock;
use crate::config::{EmailSettings, NotificationSettings, WebhookUrl};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::task::{Backoff, Driver};
#[cfg(test)]
use deliver::transport_error;

/// The `outcome` label's values of `sluice_notifications_total`.
const OUTCOMES: [&str; 3] = ["delivered", "failed", "dropped"];

#[derive(Clone)]
struct Counters(Option<IntCounterVec>);

impl Counters {
    fn register(metrics: &Metrics) -> Self {
        let c = IntCounterVec::new(
            Opts::new(
                "sluice_notifications_total",
                "Notifications (webhooks and mail) by sink and outcome (delivered, failed, dropped).",
            ),
            &["sink", "outcome"],
        )
        .ok()
        .filter(|c| metrics.registry().register(Box::new(c.clone())).is_ok());
        Self(c)
    }
    /// Exports every outcome of `sink` at zero, so `increase()` and alerts see the first
    /// failure or drop (a series that appears already at 1 shows no increase).
    fn init(&self, sink: &str) {
        if let Some(c) = &self.0 {
            for outcome in OUTCOMES {
                c.with_label_values(&[sink, outcome]);
            }
        }
    }
    fn inc(&self, sink: &str, outcome: &str) {
        if let Some(c) = &self.0 {
            c.with_label_values(&[sink, outcome]).inc();
        }
    }
}

/// A label for metrics and logs: the sink's position and host (with port), never its
/// path, query or credentials.
fn sink_label(i: usize, url: &WebhookUrl) -> String {
    format!("{i}:{}", url.host())
}

/// Starts the webhooks' tail and one delivery task per sink, and the mail tail with its
/// delivery task (see [`feed`], [`deliver`], [`email`]), each on the task driver;
/// nothing when neither is configured. Times come from `clock`. The returned handle
/// finishes once all of them have stopped (on `shutdown`).
pub fn spawn(
    store: Store,
    settings: &NotificationSettings,
    email: &EmailSettings,
    metrics: &Metrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let counters = Counters::register(metrics);
    let mut handles = Vec::new();
    if !settings.webhooks.is_empty() {
        handles.push(spawn_webhooks(
            store.clone(),
            settings,
            &counters,
            metrics,
            clock.clone(),
            shutdown.clone(),
        ));
    }
    match email::spawn(store, email, settings, &counters, metrics, clock, shutdown) {
        Ok(Some(h)) => handles.push(h),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "mail notifications not started"),
    }
    if handles.is_empty() {
        return None;
    }
    // The handle ends only when every tail and delivery task has: a daemon that waits
    // for it at shutdown leaves no delivery half-sent behind its back.
    Some(tokio::spawn(async move {
        for h in handles {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "a notification task ended abnormally");
            }
        }
    }))
}

fn spawn_webhooks(
    store: Store,
    settings: &NotificationSettings,
    counters: &Counters,
    metrics: &Metrics,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .unwrap_or_default();
    let mut sinks = Vec::new();
    let mut deliveries = Vec::new();
    for (i, w) in settings.webhooks.iter().enumerate() {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let label = sink_label(i, &w.url);
        counters.init(&label);
        let progress = Arc::new(feed::Progress::default());
        let delivery = deliver::Delivery {
            rx,
            sink: w.clone(),
            label: label.clone(),
            http: http.clone(),
            retries: settings.retries,
            backoff: settings.backoff,
            counters: counters.clone(),
            progress: progress.clone(),
        };
        let delivery = Driver::new(delivery, metrics.tasks().clone());
        deliveries.push(tokio::spawn(delivery.run(shutdown.clone())));
        sinks.push(feed::Sink {
            label,
            events: w.events.clone(),
            tx,
            format: w.format.clone().unwrap_or_else(|| "json".to_owned()),
            progress,
        });
    }
    let interval = settings.poll_interval;
    let tail = feed::Feed {
        store,
        sinks,
        counters: counters.clone(),
        clock,
        interval,
        cursor_key: crate::store::NOTIFY_CURSOR,
        cursor: None,
        stored: 0,
    };
    let tail = Driver::new(tail, metrics.tasks().clone()).backoff(Backoff::new(interval, interval));
    tokio::spawn(async move {
        tail.run(shutdown).await;
        for d in deliveries {
            if let Err(e) = d.await {
                tracing::error!(error = %e, "a webhook delivery task ended abnormally");
            }
        }
    })
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
