-- Snapshots record where their data came from and what it was, so that a restore refills
-- exactly that volume and can prove it did (see docs/reconciler.md, "Snapshots").
--   mount_path       the path the volume was mounted at when the snapshot was taken
--   method           'host': the volume's directory was read on the Docker host (keeps
--                    holes, hard links, xattrs); 'archive': through Docker's archive API
--   manifest_sha256  sha256 of the tree's manifest (path, type, mode, owner, size, mtime,
--                    link target, hard-link group, content hash), checked after a restore
--   entries          how many entries (files, directories, links) the tree held
--   released_at/by   an operator lifted the snapshot's protection from retention
ALTER TABLE snapshots ADD COLUMN mount_path TEXT;
ALTER TABLE snapshots ADD COLUMN method TEXT;
ALTER TABLE snapshots ADD COLUMN manifest_sha256 TEXT;
ALTER TABLE snapshots ADD COLUMN entries BIGINT;
ALTER TABLE snapshots ADD COLUMN released_at BIGINT;
ALTER TABLE snapshots ADD COLUMN released_by TEXT;

-- An operator restore (`snapshot restore`) or recovery (`workspace recover`) is a journal
-- row like any update, carrying the exact snapshots it restores (JSON array of ids).
ALTER TABLE workspace_updates ADD COLUMN kind TEXT NOT NULL DEFAULT 'update'
    CHECK (kind IN ('update', 'restore', 'recover'));
ALTER TABLE workspace_updates ADD COLUMN restore_snapshot_ids TEXT;
