//! Tables `rollouts`, `rollout_targets` and `rollout_analysis` ([`analysis`]). Writers: the rollout controller (each pass)
//! and the operator operations (`rollout::ops`), both only through
//! [`Store::apply_rollout_changes`] ([`apply`]).
//!
//! The rollout row's `version` is the rollout's lock: every change to a rollout, its
//! targets, the desired digests it writes and its release's status goes through one
//! transaction that bumps that version (or fails with [`StoreError::Conflict`]) and
//! appends the audit events. Here: rollout rows joined with their release; [`targets`]:
//! targets with observed state; [`pass`]: what one controller pass reads.

/// The columns a [`TargetRow`] is read from: a target with its workspace's observed
/// state and its newest journal row in this rollout. Both the full listing
/// (`targets.rs`) and a controller pass (`pass.rs`) append their own `WHERE`.
macro_rules! target_select {
    () => {
        "SELECT t.workspace_id, w.name, t.tier, t.wave, t.status, t.attempts, t.from_digest, \
         t.to_digest, t.update_id, t.updated_at, t.restore_snapshot_of_update_id, \
         (SELECT MAX(u2.id) FROM workspace_updates u2 WHERE u2.workspace_id = t.workspace_id \
           AND u2.rollout_id = t.rollout_id) AS last_update_id, \
         (SELECT u3.phase FROM workspace_updates u3 WHERE u3.workspace_id = t.workspace_id \
           AND u3.rollout_id = t.rollout_id ORDER BY u3.id DESC LIMIT 1) AS last_phase, \
         w.actual_digest, w.desired_digest, \
         w.pinned_digest, w.health, w.state AS ws_state, w.maintenance_window, w.host, \
         t.status_reason \
         FROM rollout_targets t JOIN workspaces w ON w.id = t.workspace_id"
    };
}

mod analysis;
mod apply;
mod batch;
mod pass;
mod targets;

#[cfg(test)]
pub(crate) mod fixtures;

pub use pass::SettledTargets;
pub use targets::{CandidateRow, TargetRow};

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{QueryContext, Store, StoreError, is_unique_violation};
use crate::clock::from_millis;
use crate::domain::{Digest, ReleaseStatus, RolloutState};

/// A rollout row joined with its release.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutRow {
    pub id: i64,
    pub release_id: i64,
    pub image: String,
    pub digest: Digest,
    pub release_status: ReleaseStatus,
    pub state: RolloutState,
    /// JSON owned by the rollout module (paused_from, applied tiers).
    pub state_data: String,
    /// JSON owned by the rollout module (the frozen strategy).
    pub strategy: String,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

fn corrupt(what: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::Corrupt { what, message }
}

fn digest(s: &str, what: &'static str) -> Result<Digest, StoreError> {
    Digest::parse(s).map_err(|e| corrupt(what)(e.to_string()))
}

fn opt_time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.map(from_millis)
}

const ROLLOUT_COLUMNS: &str = "r.id, r.release_id, rel.image, rel.digest, rel.status AS release_status, \
    r.state, r.state_data, r.strategy, r.soak_started_at, r.soak_ends_at, r.finished_at, \
    r.started_by, r.reason, r.created_at, r.version";

fn rollout_from_row(row: &AnyRow) -> Result<RolloutRow, StoreError> {
    let c = |e: sqlx::Error| corrupt("rollout")(e.to_string());
    let s = |col: &str| row.try_get::<String, _>(col).map_err(c);
    Ok(RolloutRow {
        id: row.try_get("id").map_err(c)?,
        release_id: row.try_get("release_id").map_err(c)?,
        image: s("image")?,
        digest: digest(&s("digest")?, "rollout")?,
        release_status: ReleaseStatus::parse(&s("release_status")?)
            .map_err(|e| corrupt("rollout")(e.to_string()))?,
        state: RolloutState::parse(&s("state")?).map_err(|e| corrupt("rollout")(e.to_string()))?,
        state_data: s("state_data")?,
        strategy: s("strategy")?,
        soak_started_at: opt_time(row.try_get("soak_started_at").map_err(c)?),
        soak_ends_at: opt_time(row.try_get("soak_ends_at").map_err(c)?),
        finished_at: opt_time(row.try_get("finished_at").map_err(c)?),
        started_by: s("started_by")?,
        reason: row.try_get("reason").map_err(c)?,
        created_at: from_millis(row.try_get("created_at").map_err(c)?),
        version: row.try_get("version").map_err(c)?,
    })
}

