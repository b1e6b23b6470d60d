//! `GET /api/v1/events/stream`: the audit trail as server-sent events, one per entry
//! (`id:` the event id, `event:` its action, `data:` the entry as `GET /api/v1/events`
//! renders it).
//!
//! Each connection tails the `events` table itself: it reads at most [`BATCH`] entries
//! after its cursor, sends them, and when there are none waits [`POLL`] before reading
//! again. Polling the table, rather than a wake-up, works the same on SQLite and on
//! PostgreSQL, where the entry may have been written by another instance (the leader's
//! loops) that no local wake-up hears of. A connection holds at most one batch: the next
//! read happens only once the client has taken the last one, so a slow client slows its
//! own stream and costs no memory. A stream starts after the newest entry, or after
//! `Last-Event-ID` (what a browser's `EventSource` sends when it reconnects) or `?since=`,
//! so a client that reconnects misses nothing. At most [`MAX_STREAMS`] run at once; all
//! of them end when the daemon stops, so they never hold up the shutdown's drain.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::error::ApiError;
use super::extract::ApiQuery;
use crate::store::{Event, Store};

/// The most entries one read takes, and so the most one connection holds.
pub const BATCH: i64 = 100;
/// How long a stream waits before reading again when it is up to date.
pub const POLL: Duration = Duration::from_millis(500);
/// How often an idle stream sends a comment, so proxies and clients keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How many streams may be open at once; one more is refused with 503.
pub const MAX_STREAMS: usize = 64;

/// The open streams: their slots and the signal that ends them at shutdown.
#[derive(Clone, Debug)]
pub struct EventStreams {
    /// Cancelled when the daemon stops: every stream ends, so the HTTP drain can finish.
    closing: CancellationToken,
    /// [`MAX_STREAMS`] permits; each stream holds one until its client goes away.
    slots: Arc<Semaphore>,
}

impl Default for EventStreams {
    fn default() -> Self {
        Self {
            closing: CancellationToken::new(),
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }
}

impl EventStreams {
    /// Ends every open stream and every one opened later.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// A stream of the entries after `after`, in one of the [`MAX_STREAMS`] slots.
    /// `named`: each event carries its action as `event:` (the API); without, every
    /// entry reaches an `EventSource`'s `onmessage` (the dashboard's script).
    pub fn follow(&self, store: Store, after: i64, named: bool) -> Result<Response, ApiError> {
        let slot = self.open()?;
        Ok(respond(store, self.closing.clone(), after, slot, named))
    }

    /// A slot for one more stream, or 503 when [`MAX_STREAMS`] are open.
    pub fn open(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(
                "too_many_streams",
                format!("{MAX_STREAMS} event streams are open; try again later"),
            )
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    #[serde(default)]
    pub since: Option<i64>,
}

/// The id a stream starts after: `Last-Event-ID`, else `?since=`, else the newest entry.
pub async fn resume_point(
    store: &Store,
    headers: &HeaderMap,
    since: Option<i64>,
) -> Result<i64, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        let text = v.to_str().unwrap_or_default().trim();
        return match text.parse::<i64>() {
            Ok(id) if id >= 0 => Ok(id),
            _ => Err(ApiError::bad_request(
                "invalid_last_event_id",
                format!("Last-Event-ID: must be an event id (0 or more), got {text:?}"),
            )),
        };
    }
    match since {
        Some(id) if id < 0 => Err(ApiError::bad_request(
            "invalid_query",
            format!("since: must be 0 or more, got {id}"),
        )),
        Some(id) => Ok(id),
        None => Ok(store.last_event_id().await?),
    }
}

pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let after = resume_point(&state.store, &headers, q.since).await?;
    state.streams.follow(state.store.clone(), after, true)
}

/// The `text/event-stream` answer tailing the audit trail after `after`; shared by every
/// surface that streams events.
pub fn respond(
    store: Store,
    closing: CancellationToken,
    after: i64,
    slot: OwnedSemaphorePermit,
    named: bool,
) -> Response {
    let tail = Tail {
        named,
        store,
        closing,
        cursor: after,
        pending: VecDeque::new(),
        _slot: slot,
    };
    let events = futures_util::stream::unfold(tail, Tail::next);
    let mut response = sse(events).into_response();
    // Tells nginx not to buffer the stream (the deploy examples put it in front).
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    debug_assert_eq!(response.status(), StatusCode::OK);
    response
}

fn sse<S>(events: S) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
}

/// One connection's place in the audit trail.
struct Tail {
    store: Store,
    /// Whether events carry their action as `event:`.
    named: bool,
    closing: CancellationToken,
    /// The id of the last entry sent (or the resume point).
    cursor: i64,
    /// Read, not yet sent: at most one [`BATCH`].
    pending: VecDeque<Event>,
    /// Released when the client goes away and the stream is dropped.
    _slot: OwnedSemaphorePermit,
}

impl Tail {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Tail)> {
        loop {
            if self.closing.is_cancelled() {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                self.cursor = ev.id;
                return Some((Ok(render(&ev, self.named)), self));
            }
            match self.store.events(self.cursor, BATCH).await {
                Ok(batch) => self.pending.extend(batch),
                Err(e) => {
                    tracing::warn!(error = %e, after = self.cursor,
                        "event stream: cannot read the audit trail; reading again shortly");
                }
            }
            if self.pending.is_empty() {
                tokio::select! {
                    () = self.closing.cancelled() => return None,
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }
}

/// One entry as a server-sent event.
pub fn render(ev: &Event, named: bool) -> SseEvent {
    // A field value may not hold a line break; actions are words, but never panic on one.
    let action: String = ev
        .action
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let mut out = SseEvent::default().id(ev.id.to_string());
    if named {
        out = out.event(action);
    }
    match serde_json::to_string(ev) {
        Ok(json) => out.data(json),
        Err(e) => out.comment(format!("entry {} could not be rendered: {e}", ev.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, action: &str) -> Event {
        Event {
            id,
            at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap_or_default(),
            actor: "ops".into(),
            subject: "fleet".into(),
            action: action.into(),
            detail: serde_json::json!({"before": "auto", "after": "paused"}),
        }
    }

    #[test]
    fn an_entry_renders_with_its_id_action_and_json() {
        let text = format!("{:?}", render(&event(42, "fleet.mode_changed"), true));
        assert!(text.contains("42"), "{text}");
        assert!(text.contains("fleet.mode_changed"), "{text}");
        assert!(text.contains("\\\"after\\\":\\\"paused\\\""), "{text}");
    }

    #[test]
    fn a_line_break_in_an_action_does_not_panic() {
        let _ = render(&event(1, "a\nb"), true);
    }

    #[test]
    fn streams_are_bounded() {
        let s = EventStreams::default();
        let held: Vec<_> = (0..MAX_STREAMS).map(|_| s.open().expect("slot")).collect();
        assert!(s.open().is_err());
        drop(held);
        assert!(s.open().is_ok());
    }
}
