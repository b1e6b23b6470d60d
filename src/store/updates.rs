//! The update journal (`workspace_updates`): one row per attempt; the phase is written
//! *before* the step acts, so a restarted daemon knows where every saga stood. Terminal
//! outcomes are written together with the workspace's observed state, the
//! `failed_digests` memory and the audit event, in one transaction.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::to_millis;
use crate::domain::{Digest, Health, SnapshotId, UpdatePhase, WorkspaceState};

/// One journal row.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateRow {
    pub id: i64,
    pub workspace_id: i64,
    pub rollout_id: Option<i64>,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub phase: UpdatePhase,
    pub snapshot_ids: Vec<SnapshotId>,
    pub error: Option<String>,
    /// `update` (a digest change), `restore` (operator `snapshot restore`) or `recover`
    /// (operator `workspace recover`).
    pub kind: UpdateKind,
    /// Restore and recover rows: exactly the snapshots this attempt restores.
    pub restore_snapshot_ids: Vec<SnapshotId>,
}

/// Why a journal row exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateKind {
    Update,
    Restore,
    Recover,
}

impl UpdateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::Restore => "restore",
            Self::Recover => "recover",
        }
    }
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "update" => Ok(Self::Update),
            "restore" => Ok(Self::Restore),
            "recover" => Ok(Self::Recover),
            other => Err(format!("unknown update kind {other:?}")),
        }
    }
}

/// An open journal row that this version cannot read.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableRow {
    pub id: i64,
    pub workspace_id: i64,
    /// What could not be read.
    pub error: String,
}

/// A workspace the reconciler should converge.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergeTarget {
    pub workspace_id: i64,
    pub name: String,
    pub rollout_id: Option<i64>,
}

/// How a saga ended, and what the workspace looks like afterwards.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The phase the row is in now: the terminal write is a compare-and-set on it.
    pub from_phase: UpdatePhase,
    pub phase: UpdatePhase,
    pub error: Option<String>,
    /// What now runs (None: nothing).
    pub actual_digest: Option<Digest>,
    pub container_id: Option<String>,
    pub state: WorkspaceState,
    pub health: Health,
    /// Remember `to_digest` in `failed_digests` (not retried by itself).
    pub remember_failure: bool,
    /// Reset `desired_digest` to `actual_digest` (when it still is `to_digest`).
    pub reset_desired: bool,
    /// A rollback-with-restore of this update id's snapshots was done: stamp
    /// `rollout_targets.restore_done_at` for (rollout, workspace).
    pub restored_from_update: Option<i64>,
    pub event: NewEvent,
}

const OPEN: &str = "('succeeded', 'rolled_back', 'failed', 'quarantined')";
const COLS: &str = "id, workspace_id, rollout_id, from_digest, to_digest, phase, snapshot_ids, \
                    error, kind, restore_snapshot_ids";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "workspace update",
        message: e.to_string(),
    }
}

/// A compare-and-set that changed no row: someone else moved the journal row on.
fn stale_unless_one(rows: u64, id: i64, from: UpdatePhase) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            what: "update journal row",
            key: format!("{id} (no longer in phase {from})"),
        })
    }
}

fn snapshot_ids(json: &str) -> Result<Vec<SnapshotId>, StoreError> {
    let ids: Vec<String> = serde_json::from_str(json).map_err(corrupt)?;
    ids.iter()
        .map(|s| SnapshotId::parse(s))
        .collect::<Result<_, _>>()
        .map_err(corrupt)
}

