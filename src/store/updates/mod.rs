//! Table `workspace_updates` (the update journal) and `failed_digests`: the row type and
//! the reads. One row per attempt; the phase is written *before* the step acts, so a
//! restarted daemon knows where every saga stood. Written by the reconciler (`journal`:
//! open, compare-and-set advance, rollback, finish, with `failed_digests` and the
//! workspace's observed state in the same transactions) and by the API (`restore_queue`,
//! `recovery`: operator restores and recoveries queued as rows of kind `restore` or
//! `recover`).

mod history;
mod journal;
mod phase_log;
mod recovery;
mod restore_queue;

pub use crate::domain::UpdateKind;
pub use history::UpdateAttempt;
pub use journal::Outcome;
pub use phase_log::PhaseSpan;
pub use restore_queue::{RestoreError, RestoreRequest};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{FINISHED_PHASES, QueryContext, Store, StoreError};
use crate::clock::from_millis;
use crate::domain::spec::UpdateOrder;
use crate::domain::{Digest, HostName, SnapshotId, UpdatePhase};

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
    /// How this attempt replaces the container, fixed when it opened.
    pub order: UpdateOrder,
}

/// An open journal row that this version cannot read.
#[derive(Clone, Debug, PartialEq)]
pub struct UnreadableRow {
    pub id: i64,
    pub workspace_id: i64,
    /// What could not be read.
    pub error: String,
}

/// The newest update attempt of a workspace, as shown by the API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LastUpdate {
    pub id: i64,
    /// The journal phase (`succeeded`, `rolled_back`, `failed`, `quarantined`, or a running step).
    pub result: UpdatePhase,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub rollout_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
}

/// A workspace the reconciler should converge.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergeTarget {
    pub workspace_id: i64,
    pub name: String,
    pub rollout_id: Option<i64>,
}

pub(super) const COLS: &str = "id, workspace_id, rollout_id, from_digest, to_digest, phase, snapshot_ids, \
                    error, kind, restore_snapshot_ids, update_order";

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "workspace update",
        message: e.to_string(),
    }
}

/// A compare-and-set that changed no row: someone else moved the journal row on.
pub(super) fn stale_unless_one(rows: u64, id: i64, from: UpdatePhase) -> Result<(), StoreError> {
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

pub(super) fn from_row(r: &AnyRow) -> Result<UpdateRow, StoreError> {
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
        order: UpdateOrder::parse(&r.try_get::<String, _>("update_order").map_err(corrupt)?)
            .map_err(corrupt)?,
    })
}

