//! Workspace writes of the reconciler (observed state) and the desired-digest setter the
//! controller, the API and tests use.

use chrono::{DateTime, Utc};

use super::events::append_event_in;
use super::{NewEvent, QueryContext, Store, StoreError};
use crate::clock::to_millis;
use crate::domain::{Digest, Health, WorkspaceState};

/// What the reconciler last saw of a workspace's container.
#[derive(Clone, Debug)]
pub struct Observed {
    pub actual_digest: Option<Digest>,
    pub container_id: Option<String>,
    pub state: WorkspaceState,
    pub health: Health,
}

impl Store {
    /// Sets what a workspace should run, and which rollout asked (None: operator/creation).
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
    pub async fn set_observed(
        &self,
        workspace_id: i64,
        o: &Observed,
        event: Option<&NewEvent>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let ms = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin observed")?;
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
        .bind(workspace_id)
        .execute(&mut *tx)
        .await
        .ctx("set observed state")?;
        if let Some(ev) = event {
            append_event_in(&mut tx, ev, now).await?;
        }
        tx.commit().await.ctx("commit observed")?;
        Ok(())
    }

    /// Failed digests remembered for a workspace.
    pub async fn failed_digests(&self, workspace_id: i64) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT digest FROM failed_digests WHERE workspace_id = $1 ORDER BY digest",
        )
        .bind(workspace_id)
        .fetch_all(&self.pool)
        .await
        .ctx("list failed digests")
    }
}

impl Store {
    /// The name of a live workspace by id.
    pub async fn workspace_name(&self, workspace_id: i64) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1 AND deleted_at IS NULL")
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("get workspace name")?
            .ok_or_else(|| StoreError::NotFound {
                what: "workspace",
                key: workspace_id.to_string(),
            })
    }
}

impl Store {
    /// Sets only the observed state (e.g. `rolling_back` while a saga reverses).
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
