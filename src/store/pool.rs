//! Opening the database: the engine chosen by the URL, the pool and its per-connection
//! settings, migrations, and the health check. No table of its own (nothing here writes
//! rows); used by `startup` and `sluice migrate`.

use std::time::Duration;

use sqlx::Connection;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::dialect::{self, Engine, Synchronous};
use super::{QueryContext, Store, StoreError};

impl Store {
    /// Opens the database at `url`: `sqlite://PATH` (created when missing) or
    /// `postgres://…` (which must exist).
    pub async fn open(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with(url, max_connections, busy_timeout, Synchronous::Full).await
    }

    /// [`Store::open`] with SQLite's `synchronous = NORMAL`: a power loss may drop the
    /// last commits. Only for `benches/journal.rs`, which measures what FULL costs.
    #[doc(hidden)]
    pub async fn open_normal_sync_for_bench(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with(url, max_connections, busy_timeout, Synchronous::Normal).await
    }

    async fn open_with(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
        synchronous: Synchronous,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = Engine::of_url(url)?;
        let open_err = |source| StoreError::Open {
            url: redact_url(url),
            source,
        };
        let acquire = busy_timeout + Duration::from_secs(5);
        let pool = match engine {
            Engine::Sqlite => {
                let target = dialect::sqlite_target(url).map_err(open_err)?;
                if let Some(parent) = &target.parent {
                    std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                let mut options = AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .after_connect(move |conn, _| {
                        Box::pin(dialect::sqlite_session(conn, synchronous, busy_timeout))
                    });
                if target.in_memory {
                    options = options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                options.connect(&target.any_url).await.map_err(open_err)?
            }
            Engine::Postgres => {
                probe_postgres(url).await?;
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(acquire)
                    .connect(url)
                    .await
                    .map_err(open_err)?
            }
        };
        Ok(Self { pool, engine })
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies pending migrations; a no-op when the schema is current. A database that
    /// holds migrations this binary does not know (written by a newer sluice) is refused.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.check_schema().await?;
        self.engine.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Refuses a database that holds migrations this binary does not know (written by a
    /// newer sluice); reads only. An empty database passes.
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let known: Vec<i64> = self.engine.migrator().iter().map(|m| m.version).collect();
        if let Some(newest) = self.newest_applied().await?
            && !known.contains(&newest)
        {
            return Err(StoreError::NewerSchema {
                found: newest,
                known: known.iter().copied().max().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// The newest applied migration, `None` on an empty database.
    pub(super) async fn newest_applied(&self) -> Result<Option<i64>, StoreError> {
        let exists: i64 = sqlx::query_scalar(match self.engine {
            Engine::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
                 AND name = '_sqlx_migrations'"
            }
            Engine::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        })
        .fetch_one(&self.pool)
        .await
        .ctx("look for the migrations table")?;
        if exists == 0 {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&self.pool)
            .await
            .ctx("read the newest migration")
    }

    /// Versions of the migrations applied so far (for `sluice migrate` output and tests).
    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success = TRUE ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list applied migrations")
    }

    /// Answers when the database does (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("ping")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// For tests that must reach past the typed API (e.g. to prove a CHECK constraint).
    #[doc(hidden)]
    pub fn raw_pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// How long opening a PostgreSQL database waits for the server to answer: an address
/// that drops packets stops startup after this, not after the TCP stack gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection first, bounded by [`CONNECT_TIMEOUT`], so that a server that refuses,
/// a database that does not exist or a wrong password is reported at once with the
/// server's own words (the pool would retry until its acquire timeout and then only say
/// that it timed out).
async fn probe_postgres(url: &str) -> Result<(), StoreError> {
    let refused = |reason: String| StoreError::Connect {
        url: redact_url(url),
        reason,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
        Err(_) => Err(refused(format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
        Ok(Err(e)) => Err(refused(connect_reason(&e))),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
    }
}

/// The server's message without sqlx's wrapping (which repeats it and adds the source
/// line of the server's C code): `database "x" does not exist`, `Connection refused`.
fn connect_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// True for an SQLite URL whose file does not exist (opening it would create an empty
/// database); false for every other URL.
pub fn sqlite_file_missing(url: &str) -> bool {
    match (Engine::of_url(url), dialect::sqlite_target(url)) {
        (Ok(Engine::Sqlite), Ok(target)) if !target.in_memory => {
            !std::path::Path::new(&target.path).exists()
        }
        _ => false,
    }
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_password_never_leaves_the_url() {
        assert_eq!(
            redact_url("postgres://sluice:s3cret@db:5432/sluice"),
            "postgres://sluice:***@db:5432/sluice"
        );
        assert_eq!(redact_url("postgres://db/sluice"), "postgres://db/sluice");
        assert_eq!(
            redact_url("sqlite:///var/lib/x.db"),
            "sqlite:///var/lib/x.db"
        );
    }
}
