-- Docker hosts of the fleet. One row per host: registered by an operator (`sluice host
-- add`, which stores the sha256 of the agent's token) or, for the built-in host of a
-- single-host install, by `sluice run` itself (no token). The agent of the host writes
-- its heartbeat (`agent_instance`, `agent_version`, `heartbeat_at`, `capacity`); the API
-- writes `schedule` (cordon, drain, uncordon; audited). Whether a host is up is derived
-- from `heartbeat_at` at read time, never stored, so it cannot go stale.
CREATE TABLE hosts (
    name            TEXT PRIMARY KEY,
    labels          TEXT NOT NULL DEFAULT '{}',
    capacity        BIGINT,
    schedule        TEXT NOT NULL DEFAULT 'active'
                    CHECK (schedule IN ('active', 'cordoned', 'draining')),
    token_sha256    TEXT,
    agent_instance  TEXT,
    agent_version   TEXT,
    heartbeat_at    BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 1
);

-- An agent reads only its own host's workspaces.
CREATE INDEX workspaces_host ON workspaces (host, name);
-- A snapshot's file lives on the host that took it.
ALTER TABLE snapshots ADD COLUMN host TEXT NOT NULL DEFAULT 'local';
-- Why a target ended as it did when that is not a journal row (skipped for its host).
ALTER TABLE rollout_targets ADD COLUMN status_reason TEXT;
-- Agents and the API write `hosts` without an epoch; the leader's loops only read it.
-- No fence trigger: an agent keeps heartbeating whoever leads.