fn from_row(r: &SqliteRow) -> Result<UpdateRow, StoreError> {
    Ok(UpdateRow {
        id: r.try_get("id").map_err(corrupt)?,
        workspace_id: r.try_get("workspace_id").map_err(corrupt)?,
        rollout_id: r.try_get("rollout_id").map_err(corrupt)?,
        from_digest: r
            .try_get::<Option<String>, _>("from_digest")
            .map_err(corrupt)?
            .map(|d| Digest::parse(&d))
            .transpose()
            .map_err(corrupt)?,
        to_digest: Digest::parse(&r.try_get::<String, _>("to_digest").map_err(corrupt)?)
            .map_err(corrupt)?,
        phase: UpdatePhase::parse(&r.try_get::<String, _>("phase").map_err(corrupt)?)
            .map_err(corrupt)?,
        snapshot_ids: snapshot_ids(&r.try_get::<String, _>("snapshot_ids").map_err(corrupt)?)?,
        error: r.try_get("error").map_err(corrupt)?,
        kind: UpdateKind::parse(&r.try_get::<String, _>("kind").map_err(corrupt)?)
            .map_err(corrupt)?,
        restore_snapshot_ids: r
            .try_get::<Option<String>, _>("restore_snapshot_ids")
            .map_err(corrupt)?
            .map(|j| snapshot_ids(&j))
            .transpose()?
            .unwrap_or_default(),
    })
}

impl Store {
    /// Workspaces whose desired digest differs from what runs, that are not quarantined,
    /// have no open journal row and whose desired digest has not failed on them.
    pub async fn converge_targets(&self) -> Result<Vec<ConvergeTarget>, StoreError> {
        let sql = format!(
            "SELECT w.id, w.name, w.desired_rollout_id FROM workspaces w \
             WHERE w.deleted_at IS NULL AND w.desired_digest IS NOT NULL \
             AND (w.actual_digest IS NULL OR w.desired_digest <> w.actual_digest) \
             AND w.state <> 'quarantined' \
             AND NOT EXISTS (SELECT 1 FROM failed_digests f \
                 WHERE f.workspace_id = w.id AND f.digest = w.desired_digest) \
             AND NOT EXISTS (SELECT 1 FROM workspace_updates u \
                 WHERE u.workspace_id = w.id AND u.phase NOT IN {OPEN}) \
             ORDER BY w.name"
        );
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list converge targets")?;
        Ok(rows
            .into_iter()
            .map(|(workspace_id, name, rollout_id)| ConvergeTarget {
                workspace_id,
                name,
                rollout_id,
            })
            .collect())
    }

