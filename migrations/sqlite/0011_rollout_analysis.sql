-- Metric analysis of a rollout: one row per evaluation of one [[rollout.analysis]] check
-- (stage `soak` during the canary soak, `production` between production waves).
-- `value` is the number the query returned, as text (exactly as Rust prints the f64),
-- NULL when there was none; `failures` counts consecutive failed evaluations of the
-- check; `verdict` is what the evaluation decided. Written by the rollout controller in
-- the same transaction as the decision it led to.
CREATE TABLE rollout_analysis (
    id            INTEGER PRIMARY KEY,
    rollout_id    BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    check_name    TEXT NOT NULL,
    stage         TEXT NOT NULL CHECK (stage IN ('soak', 'production')),
    evaluated_at  BIGINT NOT NULL,
    query         TEXT NOT NULL,
    value         TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('pass', 'fail', 'inconclusive')),
    detail        TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    verdict       TEXT NOT NULL CHECK (verdict IN ('continue', 'abort', 'pause'))
);
CREATE INDEX rollout_analysis_by_check ON rollout_analysis (rollout_id, check_name, id);
