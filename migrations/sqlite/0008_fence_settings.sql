-- Twin of migrations/postgres/0008 (fencing of `settings`), which only PostgreSQL needs:
-- an SQLite database has one daemon, which always leads. Kept so both engines count the
-- same schema versions.
SELECT 1;