impl Store {
    /// Workspaces whose desired digest differs from what runs, that are not quarantined,
    /// have no open journal row and whose desired digest has not failed on them.
    pub async fn converge_targets(
        &self,
        host: &HostName,
    ) -> Result<Vec<ConvergeTarget>, StoreError> {
        let sql = format!(
            "SELECT w.id, w.name, w.desired_rollout_id FROM workspaces w \
             WHERE w.host = $1 AND w.deleted_at IS NULL AND w.desired_digest IS NOT NULL \
             AND (w.actual_digest IS NULL OR w.desired_digest <> w.actual_digest) \
             AND w.state <> 'quarantined' \
             AND NOT EXISTS (SELECT 1 FROM failed_digests f \
                 WHERE f.workspace_id = w.id AND f.digest = w.desired_digest) \
             AND NOT EXISTS (SELECT 1 FROM workspace_updates u \
                 WHERE u.workspace_id = w.id AND u.phase NOT IN {FINISHED_PHASES}) \
             ORDER BY w.name"
        );
        let rows: Vec<(i64, String, Option<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(host.as_str())
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

    /// Every journal row not in a terminal phase, oldest first.
    pub async fn open_updates(&self, host: &HostName) -> Result<Vec<UpdateRow>, StoreError> {
        let (rows, unreadable) = self.open_updates_checked(host).await?;
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
        host: &HostName,
    ) -> Result<(Vec<UpdateRow>, Vec<UnreadableRow>), StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM workspace_updates WHERE phase NOT IN {FINISHED_PHASES} \
             AND workspace_id IN (SELECT id FROM workspaces WHERE host = $1) ORDER BY id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(host.as_str())
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

impl Store {
    /// The newest update attempt of each workspace, by workspace id.
    pub async fn last_updates(&self) -> Result<HashMap<i64, LastUpdate>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            String,
            Option<i64>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT u.workspace_id, u.id, u.phase, u.from_digest, u.to_digest, u.rollout_id, \
             u.updated_at, u.error FROM workspace_updates u \
             WHERE u.id = (SELECT MAX(id) FROM workspace_updates v WHERE v.workspace_id = u.workspace_id)",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("last updates")?;
        rows.into_iter()
            .map(|(ws, id, phase, from, to, rollout, at, error)| {
                let last = LastUpdate {
                    id,
                    result: UpdatePhase::parse(&phase).map_err(corrupt)?,
                    from_digest: from
                        .map(|d| Digest::parse(&d))
                        .transpose()
                        .map_err(corrupt)?,
                    to_digest: Digest::parse(&to).map_err(corrupt)?,
                    rollout_id: rollout,
                    at: from_millis(at),
                    error,
                };
                Ok((ws, last))
            })
            .collect()
    }

    /// Failed digests remembered for a workspace (written by the journal's terminal
    /// write, [`Store::finish_update`]).
    pub async fn failed_digests(&self, workspace_id: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT digest FROM failed_digests WHERE workspace_id = $1 ORDER BY digest",
        )
        .bind(workspace_id)
        .fetch_all(&self.pool)
        .await
        .ctx("list failed digests")
    }

    /// Rollback with `restore_data` (migration 0004): the `workspace_updates` id whose
    /// pre-update snapshots must be restored when workspace `workspace_id` converges to
    /// `digest` for `rollout_id`, if a restore is pending. Read from `rollout_targets`; the
    /// request stays pending (`restore_done_at IS NULL`) until the attempt that restores
    /// it succeeds, stamped by [`Store::finish_update`] with the terminal phase.
    pub async fn pending_restore(
        &self,
        rollout_id: i64,
        workspace_id: i64,
        digest: &Digest,
    ) -> Result<Option<i64>, StoreError> {
        let id: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT restore_snapshot_of_update_id FROM rollout_targets \
             WHERE rollout_id = $1 AND workspace_id = $2 AND from_digest = $3 \
             AND restore_snapshot_of_update_id IS NOT NULL AND restore_done_at IS NULL",
        )
        .bind(rollout_id)
        .bind(workspace_id)
        .bind(digest.as_str())
        .fetch_optional(&self.pool)
        .await
        .ctx("read pending restore")?;
        Ok(id.flatten())
    }
}

#[cfg(test)]
impl Store {
    /// When the restore of a rollback with `restore_data` was done for (rollout,
    /// workspace): `rollout_targets.restore_done_at`, stamped by [`Store::finish_update`].
    pub(crate) async fn restore_done_at(
        &self,
        rollout_id: i64,
        workspace_id: i64,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT restore_done_at FROM rollout_targets WHERE rollout_id = $1 AND workspace_id = $2",
        )
        .bind(rollout_id)
        .bind(workspace_id)
        .fetch_one(&self.pool)
        .await
        .ctx("read restore done")?;
        Ok(at.map(from_millis))
    }

    /// Overwrites a journal row's phase with `word`, past the schema's CHECK: a row edited
    /// by hand or written by another version, which this one cannot read.
    pub(crate) async fn write_foreign_phase(&self, id: i64, word: &str) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire connection")?;
        sqlx::query("PRAGMA ignore_check_constraints = ON")
            .execute(&mut *conn)
            .await
            .ctx("lift check constraints")?;
        let written = sqlx::query("UPDATE workspace_updates SET phase = $1 WHERE id = $2")
            .bind(word)
            .bind(id)
            .execute(&mut *conn)
            .await
            .ctx("write foreign phase");
        sqlx::query("PRAGMA ignore_check_constraints = OFF")
            .execute(&mut *conn)
            .await
            .ctx("restore check constraints")?;
        written.map(|_| ())
    }
}
