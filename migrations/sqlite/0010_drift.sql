-- The settings in which a workspace's running container differs from its spec (someone
-- recreated it with other flags), as a JSON array of spec field names; NULL when it runs
-- as asked. Written by the reconciler's drift detector, shown by `workspace show`.
ALTER TABLE workspaces ADD COLUMN drift TEXT;