/// States in which a rollout still holds its image (a new release for it queues).
pub const ACTIVE_STATES: &str = "'pending', 'canary', 'soaking', 'production', 'paused'";

impl Store {
    pub async fn rollout_row(&self, id: i64) -> Result<RolloutRow, StoreError> {
        self.rollout_where("r.id = $1", id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "rollout",
                key: id.to_string(),
            })
    }

    pub async fn rollout_for_release(
        &self,
        release_id: i64,
    ) -> Result<Option<RolloutRow>, StoreError> {
        self.rollout_where("r.release_id = $1", release_id).await
    }

    async fn rollout_where(&self, cond: &str, v: i64) -> Result<Option<RolloutRow>, StoreError> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts r JOIN releases rel ON rel.id = r.release_id WHERE {cond}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(v)
            .fetch_optional(&self.pool)
            .await
            .ctx("get rollout")?;
        row.as_ref().map(rollout_from_row).transpose()
    }

    /// Every rollout, newest first.
    pub async fn rollout_rows(&self) -> Result<Vec<RolloutRow>, StoreError> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts r JOIN releases rel ON rel.id = r.release_id ORDER BY r.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list rollouts")?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// Rollouts the controller must look at: active ones, and aborted ones with updates
    /// still in flight (their outcomes are still recorded).
    pub async fn rollouts_to_tick(&self) -> Result<Vec<RolloutRow>, StoreError> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts r JOIN releases rel ON rel.id = r.release_id \
             WHERE r.state IN ({ACTIVE_STATES}) OR (r.state = 'aborted' AND EXISTS \
             (SELECT 1 FROM rollout_targets t WHERE t.rollout_id = r.id AND t.status = 'updating')) \
             ORDER BY r.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list rollouts to tick")?;
        rows.iter().map(rollout_from_row).collect()
    }

    /// The active rollout holding `image`, if any.
    pub async fn active_rollout_for_image(
        &self,
        image: &str,
    ) -> Result<Option<RolloutRow>, StoreError> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts r JOIN releases rel ON rel.id = r.release_id \
             WHERE rel.image = $1 AND r.state IN ({ACTIVE_STATES}) ORDER BY r.id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(image)
            .fetch_optional(&self.pool)
            .await
            .ctx("active rollout for image")?;
        row.as_ref().map(rollout_from_row).transpose()
    }

    /// `(detail, at)` of a rollout's `rollout.transition` events, oldest first (replay).
    pub async fn rollout_transition_log(
        &self,
        rollout_id: i64,
    ) -> Result<Vec<(serde_json::Value, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT detail, at FROM events WHERE rollout_id = $1 AND action = 'rollout.transition' ORDER BY id",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .ctx("rollout transition log")?;
        rows.into_iter()
            .map(|(d, at)| {
                serde_json::from_str(&d)
                    .map(|v| (v, from_millis(at)))
                    .map_err(|e| corrupt("event")(e.to_string()))
            })
            .collect()
    }

    /// Rollout counts by state (for the `sluice_rollouts{state}` gauge).
    pub async fn rollout_state_counts(&self) -> Result<Vec<(RolloutState, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM rollouts GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .ctx("count rollouts")?;
        rows.into_iter()
            .map(|(s, n)| {
                RolloutState::parse(&s)
                    .map(|s| (s, n))
                    .map_err(|e| corrupt("rollout")(e.to_string()))
            })
            .collect()
    }
}

fn map_insert_err(e: sqlx::Error, release_id: i64) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::AlreadyExists {
            what: "rollout for release",
            key: release_id.to_string(),
        }
    } else {
        StoreError::query("insert rollout", e)
    }
}
