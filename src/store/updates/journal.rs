//! Table `workspace_updates` (with `failed_digests`, the workspace's observed state and
//! `rollout_targets.restore_done_at` in the same transactions), journal writes: written
//! by the reconciler alone, each phase *before* its step acts. Moving a row is a
//! compare-and-set on the phase it leaves (a stale driver gets
//! [`StoreError::Conflict`]); the rollback and terminal writes commit the row, the
//! workspace and the audit event together.
//!
//! The `workspaces` writes here do not check `version`: they record what the single
//! reconciler observed or is doing (`updating`, `rolling_back`, the outcome) and are
//! guarded by the journal row's own compare-and-set; they bump `version`, so an
//! operator's checked write that raced them re-reads and retries. `reset_desired` is a
//! compare-and-set on `desired_digest` itself.

use chrono::{DateTime, Utc};

use super::phase_log::log_phase_in;
use super::{COLS, UnreadableRow, UpdateRow, corrupt, from_row, stale_unless_one};
use crate::clock::to_millis;
use crate::domain::spec::UpdateOrder;
use crate::domain::{Digest, Health, SnapshotId, UpdatePhase, WorkspaceState};
use crate::store::events::append_event_in;
use crate::store::workspaces::write_observed_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

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

impl Store {
    /// Opens a stop-first journal row (see [`Store::open_update_ordered`]).
    pub async fn open_update(
        &self,
        workspace_id: i64,
        rollout_id: Option<i64>,
        from: Option<&Digest>,
        to: &Digest,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, StoreError> {
        self.open_update_ordered(
            workspace_id,
            rollout_id,
            from,
            to,
            UpdateOrder::StopFirst,
            now,
        )
        .await
    }

    /// Opens a journal row in phase `pulling`, replacing the container in `order`, and
    /// marks the workspace `updating`.
    pub async fn open_update_ordered(
        &self,
        workspace_id: i64,
        rollout_id: Option<i64>,
        from: Option<&Digest>,
        to: &Digest,
        order: UpdateOrder,
        now: DateTime<Utc>,
    ) -> Result<UpdateRow, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin open update")?;
        let sql = format!(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, \
             phase, started_at, updated_at, update_order) \
             VALUES ($1, $2, $3, $4, 'pulling', $5, $5, $6) RETURNING {COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id)
            .bind(rollout_id)
            .bind(from.map(Digest::as_str))
            .bind(to.as_str())
            .bind(to_millis(now))
            .bind(order.as_str())
            .fetch_one(&mut *tx)
            .await
            .ctx("open update")?;
        let opened = from_row(&row)?;
        log_phase_in(&mut tx, opened.id, UpdatePhase::Pulling.as_str(), now).await?;
        // The reconciler's own observation (no version check, see the module header).
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
        Ok(opened)
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
        let mut tx = self.pool.begin().await.ctx("begin advance update")?;
        let done = sqlx::query(
            "UPDATE workspace_updates SET phase = $1, updated_at = $2, version = version + 1 \
             WHERE id = $3 AND phase = $4",
        )
        .bind(to.as_str())
        .bind(to_millis(now))
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .ctx("advance update")?;
        stale_unless_one(done.rows_affected(), id, from)?;
        log_phase_in(&mut tx, id, to.as_str(), now).await?;
        tx.commit().await.ctx("commit advance update")
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
        log_phase_in(&mut tx, row.id, UpdatePhase::RollingBack.as_str(), now).await?;
        // Observation, guarded by the row's compare-and-set above (no version check).
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
        log_phase_in(&mut tx, row.id, UpdatePhase::Quarantined.as_str(), now).await?;
        // Observation by the one reconciler (no version check, see the module header).
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
        log_phase_in(&mut tx, row.id, o.phase.as_str(), now).await?;
        // Observation, guarded by the row's compare-and-set above (no version check).
        write_observed_in(
            &mut tx,
            row.workspace_id,
            o.actual_digest.as_ref(),
            o.container_id.as_deref(),
            o.state,
            o.health,
            ms,
        )
        .await?;
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
            // A compare-and-set on `desired_digest`: a newer decision is left alone.
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
}
