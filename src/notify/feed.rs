//! The tail of the audit trail as a [`Task`]: each pass reads the events after the
//! cursor (a page at a time; a full page is followed at once), fans them out to the
//! sinks' queues and stores the cursor up to which every sink is done. It runs again
//! every `[notifications] poll_interval`. The first pass reads the stored cursor (or, on
//! the very first start, the newest event). When the daemon stops, the cursor is stored
//! once more ([`Task::stopped`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::deliver::Job;
use super::{Counters, payload};
use crate::clock::Clock;
use crate::store::{FeedEvent, Store, StoreError};
use crate::task::{Action, Pass, Task};

/// Events read per query of the tail.
const PAGE: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("notifications: cannot read the audit trail: {0}")]
    Start(#[source] StoreError),
    #[error("notifications: cannot read new events: {0}")]
    Read(#[source] StoreError),
}

/// One sink as the tail sees it: which events it wants, in which format, and its queue.
pub(super) struct Sink {
    pub(super) label: String,
    pub(super) events: Vec<String>,
    pub(super) tx: mpsc::Sender<Job>,
    pub(super) format: String,
    pub(super) progress: Arc<Progress>,
}

/// What a sink's delivery task has finished, for the stored cursor.
#[derive(Default)]
pub(super) struct Progress {
    /// Jobs queued or in flight.
    pub(super) open: AtomicUsize,
    /// Event id of the last job finished (delivered or given up); jobs run in order.
    pub(super) done_through: AtomicI64,
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

/// The tail: reads `events` after its cursor and fans them out.
pub(super) struct Feed {
    pub(super) store: Store,
    pub(super) sinks: Vec<Sink>,
    pub(super) counters: Counters,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) interval: Duration,
    /// The `settings` key of this tail's stored cursor (each tail has its own).
    pub(super) cursor_key: &'static str,
    /// The last event fanned out; `None` until the first pass has read the start.
    pub(super) cursor: Option<i64>,
    /// The cursor as stored.
    pub(super) stored: i64,
}

impl Task for Feed {
    const NAME: &'static str = "notifier";
    type Error = FeedError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, FeedError> {
        let mut cursor = match self.cursor {
            Some(c) => c,
            None => {
                let c = start_cursor(&self.store, self.cursor_key, self.clock.as_ref())
                    .await
                    .map_err(FeedError::Start)?;
                tracing::info!(
                    cursor = self.cursor_key,
                    sinks = self.sinks.len(),
                    from_event = c,
                    "notifications started"
                );
                self.cursor = Some(c);
                self.stored = c;
                c
            }
        };
        let read = self.store.feed_events(cursor, PAGE).await;
        if let Ok(batch) = &read {
            for ev in batch {
                cursor = ev.id;
                fan_out(ev, &self.sinks, &self.counters);
            }
            self.cursor = Some(cursor);
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                cx.worked_on(format_args!("events:{}..={}", first.id, last.id));
            }
            if batch.len() as i64 == PAGE {
                return Ok(Action::requeue(Duration::ZERO));
            }
        }
        self.store_cursor().await;
        read.map_err(FeedError::Read)?;
        Ok(Action::requeue(self.interval))
    }

    /// The old loop retried every `poll_interval`; so does this one.
    fn error_policy(&self, _error: &FeedError, _backoff: Duration) -> Action {
        Action::requeue(self.interval)
    }

    async fn stopped(&mut self) {
        if self.cursor.is_some() {
            self.store_cursor().await;
        }
    }
}

impl Feed {
    /// Stores the safe cursor when it moved past the stored one.
    async fn store_cursor(&mut self) {
        let Some(cursor) = self.cursor else {
            return;
        };
        let safe = safe_cursor(&self.sinks, cursor);
        if safe <= self.stored {
            return;
        }
        let stored = self
            .store
            .set_feed_cursor(self.cursor_key, safe, self.clock.now())
            .await;
        match stored {
            Ok(()) => self.stored = safe,
            Err(e) => {
                tracing::warn!(cursor = self.cursor_key, error = %e, "notifications: cannot store the cursor");
            }
        }
    }
}

/// The stored cursor, or the newest event on the first start (history is not replayed);
/// a cursor past the newest event (the database was replaced) starts at the newest.
async fn start_cursor(store: &Store, key: &str, clock: &dyn Clock) -> Result<i64, StoreError> {
    let last = store.last_event_id().await?;
    match store.feed_cursor(key).await? {
        Some(c) if c <= last => {
            if c < last {
                tracing::info!(
                    cursor = key,
                    events = last - c,
                    "notifications: sending events written since the last run"
                );
            }
            Ok(c)
        }
        _ => {
            store.set_feed_cursor(key, last, clock.now()).await?;
            Ok(last)
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
        let body = if s.format == "email" {
            Vec::new()
        } else {
            payload::body(kind, ev, &s.format).to_string().into_bytes()
        };
        let job = Job {
            kind,
            body,
            event_id: ev.id,
            event: ev.clone(),
        };
        s.progress.open.fetch_add(1, Ordering::AcqRel);
        if s.tx.try_send(job).is_err() {
            s.progress.open.fetch_sub(1, Ordering::AcqRel);
            counters.inc(&s.label, "dropped");
            tracing::warn!(sink = %s.label, event_id = ev.id, kind, "notification queue full; dropped");
        }
    }
}
