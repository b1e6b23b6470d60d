//! Snapshot rows. A snapshot is `writing` until its file is complete, renamed into place
//! and checksummed; only `complete` rows are ever restored from.

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::SnapshotId;

#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRow {
    pub id: SnapshotId,
    pub workspace_id: i64,
    pub update_id: Option<i64>,
    pub volume: String,
    pub path: String,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

type Raw = (
    String,
    i64,
    Option<i64>,
    String,
    String,
    i64,
    Option<String>,
    String,
    i64,
);
/// A row plus whether an unfinished update needs it.
type RawNeeded = (
    String,
    i64,
    Option<i64>,
    String,
    String,
    i64,
    Option<String>,
    String,
    i64,
    bool,
);
const COLS: &str =
    "id, workspace_id, update_id, volume, path, size_bytes, sha256, state, created_at";

fn to_row(r: Raw) -> Result<SnapshotRow, StoreError> {
    Ok(SnapshotRow {
        id: SnapshotId::parse(&r.0).map_err(|e| StoreError::Corrupt {
            what: "snapshot",
            message: e.to_string(),
        })?,
        workspace_id: r.1,
        update_id: r.2,
        volume: r.3,
        path: r.4,
        size_bytes: r.5,
        sha256: r.6,
        state: r.7,
        created_at: from_millis(r.8),
    })
}

impl Store {
    pub async fn insert_snapshot(
        &self,
        id: &SnapshotId,
        workspace_id: i64,
        update_id: Option<i64>,
        volume: &str,
        path: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (id, workspace_id, update_id, volume, path, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'writing', $6)",
        )
        .bind(id.as_str())
        .bind(workspace_id)
        .bind(update_id)
        .bind(volume)
        .bind(path)
        .bind(to_millis(now))
        .execute(&self.pool)
        .await
        .ctx("insert snapshot")?;
        Ok(())
    }

    pub async fn complete_snapshot(
        &self,
        id: &SnapshotId,
        size: u64,
        sha256: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE snapshots SET state = 'complete', size_bytes = $1, sha256 = $2, \
             version = version + 1 WHERE id = $3 AND state = 'writing'",
        )
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(sha256)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .ctx("complete snapshot")?;
        Ok(())
    }

    /// Sets `failed` or `deleted`.
    pub async fn set_snapshot_state(&self, id: &SnapshotId, state: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE snapshots SET state = $1, version = version + 1 WHERE id = $2")
            .bind(state)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .ctx("set snapshot state")?;
        Ok(())
    }

    pub async fn snapshot(&self, id: &SnapshotId) -> Result<SnapshotRow, StoreError> {
        let sql = format!("SELECT {COLS} FROM snapshots WHERE id = $1");
        let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("get snapshot")?;
        to_row(raw.ok_or_else(|| StoreError::NotFound {
            what: "snapshot",
            key: id.to_string(),
        })?)
    }

    /// Snapshots of one update attempt.
    pub async fn snapshots_of_update(
        &self,
        update_id: i64,
    ) -> Result<Vec<SnapshotRow>, StoreError> {
        let sql = format!("SELECT {COLS} FROM snapshots WHERE update_id = $1 ORDER BY created_at");
        let raw: Vec<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(update_id)
            .fetch_all(&self.pool)
            .await
            .ctx("list snapshots of update")?;
        raw.into_iter().map(to_row).collect()
    }

    /// Every snapshot not yet deleted, newest first per (workspace, volume), with whether
    /// an unfinished journal row still references it, or a rollback with `restore_data`
    /// that has not been done yet (`rollout_targets.restore_done_at IS NULL`) names its
    /// update.
    pub async fn live_snapshots(&self) -> Result<Vec<(SnapshotRow, bool)>, StoreError> {
        let sql = format!(
            "SELECT {COLS}, (update_id IS NOT NULL AND EXISTS (SELECT 1 FROM workspace_updates u \
             WHERE u.id = snapshots.update_id AND u.phase NOT IN \
             ('succeeded', 'rolled_back', 'failed', 'quarantined')) \
             OR update_id IN (SELECT t.restore_snapshot_of_update_id FROM rollout_targets t \
             WHERE t.restore_snapshot_of_update_id IS NOT NULL \
             AND t.restore_done_at IS NULL)) AS needed \
             FROM snapshots WHERE state <> 'deleted' \
             ORDER BY workspace_id, volume, created_at DESC, id DESC"
        );
        let raw: Vec<RawNeeded> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list live snapshots")?;
        raw.into_iter()
            .map(|r| Ok((to_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8))?, r.9)))
            .collect()
    }
}