    /// Opens a journal row in phase `pulling` and marks the workspace `updating`.
    pub async fn open_update(
        &self,
        workspace_id: i64,
        rollout_id: Option<i64>,
        from: Option<&Digest>,
        to: &Digest,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin open update")?;
        let sql = format!(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, \
             phase, started_at, updated_at) VALUES ($1, $2, $3, $4, 'pulling', $5, $5) \
             RETURNING {COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(rollout_id)
            .bind(from.map(Digest::as_str))
            .bind(to.as_str())
            .bind(to_millis(now))
            .fetch_one(&mut *tx)
            .await
            .ctx("open update")?;
        sqlx::query(
            "UPDATE workspaces SET state = 'updating', updated_at = $1, version = version + 1 \
             WHERE id = $2",
        )
        .bind(to_millis(now))
        .bind(workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("mark workspace updating")?;
        tx.commit().await.ctx("commit open update")?;
        from_row(&row)
    }

    /// Journals the next phase (before the step acts): a compare-and-set on (`id`,
    /// `from`), so a stale driver (a second daemon, a resumed row racing a live one)
    /// fails with [`StoreError::Conflict`] instead of overwriting.
    pub async fn advance_update(
        &self,
        id: i64,
        from: UpdatePhase,
        to: UpdatePhase,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE workspace_updates SET phase = $1, updated_at = $2, version = version + 1 \
             WHERE id = $3 AND phase = $4",
        )
        .bind(to.as_str())
        .bind(to_millis(now))
        .bind(id)
        .bind(from.as_str())
        .execute(&self.pool)
        .await
        .ctx("advance update")?;
        stale_unless_one(done.rows_affected(), id, from)
    }

    /// Turns a failed update towards its rollback, in one transaction: the row goes from
    /// `from` to `rolling_back` with `reason` (compare-and-set on `from`), the workspace
    /// to `rolling_back`, and `event` is audited.
    pub async fn begin_rollback(
        &self,
        row: &UpdateRow,
        from: UpdatePhase,
        reason: &str,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ms = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin rollback")?;
        let done = sqlx::query(
            "UPDATE workspace_updates SET phase = 'rolling_back', error = $1, updated_at = $2, \
             version = version + 1 WHERE id = $3 AND phase = $4",
        )
        .bind(reason)
        .bind(ms)
        .bind(row.id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .ctx("journal rollback")?;
        stale_unless_one(done.rows_affected(), row.id, from)?;
        sqlx::query(
            "UPDATE workspaces SET state = 'rolling_back', updated_at = $1, \
             version = version + 1 WHERE id = $2",
        )
        .bind(ms)
        .bind(row.workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("mark workspace rolling back")?;
        append_event_in(&mut tx, event, now).await?;
        tx.commit().await.ctx("commit rollback")?;
        Ok(())
    }

    /// Records the snapshots an attempt took (replacing the list).
    pub async fn set_update_snapshots(
        &self,
        id: i64,
        ids: &[SnapshotId],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(&ids.iter().map(|i| i.as_str()).collect::<Vec<_>>())
            .map_err(corrupt)?;
        sqlx::query(
            "UPDATE workspace_updates SET snapshot_ids = $1, updated_at = $2, \
             version = version + 1 WHERE id = $3",
        )
        .bind(json)
        .bind(to_millis(now))
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("set update snapshots")?;
        Ok(())
    }

    /// Every journal row not in a terminal phase, oldest first.
    pub async fn open_updates(&self) -> Result<Vec<UpdateRow>, StoreError> {
        let (rows, unreadable) = self.open_updates_checked().await?;
        match unreadable.into_iter().next() {
            Some(u) => Err(corrupt(format!("journal row {}: {}", u.id, u.error))),
            None => Ok(rows),
        }
    }

    /// Every journal row not in a terminal phase, oldest first, and apart those this
    /// version cannot read (a phase, kind or digest it does not know: edited by hand, or
    /// written by another version), so one bad row holds up no other workspace.
    pub async fn open_updates_checked(
        &self,
    ) -> Result<(Vec<UpdateRow>, Vec<UnreadableRow>), StoreError> {
        let sql =
            format!("SELECT {COLS} FROM workspace_updates WHERE phase NOT IN {OPEN} ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list open updates")?;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for r in &rows {
            match from_row(r) {
                Ok(row) => good.push(row),
                Err(e) => bad.push(UnreadableRow {
                    id: r.try_get("id").map_err(corrupt)?,
                    workspace_id: r.try_get("workspace_id").map_err(corrupt)?,
                    error: e.to_string(),
                }),
            }
        }
        Ok((good, bad))
    }

    /// Ends a journal row this version cannot read: the row is closed as `quarantined`
    /// with `reason` (which names it), its workspace is quarantined, and `event` is
    /// audited, in one transaction. Nothing in Docker is touched.
    pub async fn quarantine_unreadable(
        &self,
        row: &UnreadableRow,
        reason: &str,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ms = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin quarantine")?;
        sqlx::query(
            "UPDATE workspace_updates SET phase = 'quarantined', error = $1, updated_at = $2, \
             finished_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(reason)
        .bind(ms)
        .bind(row.id)
        .execute(&mut *tx)
        .await
        .ctx("close unreadable journal row")?;
        sqlx::query(
            "UPDATE workspaces SET state = 'quarantined', health = 'unhealthy', updated_at = $1, \
             version = version + 1 WHERE id = $2",
        )
        .bind(ms)
        .bind(row.workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("quarantine workspace")?;
        append_event_in(&mut tx, event, now).await?;
        tx.commit().await.ctx("commit quarantine")?;
        Ok(())
    }

    /// The newest journal row of a workspace.
    pub async fn latest_update(&self, workspace_id: i64) -> Result<Option<UpdateRow>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM workspace_updates WHERE workspace_id = $1 ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("latest update")?;
        row.as_ref().map(from_row).transpose()
    }

    /// Ends a saga: terminal phase, observed state, failure memory and audit event, atomically.
    pub async fn finish_update(
        &self,
        row: &UpdateRow,
        o: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ms = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin finish update")?;
        let done = sqlx::query(
            "UPDATE workspace_updates SET phase = $1, error = COALESCE($2, error), \
             updated_at = $3, finished_at = $3, version = version + 1 \
             WHERE id = $4 AND phase = $5",
        )
        .bind(o.phase.as_str())
        .bind(o.error.as_deref())
        .bind(ms)
        .bind(row.id)
        .bind(o.from_phase.as_str())
        .execute(&mut *tx)
        .await
        .ctx("finish update")?;
        stale_unless_one(done.rows_affected(), row.id, o.from_phase)?;
        sqlx::query(
            "UPDATE workspaces SET actual_digest = $1, container_id = $2, state = $3, \
             health = $4, health_checked_at = $5, updated_at = $5, version = version + 1 \
             WHERE id = $6",
        )
        .bind(o.actual_digest.as_ref().map(Digest::as_str))
        .bind(o.container_id.as_deref())
        .bind(o.state.as_str())
        .bind(o.health.as_str())
        .bind(ms)
        .bind(row.workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("write observed state")?;
        if o.remember_failure {
            sqlx::query(
                "INSERT INTO failed_digests (workspace_id, digest, failed_at, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id, digest) DO UPDATE \
                 SET failed_at = excluded.failed_at, reason = excluded.reason",
            )
            .bind(row.workspace_id)
            .bind(row.to_digest.as_str())
            .bind(ms)
            .bind(o.error.as_deref().unwrap_or("update failed"))
            .execute(&mut *tx)
            .await
            .ctx("remember failed digest")?;
        }
        if o.reset_desired {
            sqlx::query(
                "UPDATE workspaces SET desired_digest = $1, desired_rollout_id = NULL \
                 WHERE id = $2 AND desired_digest = $3",
            )
            .bind(o.actual_digest.as_ref().map(Digest::as_str))
            .bind(row.workspace_id)
            .bind(row.to_digest.as_str())
            .execute(&mut *tx)
            .await
            .ctx("reset desired digest")?;
        }
        if let (Some(source), Some(rollout)) = (o.restored_from_update, row.rollout_id) {
            sqlx::query(
                "UPDATE rollout_targets SET restore_done_at = $1, updated_at = $1, \
                 version = version + 1 WHERE rollout_id = $2 AND workspace_id = $3 \
                 AND restore_snapshot_of_update_id = $4 AND restore_done_at IS NULL",
            )
            .bind(ms)
            .bind(rollout)
            .bind(row.workspace_id)
            .bind(source)
            .execute(&mut *tx)
            .await
            .ctx("stamp restore done")?;
        }
        append_event_in(&mut tx, &o.event, now).await?;
        tx.commit().await.ctx("commit finish update")?;
        Ok(())
    }

    /// True when `digest` failed on the workspace before.
    pub async fn digest_failed(
        &self,
        workspace_id: i64,
        digest: &Digest,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM failed_digests WHERE workspace_id = $1 AND digest = $2",
        )
        .bind(workspace_id)
        .bind(digest.as_str())
        .fetch_one(&self.pool)
        .await
        .ctx("check failed digest")?;
        Ok(n > 0)
    }
}

impl Store {
    /// One journal row by id.
    pub async fn update_by_id(&self, id: i64) -> Result<UpdateRow, StoreError> {
        let sql = format!("SELECT {COLS} FROM workspace_updates WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("get update")?
            .ok_or_else(|| StoreError::NotFound {
                what: "workspace update",
                key: id.to_string(),
            })?;
        from_row(&row)
    }
}
