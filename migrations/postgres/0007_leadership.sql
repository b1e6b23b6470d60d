-- Leadership: several daemons share this database; one leads. The `leases` row named
-- 'leader' says who drives the loops: `epoch` grows by one at every change of leader,
-- `holder` is the instance, `holder_session` its backend pid (so a standby can end the
-- session of a leader that stopped renewing), `renewed_at`/`expires_at` the lease in
-- Unix ms. The leader also holds a session advisory lock (see src/store/leases.rs).
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN holder_session BIGINT;
ALTER TABLE leases ADD COLUMN renewed_at BIGINT;

-- Fencing. The leader's loops write through connections that carry its epoch in the
-- session setting `sluice.epoch`. Every statement that writes a table the loops write is
-- refused when a newer epoch holds the lease: an old leader that was paused or cut off
-- and wakes up cannot overwrite its successor's work. `FOR SHARE` makes a new leader's
-- epoch bump wait for the old leader's open transactions, and every later write of the
-- old leader fail. Connections without the setting (the API of any instance, `sluice
-- migrate`) are not fenced: operators may write through any instance.
CREATE FUNCTION sluice_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mine TEXT := current_setting('sluice.epoch', true);
    current_epoch BIGINT;
BEGIN
    IF mine IS NULL OR mine = '' THEN
        RETURN NULL;
    END IF;
    SELECT epoch INTO current_epoch FROM leases WHERE name = 'leader' FOR SHARE;
    IF current_epoch IS NOT NULL AND current_epoch <> mine::BIGINT THEN
        RAISE EXCEPTION 'sluice: write fenced: this instance led at epoch %, the lease is at epoch %',
            mine, current_epoch
            USING ERRCODE = 'SL001';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER fence_workspaces BEFORE INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_workspace_updates BEFORE INSERT OR UPDATE OR DELETE ON workspace_updates
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_failed_digests BEFORE INSERT OR UPDATE OR DELETE ON failed_digests
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_rollouts BEFORE INSERT OR UPDATE OR DELETE ON rollouts
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_rollout_targets BEFORE INSERT OR UPDATE OR DELETE ON rollout_targets
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_releases BEFORE INSERT OR UPDATE OR DELETE ON releases
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_tracked_images BEFORE INSERT OR UPDATE OR DELETE ON tracked_images
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_snapshots BEFORE INSERT OR UPDATE OR DELETE ON snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
CREATE TRIGGER fence_events BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
