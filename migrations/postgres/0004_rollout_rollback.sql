-- Rollout rollback contract (controller -> reconciler). When an operator rolls a rollout
-- back, the controller sets each moved workspace's desired_digest back to the target's
-- from_digest and stamps the target row. With `restore_data`, it also names the
-- workspace_updates row whose pre-update snapshots the reconciler must restore before
-- starting the old digest, and sets restore_done_at once it has (so a restart does not
-- restore twice). It records its work in a new workspace_updates row (rollout_id = the
-- rollout, via workspaces.desired_rollout_id) as usual.
ALTER TABLE rollout_targets ADD COLUMN rollback_requested_at BIGINT;
ALTER TABLE rollout_targets ADD COLUMN restore_snapshot_of_update_id BIGINT;
ALTER TABLE rollout_targets ADD COLUMN restore_done_at BIGINT;
CREATE INDEX rollout_targets_restore ON rollout_targets (workspace_id)
    WHERE restore_snapshot_of_update_id IS NOT NULL;
