//! Operator reads of releases and the `reject` decision (audited with its actor).
//! Writer: the API (`reject`), on behalf of an operator.

use chrono::{DateTime, Utc};

use super::super::events::append_event_in;
use super::super::{NewEvent, QueryContext, Store, StoreError};
use super::{COLUMNS, Release, from_row};
use crate::clock::to_millis;
use crate::domain::ReleaseStatus;

/// What `reject` did.
#[derive(Clone, Debug, PartialEq)]
pub enum RejectOutcome {
    Rejected(Release),
    /// It was rejected before; nothing changed.
    AlreadyRejected(Release),
    /// Its rollout has started or finished: abort or roll back the rollout instead.
    NotRejectable(ReleaseStatus),
}

impl Store {
    /// Releases, newest first, optionally of one status.
    pub async fn list_releases(
        &self,
        status: Option<ReleaseStatus>,
        limit: i64,
    ) -> Result<Vec<Release>, StoreError> {
        let rows = match status {
            Some(st) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM releases WHERE status = $1 ORDER BY id DESC LIMIT $2"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(st.as_str())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql = format!("SELECT {COLUMNS} FROM releases ORDER BY id DESC LIMIT $1");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .ctx("list releases")?;
        rows.iter().map(from_row).collect()
    }

    /// Marks a release `rejected` (never rolled out) and audits it, if it has not started.
    pub async fn reject_release(
        &self,
        id: i64,
        reason: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<RejectOutcome, StoreError> {
        // Read first, then a transaction whose first statement is the versioned UPDATE.
        let rel = self.release(id).await?;
        match rel.status {
            ReleaseStatus::Rejected => return Ok(RejectOutcome::AlreadyRejected(rel)),
            ReleaseStatus::Queued | ReleaseStatus::Blocked | ReleaseStatus::Superseded => {}
            other => return Ok(RejectOutcome::NotRejectable(other)),
        }
        let reason = reason.unwrap_or("rejected by operator");
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let done = sqlx::query(
            "UPDATE releases SET status = 'rejected', status_reason = $1, updated_at = $2, \
             version = version + 1 WHERE id = $3 AND version = $4",
        )
        .bind(reason)
        .bind(to_millis(now))
        .bind(id)
        .bind(rel.version)
        .execute(&mut *tx)
        .await
        .ctx("reject release")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: "release",
                key: id.to_string(),
            });
        }
        let ev = NewEvent {
            actor: actor.to_owned(),
            subject: format!("release:{id}"),
            action: "release.rejected".to_owned(),
            detail: serde_json::json!({
                "before": rel.status.as_str(), "reason": reason,
                "image": rel.image, "digest": rel.digest.as_str(),
            }),
            rollout_id: None,
            workspace: None,
        };
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit")?;
        let sql = format!("SELECT {COLUMNS} FROM releases WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .ctx("get release")?;
        Ok(RejectOutcome::Rejected(from_row(&row)?))
    }
}
