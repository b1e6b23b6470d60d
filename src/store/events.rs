//! Table `events`: the append-only audit trail (the database refuses UPDATE and DELETE
//! on it). Appended by every writer of a state change, inside that change's transaction
//! ([`append_event_in`]); read by the API (`events`) and tailed by the notifier
//! ([`Store::feed_events`]), whose delivery cursors (`settings` keys `notify_cursor`
//! for webhooks, `email_cursor` for mail) are written only by the notifier.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::AnyConnection;

use super::{QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};

/// An audit entry about to be written.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Token name of an operator, or `system`.
    pub actor: String,
    /// What it is about: `workspace:acme`, `rollout:3`, `release:7`, `fleet`.
    pub subject: String,
    pub action: String,
    /// Free-form JSON: before/after, reason, counts.
    pub detail: serde_json::Value,
    pub rollout_id: Option<i64>,
    pub workspace: Option<String>,
}

/// An audit entry as stored and served.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub subject: String,
    pub action: String,
    pub detail: serde_json::Value,
}

impl Store {
    /// Appends one event on its own.
    pub async fn append_event(&self, ev: &NewEvent, now: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire connection")?;
        append_event_in(&mut conn, ev, now).await
    }

    /// Events with an id above `since`, oldest first, at most `limit`.
    pub async fn events(&self, since: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<(i64, i64, String, String, String, String)> = sqlx::query_as(
            "SELECT id, at, actor, subject, action, detail FROM events WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("list events")?;
        Ok(rows
            .into_iter()
            .map(|(id, at, actor, subject, action, detail)| Event {
                id,
                at: from_millis(at),
                actor,
                subject,
                action,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
            .collect())
    }
}

/// Appends an event inside a caller's transaction, so a state change and its audit entry
/// commit together or not at all.
pub(crate) async fn append_event_in(
    conn: &mut AnyConnection,
    ev: &NewEvent,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "INSERT INTO events (at, actor, subject, action, detail, rollout_id, workspace) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(to_millis(now))
    .bind(&ev.actor)
    .bind(&ev.subject)
    .bind(&ev.action)
    .bind(ev.detail.to_string())
    .bind(ev.rollout_id)
    .bind(&ev.workspace)
    .fetch_one(&mut *conn)
    .await
    .ctx("append event")
}

/// The webhooks' cursor (`settings` key).
pub const NOTIFY_CURSOR: &str = "notify_cursor";

/// An audit event with everything a notification carries.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub subject: String,
    pub action: String,
    pub detail: serde_json::Value,
    pub rollout_id: Option<i64>,
    pub workspace: Option<String>,
}

impl Store {
    /// Where the notification feed stopped: every event up to this id was delivered or
    /// given up by every sink (None before the first start with sinks).
    pub async fn notify_cursor(&self) -> Result<Option<i64>, StoreError> {
        self.feed_cursor(NOTIFY_CURSOR).await
    }

    pub async fn set_notify_cursor(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.set_feed_cursor(NOTIFY_CURSOR, id, now).await
    }

    /// The cursor of one tail of the audit trail (a `settings` row: `notify_cursor` for
    /// the webhooks, `email_cursor` for mail), None before its first start.
    pub async fn feed_cursor(&self, key: &str) -> Result<Option<i64>, StoreError> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx("get notification cursor")?;
        v.map(|v| {
            v.parse().map_err(|e| StoreError::Corrupt {
                what: "notification cursor",
                message: format!("{key} {v:?}: {e}"),
            })
        })
        .transpose()
    }

    pub async fn set_feed_cursor(
        &self,
        key: &str,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
             updated_at = excluded.updated_at, version = settings.version + 1",
        )
        .bind(key)
        .bind(id.to_string())
        .bind(to_millis(now))
        .execute(&self.pool)
        .await
        .ctx("set notification cursor")?;
        Ok(())
    }

    /// The newest event id (0 when there is none): where a new feed starts.
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM events")
            .fetch_one(&self.pool)
            .await
            .ctx("last event id")?;
        Ok(id.unwrap_or(0))
    }

    /// Events after `since`, oldest first, at most `limit`.
    pub async fn feed_events(&self, since: i64, limit: i64) -> Result<Vec<FeedEvent>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            String,
            String,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, actor, subject, action, detail, rollout_id, workspace FROM events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("feed events")?;
        Ok(rows
            .into_iter()
            .map(
                |(id, at, actor, subject, action, detail, rollout_id, workspace)| FeedEvent {
                    id,
                    at: from_millis(at),
                    actor,
                    subject,
                    action,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                    rollout_id,
                    workspace,
                },
            )
            .collect())
    }
}
