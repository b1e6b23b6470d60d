//! Rollout targets with what was observed about their workspaces, and the one write path
//! of a rollout ([`Store::write_rollout`]).

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::events::append_event_in;
use super::rollout_batch;
use super::rollouts::{digest, map_insert_err};
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::{from_millis, to_millis};
use crate::domain::{
    Digest, Health, MaintenanceWindow, ReleaseStatus, RolloutState, Tier, UpdateMode, UpdatePhase,
    WorkspaceState,
};

/// A target joined with its workspace's observed state and newest journal row.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub workspace_id: i64,
    pub name: String,
    pub tier: Tier,
    pub wave: i64,
    /// `rollout_targets.status` word (parsed by the rollout module).
    pub status: String,
    pub attempts: i64,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub update_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
    pub latest_update: Option<(i64, UpdatePhase)>,
    pub actual_digest: Option<Digest>,
    pub desired_digest: Option<Digest>,
    pub pinned_digest: Option<Digest>,
    pub health: Health,
    pub ws_state: WorkspaceState,
    pub maintenance_window: Option<MaintenanceWindow>,
    pub restore_snapshot_of_update_id: Option<i64>,
}

/// A workspace that a rollout of its image may cover.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateRow {
    pub workspace_id: i64,
    pub name: String,
    pub tier: Tier,
    pub update_mode: UpdateMode,
    pub pinned_digest: Option<Digest>,
    pub actual_digest: Option<Digest>,
    pub desired_digest: Option<Digest>,
}

/// How the rollout row itself changes.
#[derive(Clone, Debug)]
pub enum RolloutRowWrite {
    Insert {
        release_id: i64,
        strategy: String,
        started_by: String,
    },
    Update {
        id: i64,
        expected_version: i64,
    },
}

#[derive(Clone, Debug)]
pub struct NewTarget {
    pub workspace_id: i64,
    pub tier: Tier,
    pub wave: i64,
    pub status: &'static str,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
}

/// A change to one existing target; `None` fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct TargetWrite {
    pub workspace_id: i64,
    pub status: Option<&'static str>,
    pub add_attempt: bool,
    pub update_id: Option<i64>,
    /// Rollback: stamp `rollback_requested_at` and, with data, the update to restore.
    pub rollback: Option<Option<i64>>,
}

/// `workspaces.desired_digest` (+ `desired_rollout_id`) for one workspace; with
/// `forget_failed`, the `failed_digests` row for that digest goes (a retry).
#[derive(Clone, Debug)]
pub struct DesiredWrite {
    pub workspace_id: i64,
    pub digest: Digest,
    /// Record this rollout as the writer in `desired_rollout_id` (else NULL).
    pub in_rollout: bool,
    pub forget_failed: bool,
}

/// Everything one rollout decision writes, committed together.
#[derive(Clone, Debug)]
pub struct RolloutWrite {
    pub row: RolloutRowWrite,
    pub state: RolloutState,
    pub state_data: String,
    /// Replaces the stored strategy when set.
    pub strategy: Option<String>,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub new_targets: Vec<NewTarget>,
    pub targets: Vec<TargetWrite>,
    pub desired: Vec<DesiredWrite>,
    pub release_status: Option<(i64, ReleaseStatus, String)>,
    /// `rollout_id` is filled in with the rollout's id; an empty subject becomes `rollout:<id>`.
    pub events: Vec<NewEvent>,
}

fn bad(what: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::Corrupt { what, message }
}

fn opt_digest(v: Option<String>, what: &'static str) -> Result<Option<Digest>, StoreError> {
    v.map(|s| digest(&s, what)).transpose()
}

