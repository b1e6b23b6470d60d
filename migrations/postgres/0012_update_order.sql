-- How an update attempt replaces the container (`stop-first` or `start-first`), fixed
-- when the journal row opens: a resumed attempt follows the order it started with even
-- if the workspace's spec changed since. Written by the reconciler.
ALTER TABLE workspace_updates ADD COLUMN update_order TEXT NOT NULL DEFAULT 'stop-first';
