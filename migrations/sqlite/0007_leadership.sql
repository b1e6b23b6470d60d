-- Leadership (used on PostgreSQL, where several daemons share one database; an SQLite
-- database has one daemon, which always leads). The `leases` row named 'leader' says who
-- drives the loops: `epoch` grows by one at every change of leader, `holder` is the
-- instance, `holder_session` its database session (so a standby can end the session of a
-- leader that stopped renewing), `renewed_at`/`expires_at` the lease in Unix ms.
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN holder_session BIGINT;
ALTER TABLE leases ADD COLUMN renewed_at BIGINT;