pub(super) fn target_from_row(row: &SqliteRow) -> Result<TargetRow, StoreError> {
    let c = |e: sqlx::Error| bad("rollout target")(e.to_string());
    let p = |e: crate::domain::ParseError| bad("rollout target")(e.to_string());
    let s = |col: &str| row.try_get::<String, _>(col).map_err(c);
    let os = |col: &str| row.try_get::<Option<String>, _>(col).map_err(c);
    let last_id: Option<i64> = row.try_get("last_update_id").map_err(c)?;
    let last_phase = os("last_phase")?;
    Ok(TargetRow {
        workspace_id: row.try_get("workspace_id").map_err(c)?,
        name: s("name")?,
        tier: Tier::parse(&s("tier")?).map_err(p)?,
        wave: row
            .try_get::<Option<i64>, _>("wave")
            .map_err(c)?
            .unwrap_or(0),
        status: s("status")?,
        attempts: row.try_get("attempts").map_err(c)?,
        from_digest: opt_digest(os("from_digest")?, "rollout target")?,
        to_digest: digest(&s("to_digest")?, "rollout target")?,
        update_id: row.try_get("update_id").map_err(c)?,
        updated_at: from_millis(row.try_get("updated_at").map_err(c)?),
        latest_update: match (last_id, last_phase) {
            (Some(id), Some(ph)) => Some((id, UpdatePhase::parse(&ph).map_err(p)?)),
            _ => None,
        },
        actual_digest: opt_digest(os("actual_digest")?, "workspace")?,
        desired_digest: opt_digest(os("desired_digest")?, "workspace")?,
        pinned_digest: opt_digest(os("pinned_digest")?, "workspace")?,
        health: Health::parse(&s("health")?).map_err(p)?,
        ws_state: WorkspaceState::parse(&s("ws_state")?).map_err(p)?,
        maintenance_window: os("maintenance_window")?
            .map(|w| MaintenanceWindow::parse(&w))
            .transpose()
            .map_err(p)?,
        restore_snapshot_of_update_id: row.try_get("restore_snapshot_of_update_id").map_err(c)?,
    })
}

