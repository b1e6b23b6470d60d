//! Rollback with `restore_data` (migration 0004): which earlier update's pre-update
//! snapshots a convergence must restore, read from `rollout_targets`. The request stays
//! pending (`restore_done_at IS NULL`) until the attempt that restores it succeeds; the
//! stamp is written by `finish_update` in the same transaction as the terminal phase.

use super::{QueryContext, Store, StoreError};
use crate::domain::Digest;

impl Store {
    /// The `workspace_updates` id whose snapshots must be restored when workspace
    /// `workspace_id` converges to `digest` for `rollout_id`, if a restore is pending.
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
