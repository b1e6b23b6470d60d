//! The store: every SQL statement of sluice lives under this module.
//!
//! SQLite (WAL with `synchronous = FULL`, busy timeout, foreign keys) is the embedded
//! default: a journal write that returned is durable before the action it announces. The SQL is written to
//! run unchanged on PostgreSQL: positional `$n` parameters, Unix-millisecond `BIGINT`
//! times, no SQLite-only functions in queries. Writers of mutable rows check `version`
//! (optimistic concurrency) and report [`StoreError::Conflict`] on a lost race.
//!
//! One module per table group, each naming its tables and writers in its header:
//! `workspaces/` (the `workspaces` table), `updates/` (the `workspace_updates` journal and
//! `failed_digests`), `snapshots/`, `events` (the audit trail and the notifier's feed),
//! `settings`, and the rollout and release tables; `pool` opens the database, `copy`
//! copies a whole database into an empty PostgreSQL one (`sluice migrate --to`). Shared
//! here: [`StoreError`], `.ctx()` and the SQL vocabulary of finished journal phases.
//!
//! Architecture invariant: no other module writes SQL.

mod copy;
mod dialect;
mod events;
mod hosts;
mod leases;
mod pool;
mod releases;
mod rollouts;
mod settings;
mod snapshots;
#[cfg(any(test, feature = "test-support"))]
mod test_db;
mod updates;
mod wake_bus;
mod workspaces;

use sqlx::AnyPool;

pub use events::{Event, FeedEvent, NOTIFY_CURSOR, NewEvent};
pub use hosts::{Heartbeat, HostRow};
pub use leases::{Claim, LeaseRow, LeaseSession};
pub use releases::{
    CHANGELOG_FILE_ATTEMPTS, ChangelogFileDue, ProbeRecord, ProbeSuccess, RejectOutcome, Release,
    TrackedImage,
};
#[cfg(test)]
pub(crate) use rollouts::fixtures;
pub use rollouts::{CandidateRow, RolloutRow, SettledTargets, TargetRow};
pub use snapshots::{
    ProtectedReason, Released, SnapshotDone, SnapshotFacts, SnapshotInfo, SnapshotRow,
    SnapshotUpdate,
};
pub use updates::{
    ConvergeTarget, LastUpdate, Outcome, PhaseSpan, RestoreError, RestoreRequest, UnreadableRow,
    UpdateAttempt, UpdateKind, UpdateRow,
};
pub use wake_bus::WakeListener;
pub use workspaces::{
    AdoptedVolume, Adoption, KeptVolume, NewWorkspace, Observed, RetireResult, Retirement,
    Workspace, WorkspaceIdentity, WorkspacePatch,
};

pub use copy::{COPY_PLAN, Carry, CopyError, TableCopy};
pub use dialect::Engine;
pub(crate) use dialect::SqlBool;
pub use pool::{CONNECT_TIMEOUT, redact_url, sqlite_file_missing};
#[cfg(any(test, feature = "test-support"))]
pub use test_db::TestDb;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("cannot connect to database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("unsupported database URL scheme `{scheme}:` (use sqlite:// or postgres://)")]
    UnknownEngine { scheme: String },
    #[error(
        "the database has schema version {found}, newer than this sluice knows ({known}); \
         upgrade sluice before starting it on this database"
    )]
    NewerSchema { found: i64, known: i64 },
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
    /// A loop write of a leader whose epoch is no longer the lease's (PostgreSQL's
    /// fencing trigger, `migrations/postgres/0007_leadership.sql`): nothing was written.
    #[error("write refused ({context}): {message}")]
    Fenced {
        context: &'static str,
        message: String,
    },
}

impl StoreError {
    /// A failed statement: `Fenced` when the fencing trigger refused it, else `Query`.
    pub(crate) fn query(context: &'static str, source: sqlx::Error) -> Self {
        match &source {
            sqlx::Error::Database(d) if d.code().as_deref() == Some(FENCED_SQLSTATE) => {
                Self::Fenced {
                    context,
                    message: d.message().to_owned(),
                }
            }
            _ => Self::Query { context, source },
        }
    }

    /// True when the database refused the write because a newer leader holds the lease.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }
}

/// The SQLSTATE the fencing trigger raises.
const FENCED_SQLSTATE: &str = "SL001";

/// Adds the statement's purpose to a sqlx error.
pub(crate) trait QueryContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::query(context, source))
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

/// The journal phases after which a row needs nothing more (`UpdatePhase::is_terminal`),
/// as an SQL list: `phase NOT IN` it is an open row.
pub(crate) const FINISHED_PHASES: &str = "('succeeded', 'rolled_back', 'failed', 'quarantined')";

/// True when a sqlx error is a UNIQUE constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}