impl Store {
    /// A rollout's targets with observed state, ordered by wave then name.
    pub async fn rollout_targets(&self, rollout_id: i64) -> Result<Vec<TargetRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.workspace_id, w.name, t.tier, t.wave, t.status, t.attempts, t.from_digest, \
             t.to_digest, t.update_id, t.updated_at, t.restore_snapshot_of_update_id, \
             (SELECT MAX(u2.id) FROM workspace_updates u2 WHERE u2.workspace_id = t.workspace_id \
               AND u2.rollout_id = t.rollout_id) AS last_update_id, \
             (SELECT u3.phase FROM workspace_updates u3 WHERE u3.workspace_id = t.workspace_id \
               AND u3.rollout_id = t.rollout_id ORDER BY u3.id DESC LIMIT 1) AS last_phase, \
             w.actual_digest, w.desired_digest, \
             w.pinned_digest, w.health, w.state AS ws_state, w.maintenance_window \
             FROM rollout_targets t JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.rollout_id = $1 ORDER BY t.wave, w.name",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .ctx("list rollout targets")?;
        rows.iter().map(target_from_row).collect()
    }

    /// `(status, count)` of a rollout's targets.
    pub async fn rollout_target_counts(
        &self,
        rollout_id: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT status, COUNT(*) FROM rollout_targets WHERE rollout_id = $1 GROUP BY status",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .ctx("count rollout targets")
    }

    /// Live workspaces tracking `image`, by name.
    pub async fn rollout_candidates(&self, image: &str) -> Result<Vec<CandidateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, update_tier, update_mode, pinned_digest, actual_digest, desired_digest \
             FROM workspaces WHERE image = $1 AND deleted_at IS NULL ORDER BY name",
        )
        .bind(image)
        .fetch_all(&self.pool)
        .await
        .ctx("list rollout candidates")?;
        rows.iter()
            .map(|row| {
                let c = |e: sqlx::Error| bad("workspace")(e.to_string());
                let p = |e: crate::domain::ParseError| bad("workspace")(e.to_string());
                let os = |col: &str| row.try_get::<Option<String>, _>(col).map_err(c);
                Ok(CandidateRow {
                    workspace_id: row.try_get("id").map_err(c)?,
                    name: row.try_get("name").map_err(c)?,
                    tier: Tier::parse(&row.try_get::<String, _>("update_tier").map_err(c)?)
                        .map_err(p)?,
                    update_mode: UpdateMode::parse(
                        &row.try_get::<String, _>("update_mode").map_err(c)?,
                    )
                    .map_err(p)?,
                    pinned_digest: opt_digest(os("pinned_digest")?, "workspace")?,
                    actual_digest: opt_digest(os("actual_digest")?, "workspace")?,
                    desired_digest: opt_digest(os("desired_digest")?, "workspace")?,
                })
            })
            .collect()
    }

    /// Sets one workspace's desired digest outside any rollout ("update now"), forgetting
    /// that digest's failure, with its audit event, checking the workspace's version.
    pub async fn set_desired_now(
        &self,
        workspace_id: i64,
        expected_version: i64,
        digest: &Digest,
        ev: &NewEvent,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let done = sqlx::query(
            "UPDATE workspaces SET desired_digest = $1, desired_rollout_id = NULL, updated_at = $2, \
             version = version + 1 WHERE id = $3 AND version = $4 AND deleted_at IS NULL",
        )
        .bind(digest.as_str())
        .bind(to_millis(now))
        .bind(workspace_id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .ctx("set desired digest")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                what: "workspace",
                key: workspace_id.to_string(),
            });
        }
        sqlx::query("DELETE FROM failed_digests WHERE workspace_id = $1 AND digest = $2")
            .bind(workspace_id)
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await
            .ctx("forget failed digest")?;
        append_event_in(&mut tx, ev, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(())
    }

    /// Commits one rollout decision; returns the rollout id. A lost race on the rollout's
    /// version is [`StoreError::Conflict`]; a second rollout for a release is
    /// [`StoreError::AlreadyExists`].
    pub async fn write_rollout(
        &self,
        w: &RolloutWrite,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let at = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let id: i64 = match &w.row {
            RolloutRowWrite::Insert {
                release_id,
                strategy,
                started_by,
            } => sqlx::query_scalar(
                "INSERT INTO rollouts (release_id, state, state_data, strategy, soak_started_at, \
                 soak_ends_at, started_by, reason, created_at, updated_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
            )
            .bind(release_id)
            .bind(w.state.as_str())
            .bind(&w.state_data)
            .bind(w.strategy.as_deref().unwrap_or(strategy))
            .bind(w.soak_started_at.map(to_millis))
            .bind(w.soak_ends_at.map(to_millis))
            .bind(started_by)
            .bind(&w.reason)
            .bind(at)
            .bind(w.finished_at.map(to_millis))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_insert_err(e, *release_id))?,
            RolloutRowWrite::Update {
                id,
                expected_version,
            } => {
                let done = sqlx::query(
                    "UPDATE rollouts SET state = $1, state_data = $2, strategy = COALESCE($3, strategy), \
                     soak_started_at = $4, soak_ends_at = $5, finished_at = $6, \
                     reason = COALESCE($7, reason), updated_at = $8, version = version + 1 \
                     WHERE id = $9 AND version = $10",
                )
                .bind(w.state.as_str())
                .bind(&w.state_data)
                .bind(&w.strategy)
                .bind(w.soak_started_at.map(to_millis))
                .bind(w.soak_ends_at.map(to_millis))
                .bind(w.finished_at.map(to_millis))
                .bind(&w.reason)
                .bind(at)
                .bind(id)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .ctx("update rollout")?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict {
                        what: "rollout",
                        key: id.to_string(),
                    });
                }
                *id
            }
        };
        for t in &w.new_targets {
            sqlx::query(
                "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, wave, status, \
                 from_digest, to_digest, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(t.workspace_id)
            .bind(t.tier.as_str())
            .bind(t.wave)
            .bind(t.status)
            .bind(t.from_digest.as_ref().map(Digest::as_str))
            .bind(t.to_digest.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .ctx("insert rollout target")?;
        }
        rollout_batch::update_targets(&mut tx, id, at, &w.targets).await?;
        rollout_batch::set_desired(&mut tx, id, at, &w.desired).await?;
        if let Some((release_id, status, reason)) = &w.release_status {
            sqlx::query(
                "UPDATE releases SET status = $1, status_reason = $2, updated_at = $3, \
                 version = version + 1 WHERE id = $4",
            )
            .bind(status.as_str())
            .bind(reason)
            .bind(at)
            .bind(release_id)
            .execute(&mut *tx)
            .await
            .ctx("set release status")?;
        }
        for ev in &w.events {
            let mut ev = ev.clone();
            ev.rollout_id = Some(id);
            if ev.subject.is_empty() {
                ev.subject = format!("rollout:{id}");
            }
            append_event_in(&mut tx, &ev, now).await?;
        }
        tx.commit().await.ctx("commit")?;
        Ok(id)
    }
}
