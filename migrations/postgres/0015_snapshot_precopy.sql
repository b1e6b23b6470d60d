-- The two stages of a snapshot taken into the incremental store (`method = 'store'`):
-- the row is inserted `writing` when the pre-copy begins (the container still runs),
-- `precopied_at` is set once the pre-copy's manifest is written, and the row turns
-- `complete` only when the delta taken with the container stopped is. NULL for rows of
-- the other methods and for a snapshot taken without a pre-copy. Written by the
-- reconciler's snapshot steps.
ALTER TABLE snapshots ADD COLUMN precopied_at BIGINT;
