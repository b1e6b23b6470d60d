//! Table `snapshots`, operator writes: release (lift retention's protection) and delete,
//! written by the API, each with its audit event (`events`) in one transaction.

use chrono::{DateTime, Utc};

use super::SnapshotInfo;
use super::facts::info_in;
use crate::clock::to_millis;
use crate::domain::{SnapshotId, SnapshotState};
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

/// What [`Store::release_snapshot`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// Released now (and audited).
    Now,
    /// It was released before; nothing was written.
    Already,
    /// It is deleted; nothing was written.
    Deleted,
}

impl Store {
    /// Lifts a snapshot's protection from retention (`released_at`/`released_by`) and
    /// audits it (`snapshot_released`), in one transaction. Releasing twice writes nothing
    /// the second time; a deleted snapshot has nothing left to release.
    pub async fn release_snapshot(
        &self,
        id: &SnapshotId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Released, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin release snapshot")?;
        let workspace: Option<String> = sqlx::query_scalar(
            "UPDATE snapshots SET released_at = $1, released_by = $2, version = version + 1 \
             WHERE id = $3 AND state <> 'deleted' AND released_at IS NULL \
             RETURNING (SELECT w.name FROM workspaces w WHERE w.id = snapshots.workspace_id)",
        )
        .bind(to_millis(now))
        .bind(actor)
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .ctx("release snapshot")?;
        let Some(workspace) = workspace else {
            drop(tx);
            let row = self.snapshot(id).await?;
            return Ok(if row.state == SnapshotState::Deleted {
                Released::Deleted
            } else {
                Released::Already
            });
        };
        let ev = snapshot_event(
            actor,
            id,
            &workspace,
            "snapshot_released",
            serde_json::json!({}),
        );
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit release snapshot")?;
        Ok(Released::Now)
    }

    /// Marks a snapshot `deleted` and audits it (`snapshot_deleted`), in one transaction,
    /// unless `refuse` — called with the snapshot as read *inside* the transaction, after
    /// the write lock is taken — returns a reason; then nothing is written and the reason
    /// is returned as `Ok(Err(reason))`. `Ok(Ok(false))`: it was deleted already.
    /// The caller removes the file once this has committed.
    pub async fn delete_snapshot_audited<E>(
        &self,
        id: &SnapshotId,
        actor: &str,
        now: DateTime<Utc>,
        refuse: impl FnOnce(&SnapshotInfo) -> Option<E>,
    ) -> Result<Result<bool, E>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin delete snapshot")?;
        // The first statement writes, so SQLite takes the write lock at once and the facts
        // read below cannot change before the commit.
        let touched = sqlx::query("UPDATE snapshots SET version = version + 1 WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .ctx("lock snapshot")?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "snapshot",
                key: id.to_string(),
            });
        }
        let info = info_in(&mut tx, id).await?;
        if info.row.state == SnapshotState::Deleted {
            return Ok(Ok(false));
        }
        if let Some(reason) = refuse(&info) {
            return Ok(Err(reason));
        }
        sqlx::query("UPDATE snapshots SET state = 'deleted' WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .ctx("delete snapshot")?;
        let detail = serde_json::json!({
            "volume": info.row.volume,
            "path": info.row.path,
            "state_before": info.row.state,
            "update_id": info.row.update_id,
        });
        let ev = snapshot_event(actor, id, &info.workspace, "snapshot_deleted", detail);
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit delete snapshot")?;
        Ok(Ok(true))
    }
}

fn snapshot_event(
    actor: &str,
    id: &SnapshotId,
    workspace: &str,
    action: &str,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent {
        actor: actor.to_owned(),
        subject: format!("snapshot:{id}"),
        action: action.to_owned(),
        detail,
        rollout_id: None,
        workspace: Some(workspace.to_owned()),
    }
}
