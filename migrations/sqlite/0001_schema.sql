-- sluice schema, SQLite dialect. Times are Unix milliseconds (BIGINT) so the same
-- queries serve PostgreSQL. Every mutable row carries `version` for optimistic
-- concurrency: writers use `... WHERE id = $1 AND version = $2` and retry on a lost race.

-- Fleet-wide settings (fleet mode, defaults), one row per key.
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1
);
INSERT INTO settings (key, value, updated_at) VALUES ('fleet_mode', 'manual', 0);

-- Desired state (image, tier, mode, spec, desired digest) and last observed state of
-- each tenant workspace.
CREATE TABLE workspaces (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    image               TEXT NOT NULL,
    update_tier         TEXT NOT NULL DEFAULT 'production'
                        CHECK (update_tier IN ('canary', 'production')),
    update_mode         TEXT NOT NULL DEFAULT 'auto'
                        CHECK (update_mode IN ('auto', 'manual')),
    maintenance_window  TEXT,
    spec                TEXT NOT NULL DEFAULT '{}',
    pinned_digest       TEXT,
    desired_digest      TEXT,
    -- Which rollout wrote desired_digest (NULL: an operator, update-now or creation).
    desired_rollout_id  BIGINT,
    actual_digest       TEXT,
    container_id        TEXT,
    state               TEXT NOT NULL DEFAULT 'creating'
                        CHECK (state IN ('creating', 'running', 'updating', 'rolling_back',
                                         'quarantined', 'stopped', 'missing')),
    health              TEXT NOT NULL DEFAULT 'unknown'
                        CHECK (health IN ('healthy', 'unhealthy', 'unknown')),
    health_checked_at   BIGINT,
    host                TEXT NOT NULL DEFAULT 'local',
    deleted_at          BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    version             BIGINT NOT NULL DEFAULT 1
);
-- Canaries are few; the controller asks for them on every tick.
CREATE INDEX workspaces_canary ON workspaces (name) WHERE update_tier = 'canary';
CREATE INDEX workspaces_image ON workspaces (image);

-- Digests that failed on a workspace: never rolled out to it again by itself.
CREATE TABLE failed_digests (
    workspace_id  BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    failed_at     BIGINT NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (workspace_id, digest)
);

-- Probe status of each distinct tracked image reference (one probe serves all its workspaces).
CREATE TABLE tracked_images (
    image             TEXT PRIMARY KEY,
    latest_digest     TEXT,
    last_probe_at     BIGINT,
    last_success_at   BIGINT,
    last_error        TEXT,
    next_probe_at     BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    version           BIGINT NOT NULL DEFAULT 1
);

-- New digests found by the watcher.
CREATE TABLE releases (
    id           INTEGER PRIMARY KEY,
    image        TEXT NOT NULL,
    digest       TEXT NOT NULL,
    detected_at  BIGINT NOT NULL,
    changelog    TEXT,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'approved', 'rolling_out', 'completed',
                                   'superseded', 'rejected', 'blocked')),
    status_reason TEXT,
    updated_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL DEFAULT 1,
    UNIQUE (image, digest)
);
CREATE INDEX releases_status ON releases (status, image);

-- A release being rolled out: the persisted state machine.
CREATE TABLE rollouts (
    id               INTEGER PRIMARY KEY,
    release_id       BIGINT NOT NULL REFERENCES releases (id),
    state            TEXT NOT NULL
                     CHECK (state IN ('pending', 'canary', 'soaking', 'production', 'completed',
                                      'paused', 'aborted', 'rolled_back')),
    -- State-specific data as JSON: state before pause, applied tiers, wave bookkeeping.
    state_data       TEXT NOT NULL DEFAULT '{}',
    strategy         TEXT NOT NULL DEFAULT '{}',
    soak_started_at  BIGINT,
    soak_ends_at     BIGINT,
    started_by       TEXT NOT NULL,
    reason           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    version          BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX rollouts_state ON rollouts (state);
CREATE UNIQUE INDEX rollouts_one_per_release ON rollouts (release_id);

-- Each workspace a rollout covers, and where it stands in it.
CREATE TABLE rollout_targets (
    rollout_id    BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    tier          TEXT NOT NULL CHECK (tier IN ('canary', 'production')),
    wave          BIGINT,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'updating', 'updated', 'failed',
                                    'rolled_back', 'skipped')),
    from_digest   TEXT,
    to_digest     TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    update_id     BIGINT,
    updated_at    BIGINT NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (rollout_id, workspace_id)
);

-- The step journal: one row per update attempt; `phase` is written before the step acts.
CREATE TABLE workspace_updates (
    id            INTEGER PRIMARY KEY,
    workspace_id  BIGINT NOT NULL REFERENCES workspaces (id),
    rollout_id    BIGINT REFERENCES rollouts (id),
    from_digest   TEXT,
    to_digest     TEXT NOT NULL,
    phase         TEXT NOT NULL
                  CHECK (phase IN ('pulling', 'stopping', 'snapshotting', 'recreating',
                                   'starting', 'health_checking', 'succeeded', 'rolling_back',
                                   'restoring', 'reverting', 'verifying', 'rolled_back',
                                   'failed', 'quarantined')),
    -- JSON array of snapshot ids taken by this attempt.
    snapshot_ids  TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    started_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT,
    version       BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX workspace_updates_workspace ON workspace_updates (workspace_id, id);
CREATE INDEX workspace_updates_open ON workspace_updates (phase)
    WHERE phase NOT IN ('succeeded', 'rolled_back', 'failed', 'quarantined');

-- Volume snapshots (tarballs on disk with their checksum).
CREATE TABLE snapshots (
    id            TEXT PRIMARY KEY CHECK (id <> '.' AND id <> '..' AND length(id) BETWEEN 1 AND 128),
    workspace_id  BIGINT NOT NULL REFERENCES workspaces (id),
    update_id     BIGINT REFERENCES workspace_updates (id),
    volume        TEXT NOT NULL,
    path          TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL DEFAULT 0,
    sha256        TEXT,
    state         TEXT NOT NULL DEFAULT 'writing'
                  CHECK (state IN ('writing', 'complete', 'failed', 'deleted')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    version       BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX snapshots_volume ON snapshots (workspace_id, volume, created_at);

-- Append-only audit trail of every decision, with its actor.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}',
    rollout_id  BIGINT,
    workspace   TEXT
);
CREATE INDEX events_rollout ON events (rollout_id) WHERE rollout_id IS NOT NULL;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

-- Which daemon is active, for a standby that takes over (lease with expiry).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 1
);
