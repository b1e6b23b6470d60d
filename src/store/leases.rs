//! Leadership on PostgreSQL: table `leases` (the row named `leader`), written only by the
//! election in `src/leader/` through a [`LeaseSession`] — a database session of its own,
//! outside the pool, because the advisory lock it takes lives exactly as long as that
//! session. Also opens the leader's fenced pool ([`Store::fenced`]). Times here are the
//! database's clock (Unix ms), so instances on hosts whose clocks disagree still agree on
//! when a lease ends. An SQLite store has one daemon, which always leads: nothing here
//! is used on it.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Row};

use super::dialect::Engine;
use super::{QueryContext, SqlBool, Store, StoreError};

/// The advisory lock every instance of a fleet's database competes for ("sluice" in
/// ASCII); a lock is per database, so fleets on other databases never meet it.
const LEADER_LOCK: i64 = 0x736c_7569_6365;

/// The database's clock in Unix milliseconds.
const DB_NOW: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// The lease as stored, read by any instance (`/readyz`, `fleet show`, a standby).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub holder: String,
    pub epoch: i64,
    /// Unix ms, database clock.
    pub renewed_at: Option<i64>,
    pub expires_at: i64,
    /// The database's clock when this was read.
    pub read_at: i64,
}

impl LeaseRow {
    pub fn expired(&self) -> bool {
        self.expires_at <= self.read_at
    }
}

/// A won election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub epoch: i64,
    /// The previous holder and when its lease ends (database clock); the new leader
    /// starts no step before then.
    pub previous: Option<(String, i64)>,
    pub now: i64,
}

/// One instance's own database session for the election.
pub struct LeaseSession {
    conn: AnyConnection,
}

impl Store {
    /// A session of its own for the election (PostgreSQL only).
    pub async fn lease_session(&self) -> Result<LeaseSession, StoreError> {
        let options = self.pool.connect_options();
        let conn = options
            .connect()
            .await
            .map_err(|source| StoreError::Query {
                context: "open the leadership session",
                source,
            })?;
        Ok(LeaseSession { conn })
    }

    /// The stored lease, if any instance ever led (PostgreSQL only).
    pub async fn lease(&self) -> Result<Option<LeaseRow>, StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT holder, epoch, renewed_at, expires_at, {DB_NOW} AS read_at \
             FROM leases WHERE name = 'leader'"
        )))
        .fetch_optional(&self.pool)
        .await
        .ctx("read the leader lease")?;
        row.map(|r| lease_from_row(&r)).transpose()
    }

    /// A pool for the leader's loops: every connection carries `epoch` in the session
    /// setting `sluice.epoch`, which the database's fencing triggers compare with the
    /// lease (migrations/postgres/0007). On SQLite, the store itself.
    pub async fn fenced(&self, epoch: i64, max_connections: u32) -> Result<Store, StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(self.clone());
        }
        let options = (*self.pool.connect_options()).clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(self.pool.options().get_acquire_timeout())
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!("SET sluice.epoch = '{epoch}'")))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Query {
                context: "open the leader's fenced pool",
                source,
            })?;
        Ok(Store {
            pool,
            engine: self.engine,
        })
    }
}

