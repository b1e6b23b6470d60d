//! Table `workspaces`, observed state (`actual_digest`, `container_id`, `state`,
//! `health`, `drift`): written by the reconciler alone, from what Docker shows. Plus a plain
//! desired-digest setter for tests and benches (the controller writes `desired_digest`
//! with its rollout writes, the API with a patch).
//!
//! These writes do not check `version`: the reconciler is the one writer of the observed
//! columns and writes only what it has just seen, so an operator's concurrent change of
//! desired state (tier, pin, spec) is never overwritten; they still bump `version`, so an
//! operator's version-checked write that raced them re-reads and retries.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::clock::to_millis;
use crate::domain::{Digest, Health, WorkspaceState};
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

/// What the reconciler last saw of a workspace's container.
#[derive(Clone, Debug)]
pub struct Observed {
    pub actual_digest: Option<Digest>,
    pub container_id: Option<String>,
    pub state: WorkspaceState,
    pub health: Health,
}

/// Writes what the reconciler saw of a workspace's container, inside the caller's
/// transaction (`set_observed` alone, `finish_update` with the journal row). No version
/// check: the reconciler is the one writer of these columns (module header).
pub(crate) async fn write_observed_in(
    conn: &mut AnyConnection,
    workspace_id: i64,
    actual_digest: Option<&Digest>,
    container_id: Option<&str>,
    state: WorkspaceState,
    health: Health,
    ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE workspaces SET actual_digest = $1, container_id = $2, state = $3, \
         health = $4, health_checked_at = $5, updated_at = $5, version = version + 1 \
         WHERE id = $6",
    )
    .bind(actual_digest.map(Digest::as_str))
    .bind(container_id)
    .bind(state.as_str())
    .bind(health.as_str())
    .bind(ms)
    .bind(workspace_id)
    .execute(conn)
    .await
    .ctx("write observed state")?;
    Ok(())
}

impl Store {
    /// Sets what a workspace should run, and which rollout asked (None: operator/creation).
    /// Used by tests and benches to stand in for the controller. Not version-checked: it
    /// plays the controller's part, whose decision is re-made every pass from a fresh read;
    /// an absent or deleted workspace is `NotFound`.
    pub async fn set_desired_digest(
        &self,
        workspace_id: i64,
        digest: Option<&Digest>,
        rollout_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE workspaces SET desired_digest = $1, desired_rollout_id = $2, updated_at = $3, \
             version = version + 1 WHERE id = $4 AND deleted_at IS NULL",
        )
        .bind(digest.map(Digest::as_str))
        .bind(rollout_id)
        .bind(to_millis(now))
        .bind(workspace_id)
        .execute(&self.pool)
        .await
        .ctx("set desired digest")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "workspace",
                key: workspace_id.to_string(),
            });
        }
        Ok(())
    }

    /// Records observed state, with an audit event in the same transaction when given.
    /// No version check: the reconciler is the one writer of these columns (module header).
    pub async fn set_observed(
        &self,
        workspace_id: i64,
        o: &Observed,
        event: Option<&NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin observed")?;
        write_observed_in(
            &mut tx,
            workspace_id,
            o.actual_digest.as_ref(),
            o.container_id.as_deref(),
            o.state,
            o.health,
            to_millis(now),
        )
        .await?;
        if let Some(ev) = event {
            append_event_in(&mut tx, ev, now).await?;
        }
        tx.commit().await.ctx("commit observed")?;
        Ok(())
    }
}

impl Store {
    /// Sets only the observed state (e.g. `rolling_back` while a saga reverses).
    /// No version check: the reconciler is the one writer of `state` (module header).
    pub async fn set_workspace_state(
        &self,
        workspace_id: i64,
        state: WorkspaceState,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE workspaces SET state = $1, updated_at = $2, version = version + 1 WHERE id = $3",
        )
        .bind(state.as_str())
        .bind(to_millis(now))
        .bind(workspace_id)
        .execute(&self.pool)
        .await
        .ctx("set workspace state")?;
        Ok(())
    }
}

impl Store {
    /// Records the drift detector's finding: the spec fields the running container
    /// differs in (empty: none), and, when given, the id of the container it now accepts
    /// as the workspace's; with an audit event in the same transaction when given.
    pub async fn set_drift(
        &self,
        workspace_id: i64,
        fields: &[&str],
        container_id: Option<&str>,
        event: Option<&NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let drift = (!fields.is_empty())
            .then(|| serde_json::to_string(fields))
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                what: "drift",
                message: e.to_string(),
            })?;
        let mut tx = self.pool.begin().await.ctx("begin drift")?;
        sqlx::query(
            "UPDATE workspaces SET drift = $1, container_id = COALESCE($2, container_id), \
             updated_at = $3, version = version + 1 WHERE id = $4",
        )
        .bind(drift)
        .bind(container_id)
        .bind(to_millis(now))
        .bind(workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("set drift")?;
        if let Some(ev) = event {
            append_event_in(&mut tx, ev, now).await?;
        }
        tx.commit().await.ctx("commit drift")?;
        Ok(())
    }
}
