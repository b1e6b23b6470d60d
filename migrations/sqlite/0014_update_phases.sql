-- The phase log of the update journal: one row per phase a `workspace_updates` row
-- entered, `seq` counting from 1 in order, `entered_at` when it was journaled (ms). Written
-- in the same transaction as every phase change of the journal row (opening included);
-- the time spent in a phase is the next row's `entered_at` less its own. Rows go with their
-- update row. Attempts journaled before this version have no log.
CREATE TABLE update_phases (
    update_id   BIGINT NOT NULL REFERENCES workspace_updates (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL CHECK (seq >= 1),
    phase       TEXT NOT NULL
                CHECK (phase IN ('pulling', 'stopping', 'snapshotting', 'recreating',
                                 'starting', 'health_checking', 'succeeded', 'rolling_back',
                                 'restoring', 'reverting', 'verifying', 'rolled_back',
                                 'failed', 'quarantined')),
    entered_at  BIGINT NOT NULL,
    PRIMARY KEY (update_id, seq)
);