fn lease_from_row(r: &sqlx::any::AnyRow) -> Result<LeaseRow, StoreError> {
    let c = |e: sqlx::Error| StoreError::Corrupt {
        what: "lease",
        message: e.to_string(),
    };
    Ok(LeaseRow {
        holder: r.try_get("holder").map_err(c)?,
        epoch: r.try_get("epoch").map_err(c)?,
        renewed_at: r.try_get("renewed_at").map_err(c)?,
        expires_at: r.try_get("expires_at").map_err(c)?,
        read_at: r.try_get("read_at").map_err(c)?,
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl LeaseSession {
    /// Takes the leader lock if nobody holds it; the lock lives as long as this session.
    pub async fn try_lock(&mut self) -> Result<bool, StoreError> {
        let got: SqlBool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut self.conn)
            .await
            .ctx("try the leader lock")?;
        Ok(got.0)
    }

    /// With the lock held: takes the lease for `holder`, one epoch above the last.
    pub async fn claim(&mut self, holder: &str, ttl: Duration) -> Result<Claim, StoreError> {
        let mut tx = self.conn.begin().await.ctx("begin the claim")?;
        let previous = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT holder, epoch, renewed_at, expires_at, {DB_NOW} AS read_at \
             FROM leases WHERE name = 'leader' FOR UPDATE"
        )))
        .fetch_optional(&mut *tx)
        .await
        .ctx("read the lease to claim")?
        .map(|r| lease_from_row(&r))
        .transpose()?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder, expires_at, epoch, holder_session, renewed_at) \
             VALUES ('leader', $1, {DB_NOW} + $2, 1, pg_backend_pid(), {DB_NOW}) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
               expires_at = EXCLUDED.expires_at, epoch = leases.epoch + 1, \
               holder_session = EXCLUDED.holder_session, renewed_at = EXCLUDED.renewed_at, \
               version = leases.version + 1 \
             RETURNING epoch, renewed_at"
        )))
        .bind(holder)
        .bind(ms(ttl))
        .fetch_one(&mut *tx)
        .await
        .ctx("claim the lease")?;
        tx.commit().await.ctx("commit the claim")?;
        let c = |e: sqlx::Error| StoreError::Corrupt {
            what: "lease",
            message: e.to_string(),
        };
        Ok(Claim {
            epoch: row.try_get("epoch").map_err(c)?,
            now: row.try_get("renewed_at").map_err(c)?,
            previous: previous.map(|p| (p.holder, p.expires_at)),
        })
    }

    /// Extends the lease held at `epoch` through this session; false when it is no
    /// longer ours (a newer epoch, or another session holds it).
    pub async fn renew(&mut self, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE leases SET renewed_at = {DB_NOW}, expires_at = {DB_NOW} + $1 \
             WHERE name = 'leader' AND epoch = $2 AND holder_session = pg_backend_pid()"
        )))
        .bind(ms(ttl))
        .bind(epoch)
        .execute(&mut self.conn)
        .await
        .ctx("renew the lease")?;
        Ok(done.rows_affected() == 1)
    }

    /// Hands the lease back at a clean stop: it ends now and the lock is released, so a
    /// standby need not wait for it to run out.
    pub async fn release(&mut self, epoch: i64) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE leases SET expires_at = {DB_NOW} \
             WHERE name = 'leader' AND epoch = $1 AND holder_session = pg_backend_pid()"
        )))
        .bind(epoch)
        .execute(&mut self.conn)
        .await
        .ctx("release the lease")?;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut self.conn)
            .await
            .ctx("release the leader lock")?;
        Ok(())
    }

    /// The lease ran out `grace` ago but its holder's session still holds the lock (a
    /// frozen or cut-off leader whose connection the database has not yet dropped): end
    /// that session so the lock is free. Returns how many sessions were ended.
    pub async fn end_expired_holder(&mut self, grace: Duration) -> Result<u64, StoreError> {
        let pids: Vec<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT l.pid FROM pg_locks l, leases s \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND ((CAST(l.classid AS BIGINT) << 32) | CAST(l.objid AS BIGINT)) = $1 \
               AND l.pid <> pg_backend_pid() \
               AND s.name = 'leader' AND s.expires_at + $2 < {DB_NOW}"
        )))
        .bind(LEADER_LOCK)
        .bind(ms(grace))
        .fetch_all(&mut self.conn)
        .await
        .ctx("find the session of an expired leader")?;
        let mut ended = 0;
        for pid in pids {
            let done: SqlBool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&mut self.conn)
                .await
                .ctx("end the session of an expired leader")?;
            ended += u64::from(done.0);
        }
        Ok(ended)
    }

    /// Whether the session still answers.
    pub async fn ping(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}
