//! Test support: rows of every shape a controller pass may meet, written directly (the
//! production writers only produce the usual shapes). Compiled for unit tests only.

use crate::domain::{Digest, Health, TargetStatus, Tier, UpdatePhase, WorkspaceState};
use crate::store::{QueryContext, Store, StoreError};

/// A workspace as a test wants it observed.
pub struct SeedWorkspace<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub tier: Tier,
    pub pinned: Option<&'a Digest>,
    /// Both desired and actual.
    pub digest: Option<&'a Digest>,
    pub state: WorkspaceState,
    pub health: Health,
    pub maintenance_window: Option<&'a str>,
    pub host: &'a str,
}

/// A target row in any state.
pub struct SeedTarget {
    pub rollout_id: i64,
    pub workspace_id: i64,
    pub tier: Tier,
    /// `None`: a row written before waves were numbered.
    pub wave: Option<i64>,
    pub status: TargetStatus,
    pub to_digest: Digest,
    pub attempts: i64,
    pub update_id: Option<i64>,
    pub updated_at_ms: i64,
}

impl Store {
    pub async fn seed_release(&self, image: &str, digest: &Digest) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, 0, 0) RETURNING id",
        )
        .bind(image)
        .bind(digest.as_str())
        .fetch_one(&self.pool)
        .await
        .ctx("seed release")
    }

    pub async fn seed_workspace(&self, w: &SeedWorkspace<'_>) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO workspaces (name, image, update_tier, pinned_digest, desired_digest, \
             actual_digest, state, health, maintenance_window, host, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, 0, 0) RETURNING id",
        )
        .bind(w.name)
        .bind(w.image)
        .bind(w.tier.as_str())
        .bind(w.pinned.map(Digest::as_str))
        .bind(w.digest.map(Digest::as_str))
        .bind(w.state.as_str())
        .bind(w.health.as_str())
        .bind(w.maintenance_window)
        .bind(w.host)
        .fetch_one(&self.pool)
        .await
        .ctx("seed workspace")
    }

    /// A journal row of `workspace_id` in `rollout_id` that reached `phase`.
    pub async fn seed_update(
        &self,
        workspace_id: i64,
        rollout_id: i64,
        to: &Digest,
        phase: UpdatePhase,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, to_digest, phase, \
             started_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0) RETURNING id",
        )
        .bind(workspace_id)
        .bind(rollout_id)
        .bind(to.as_str())
        .bind(phase.as_str())
        .fetch_one(&self.pool)
        .await
        .ctx("seed update")
    }

    pub async fn seed_target(&self, t: &SeedTarget) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, wave, status, \
             to_digest, attempts, update_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.rollout_id)
        .bind(t.workspace_id)
        .bind(t.tier.as_str())
        .bind(t.wave)
        .bind(t.status.as_str())
        .bind(t.to_digest.as_str())
        .bind(t.attempts)
        .bind(t.update_id)
        .bind(t.updated_at_ms)
        .execute(&self.pool)
        .await
        .ctx("seed rollout target")?;
        Ok(())
    }
}
