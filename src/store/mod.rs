//! The store: every SQL statement of sluice lives under this module.
//!
//! SQLite (WAL with `synchronous = FULL`, busy timeout, foreign keys) is the embedded
//! default: a journal write that returned is durable before the action it announces. The SQL is written to
//! run unchanged on PostgreSQL: positional `$n` parameters, Unix-millisecond `BIGINT`
//! times, no SQLite-only functions in queries. Writers of mutable rows check `version`
//! (optimistic concurrency) and report [`StoreError::Conflict`] on a lost race.
//!
//! Architecture invariant: no other module writes SQL.

mod events;
mod notify_feed;
mod release_admin;
mod releases;
mod restore_queue;
mod restores;
mod retirements;
mod rollout_batch;
mod rollout_pass;
mod rollout_targets;
mod rollouts;
mod settings;
mod snapshots;
mod tracked_images;
mod updates;
mod workspace_admin;
mod workspace_status;
mod workspace_volumes;
mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use events::{Event, NewEvent};
pub use notify_feed::FeedEvent;
pub use release_admin::RejectOutcome;
pub use releases::{ProbeRecord, ProbeSuccess, Release};
pub use restore_queue::{RestoreError, RestoreRequest};
pub use retirements::{KeptVolume, RetireResult, Retirement};
pub use rollout_pass::SettledTargets;
pub use rollout_targets::{
    CandidateRow, DesiredWrite, NewTarget, RolloutRowWrite, RolloutWrite, TargetRow, TargetWrite,
};
pub use rollouts::RolloutRow;
pub use snapshots::{
    ProtectedReason, Released, SnapshotDone, SnapshotFacts, SnapshotInfo, SnapshotRow,
    SnapshotUpdate,
};
pub use tracked_images::TrackedImage;
pub use updates::{ConvergeTarget, Outcome, UnreadableRow, UpdateKind, UpdateRow};
pub use workspace_admin::{LastUpdate, WorkspacePatch};
pub use workspace_status::Observed;
pub use workspace_volumes::{AdoptedVolume, WorkspaceIdentity};
pub use workspaces::{NewWorkspace, Workspace};

/// Embedded migrations for the SQLite dialect.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database query failed ({context}): {source}")]
    Query {
        context: &'static str,
        source: sqlx::Error,
    },
    #[error("{what} `{key}` not found")]
    NotFound { what: &'static str, key: String },
    #[error("{what} `{key}` already exists")]
    AlreadyExists { what: &'static str, key: String },
    #[error("{what} `{key}` was changed concurrently; re-read and retry")]
    Conflict { what: &'static str, key: String },
    #[error("volume `{volume}` is used by workspace `{owner}`")]
    VolumeInUse { volume: String, owner: String },
    #[error("stored {what} is invalid: {message}")]
    Corrupt { what: &'static str, message: String },
}

/// Adds the statement's purpose to a sqlx error.
pub(crate) trait QueryContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { context, source })
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

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

/// True when a sqlx error is a UNIQUE constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
