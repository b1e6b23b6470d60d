//! Table `workspace_updates` read for people: a workspace's attempts, newest first, with
//! when each started, last moved and finished (the dashboard's update history). Read
//! only; the rows are written by the reconciler (`journal`) and by the API
//! (`restore_queue`, `recovery`).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{COLS, UpdateRow, corrupt, from_row};
use crate::clock::from_millis;
use crate::store::{QueryContext, Store, StoreError};

/// One attempt with its times.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateAttempt {
    pub row: UpdateRow,
    pub started_at: DateTime<Utc>,
    /// When the journal row last moved (its current phase began).
    pub updated_at: DateTime<Utc>,
    /// Set once the attempt reached a final phase.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Store {
    /// A workspace's newest `limit` journal rows, newest first.
    pub async fn update_history(
        &self,
        workspace_id: i64,
        limit: i64,
    ) -> Result<Vec<UpdateAttempt>, StoreError> {
        let sql = format!(
            "SELECT {COLS}, started_at, updated_at, finished_at FROM workspace_updates \
             WHERE workspace_id = $1 ORDER BY id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .ctx("update history")?;
        rows.iter()
            .map(|r| {
                Ok(UpdateAttempt {
                    row: from_row(r)?,
                    started_at: from_millis(r.try_get("started_at").map_err(corrupt)?),
                    updated_at: from_millis(r.try_get("updated_at").map_err(corrupt)?),
                    finished_at: r
                        .try_get::<Option<i64>, _>("finished_at")
                        .map_err(corrupt)?
                        .map(from_millis),
                })
            })
            .collect()
    }
}
