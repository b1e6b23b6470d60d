//! Table `snapshots`: the row type, its writes and plain reads. Written by the snapshot
//! module on the reconciler's behalf (`writing` → `complete` or `failed`, and `deleted`
//! by retention) and by the API (`admin`: an operator's release and deletion, audited).
//! A snapshot is `writing` until its file is complete, renamed into place and
//! checksummed; only `complete` rows are ever restored from. `facts` reads what
//! retention and the API decide protection on.
//!
//! The table has no writer that races another on the same column: the state moves
//! `writing` → `complete` only with `state = 'writing'` as its condition, and the
//! operator's writes run under the write lock with the row re-read inside the
//! transaction; each bumps `version`.

mod admin;
mod facts;

pub use admin::Released;
pub use facts::{ProtectedReason, SnapshotFacts, SnapshotInfo, SnapshotUpdate};

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::{SnapshotId, SnapshotState};

#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRow {
    pub id: SnapshotId,
    pub workspace_id: i64,
    pub update_id: Option<i64>,
    pub volume: String,
    pub path: String,
    pub size_bytes: i64,
    pub sha256: Option<String>,
    pub state: SnapshotState,
    pub created_at: DateTime<Utc>,
    /// Where the volume was mounted when the snapshot was taken (`None`: older rows).
    pub mount_path: Option<String>,
    /// How the tree was read: `host` or `archive` (see [`crate::snapshot`]).
    pub method: Option<String>,
    /// sha256 of the tree's manifest, checked after every restore.
    pub manifest_sha256: Option<String>,
    /// Entries (files, directories, links) in the tree.
    pub entries: Option<i64>,
    /// An operator lifted this snapshot's protection from retention.
    pub released_at: Option<DateTime<Utc>>,
}

/// The columns as stored.
#[derive(sqlx::FromRow)]
pub(super) struct Raw {
    id: String,
    workspace_id: i64,
    update_id: Option<i64>,
    volume: String,
    path: String,
    size_bytes: i64,
    sha256: Option<String>,
    state: String,
    created_at: i64,
    mount_path: Option<String>,
    method: Option<String>,
    manifest_sha256: Option<String>,
    entries: Option<i64>,
    released_at: Option<i64>,
}

pub(super) const COLS: &str = "id, workspace_id, update_id, volume, path, size_bytes, sha256, state, \
                    created_at, mount_path, method, manifest_sha256, entries, released_at";

pub(super) fn to_row(r: Raw) -> Result<SnapshotRow, StoreError> {
    Ok(SnapshotRow {
        id: SnapshotId::parse(&r.id).map_err(|e| StoreError::Corrupt {
            what: "snapshot",
            message: e.to_string(),
        })?,
        workspace_id: r.workspace_id,
        update_id: r.update_id,
        volume: r.volume,
        path: r.path,
        size_bytes: r.size_bytes,
        sha256: r.sha256,
        state: SnapshotState::parse(&r.state).map_err(|e| StoreError::Corrupt {
            what: "snapshot",
            message: e.to_string(),
        })?,
        created_at: from_millis(r.created_at),
        mount_path: r.mount_path,
        method: r.method,
        manifest_sha256: r.manifest_sha256,
        entries: r.entries,
        released_at: r.released_at.map(from_millis),
    })
}

/// What a finished snapshot holds, recorded when it is marked complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotDone {
    pub size: u64,
    pub sha256: String,
    /// The tree's manifest digest and entry count, when the method computed them.
    pub manifest_sha256: Option<String>,
    pub entries: Option<u64>,
    pub method: &'static str,
}

impl Store {
    #[allow(clippy::too_many_arguments)] // reason: each is one column of the new row
    pub async fn insert_snapshot(
        &self,
        id: &SnapshotId,
        workspace_id: i64,
        update_id: Option<i64>,
        volume: &str,
        mount_path: &str,
        path: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (id, workspace_id, update_id, volume, mount_path, path, state, \
             created_at, host) VALUES ($1, $2, $3, $4, $5, $6, 'writing', $7, \
             (SELECT host FROM workspaces WHERE id = $2))",
        )
        .bind(id.as_str())
        .bind(workspace_id)
        .bind(update_id)
        .bind(volume)
        .bind(mount_path)
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
        done: &SnapshotDone,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE snapshots SET state = 'complete', size_bytes = $1, sha256 = $2, \
             manifest_sha256 = $3, entries = $4, method = $5, version = version + 1 \
             WHERE id = $6 AND state = 'writing'",
        )
        .bind(i64::try_from(done.size).unwrap_or(i64::MAX))
        .bind(&done.sha256)
        .bind(&done.manifest_sha256)
        .bind(done.entries.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
        .bind(done.method)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .ctx("complete snapshot")?;
        Ok(())
    }

    /// Records how a `writing` snapshot is being taken (before its first byte), so an
    /// interrupted attempt knows what it left.
    pub async fn set_snapshot_method(
        &self,
        id: &SnapshotId,
        method: &'static str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE snapshots SET method = $1, version = version + 1 \
             WHERE id = $2 AND state = 'writing'",
        )
        .bind(method)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .ctx("set snapshot method")?;
        Ok(())
    }

    /// The journal's record that a `writing` snapshot's pre-copy is written.
    pub async fn mark_snapshot_precopied(
        &self,
        id: &SnapshotId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE snapshots SET precopied_at = $1, version = version + 1 \
             WHERE id = $2 AND state = 'writing'",
        )
        .bind(to_millis(now))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .ctx("mark snapshot precopied")?;
        Ok(())
    }

    /// When a snapshot's pre-copy was written (`None`: not, or taken without one).
    pub async fn snapshot_precopied_at(
        &self,
        id: &SnapshotId,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<i64>> =
            sqlx::query_scalar("SELECT precopied_at FROM snapshots WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .ctx("snapshot precopied_at")?;
        Ok(at.flatten().map(from_millis))
    }

    /// Sets `failed` or `deleted`.
    pub async fn set_snapshot_state(
        &self,
        id: &SnapshotId,
        state: SnapshotState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE snapshots SET state = $1, version = version + 1 WHERE id = $2")
            .bind(state.as_str())
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

    /// The newest complete snapshot of `volume` of a workspace, if any.
    pub async fn newest_complete_snapshot(
        &self,
        workspace_id: i64,
        volume: &str,
    ) -> Result<Option<SnapshotRow>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM snapshots WHERE workspace_id = $1 AND volume = $2 \
             AND state = 'complete' ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let raw: Option<Raw> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(volume)
            .fetch_optional(&self.pool)
            .await
            .ctx("newest complete snapshot")?;
        raw.map(to_row).transpose()
    }
}
