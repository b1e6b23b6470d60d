//! Opening the database: the SQLite pool and its durability settings, migrations, and
//! the health check. No table of its own (nothing here writes rows); used by `startup`
//! and `sluice migrate`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{MIGRATOR, QueryContext, Store, StoreError};

impl Store {
    /// Opens (creating if missing) the SQLite database at `url` (`sqlite://PATH`).
    pub async fn open(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with(url, max_connections, busy_timeout, SqliteSynchronous::Full).await
    }

    /// [`Store::open`] with `synchronous = NORMAL`: a power loss may drop the last
    /// commits. Only for `benches/journal.rs`, which measures what FULL costs.
    #[doc(hidden)]
    pub async fn open_normal_sync_for_bench(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with(
            url,
            max_connections,
            busy_timeout,
            SqliteSynchronous::Normal,
        )
        .await
    }

    async fn open_with(
        url: &str,
        max_connections: u32,
        busy_timeout: Duration,
        synchronous: SqliteSynchronous,
    ) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL (`open`): a commit is on disk when it returns (WAL fsynced per transaction).
            // With NORMAL a power loss can drop the last commits, among them a journal
            // phase whose action (a stop, a volume emptied for a restore) already
            // happened. Cost measured in benches/journal.rs (docs/reconciler.md).
            .synchronous(synchronous)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        if let Some(parent) = Path::new(options.get_filename()).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(busy_timeout + Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(open_err)?;
        Ok(Self { pool })
    }

    /// Applies pending migrations; a no-op when the schema is current.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
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
    pub fn raw_pool(&self) -> &SqlitePool {
        &self.pool
    }
}
