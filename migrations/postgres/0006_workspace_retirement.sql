-- A deleted workspace is retired by the reconciler, not by the API: the delete marks the
-- row (deleted_at, retire_purge) and the reconciler removes its container and, with
-- purge, the volumes labelled for it, then records what it did (see docs/operations.md).
--   retire_purge   the delete asked for ?purge=true (1) or not (0)
--   retired_at     when the reconciler finished; NULL while the retirement is pending
--   retire_result  JSON: container_removed, volumes_removed, volumes_kept
--                  [{name, reason, owner_id, message}], error (a refusal, for the operator)
ALTER TABLE workspaces ADD COLUMN retire_purge BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN retired_at BIGINT;
ALTER TABLE workspaces ADD COLUMN retire_result TEXT;

-- Rows deleted by an earlier version were retired by its API at the time.
UPDATE workspaces SET retired_at = deleted_at WHERE deleted_at IS NOT NULL;

CREATE INDEX workspaces_retiring ON workspaces (id)
    WHERE deleted_at IS NOT NULL AND retired_at IS NULL;
