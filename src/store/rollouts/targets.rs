//! Table `rollout_targets` (written only by `Store::apply_rollout_changes`): targets
//! with what was observed about their workspaces, and the workspaces a rollout may cover.
//! Also "update now" (`set_desired_now`), the operator's one desired-digest write outside
//! a rollout.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::digest;
use crate::clock::{from_millis, to_millis};
use crate::domain::{
    Digest, Health, HostName, MaintenanceWindow, TargetStatus, Tier, UpdateMode, UpdatePhase,
    WorkspaceState,
};
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

/// A target joined with its workspace's observed state and newest journal row.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetRow {
    pub workspace_id: i64,
    pub name: String,
    pub tier: Tier,
    pub wave: i64,
    pub status: TargetStatus,
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
    /// The Docker host the workspace lives on.
    pub host: HostName,
    /// Why the target has its status, when a decision said (e.g. skipped for its host).
    pub status_reason: Option<String>,
}

/// A workspace that a rollout of its image may cover.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateRow {
    pub workspace_id: i64,
    pub name: String,
    pub tier: Tier,
    /// The Docker host the workspace lives on (waves are spread across hosts).
    pub host: HostName,
    pub update_mode: UpdateMode,
    pub pinned_digest: Option<Digest>,
    pub actual_digest: Option<Digest>,
    pub desired_digest: Option<Digest>,
}

fn bad(what: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::Corrupt { what, message }
}

fn opt_digest(v: Option<String>, what: &'static str) -> Result<Option<Digest>, StoreError> {
    v.map(|s| digest(&s, what)).transpose()
}

pub(super) fn target_from_row(row: &AnyRow) -> Result<TargetRow, StoreError> {
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
        status: TargetStatus::parse(&s("status")?).map_err(p)?,
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
        host: HostName::parse(&s("host")?).map_err(p)?,
        status_reason: os("status_reason")?,
    })
}

impl Store {
    /// A rollout's targets with observed state, ordered by wave then name.
    pub async fn rollout_targets(&self, rollout_id: i64) -> Result<Vec<TargetRow>, StoreError> {
        let rows = sqlx::query(concat!(
            target_select!(),
            " WHERE t.rollout_id = $1 ORDER BY t.wave, w.name"
        ))
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
    ) -> Result<Vec<(TargetStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM rollout_targets WHERE rollout_id = $1 GROUP BY status",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .ctx("count rollout targets")?;
        rows.into_iter()
            .map(|(s, n)| {
                TargetStatus::parse(&s)
                    .map(|s| (s, n))
                    .map_err(|e| bad("rollout target")(e.to_string()))
            })
            .collect()
    }

    /// The workspaces a rollout already covers (a tier added later skips them).
    pub async fn rollout_target_workspaces(&self, rollout_id: i64) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar("SELECT workspace_id FROM rollout_targets WHERE rollout_id = $1")
            .bind(rollout_id)
            .fetch_all(&self.pool)
            .await
            .ctx("list rollout target workspaces")
    }

    /// Live workspaces tracking `image`, by name.
    pub async fn rollout_candidates(&self, image: &str) -> Result<Vec<CandidateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, update_tier, host, update_mode, pinned_digest, actual_digest, \
             desired_digest FROM workspaces WHERE image = $1 AND deleted_at IS NULL ORDER BY name",
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
                    host: HostName::parse(&row.try_get::<String, _>("host").map_err(c)?)
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
}
