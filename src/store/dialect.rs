//! The one place in the store where SQLite and PostgreSQL differ (besides the two
//! migration folders). Every query runs unchanged on both engines through sqlx's `Any`
//! driver: positional `$n` parameters, Unix-millisecond `BIGINT` times, no
//! engine-only functions. What cannot be written once lives here: choosing the engine
//! from the URL, the per-connection settings, the migrator of each dialect, and
//! decoding a truth value (SQLite answers `EXISTS` with an integer, PostgreSQL with a
//! boolean). No table of its own; writes nothing.
//!
//! Also here: refreshing PostgreSQL's planner statistics after a bulk insert.
//!
//! Engine-only features are not differences of shared SQL and so live with their one
//! user, marked as such: the leader election (advisory lock, database clock, fenced
//! pool) is PostgreSQL-only SQL in `leases.rs`, and `sluice migrate --to` reads the
//! catalogs and resets PostgreSQL's identity sequences in `copy/catalog.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{Any, AnyTypeInfo, AnyTypeInfoKind, AnyValueRef};
use sqlx::decode::Decode;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::types::Type;
use sqlx::{Executor, ValueRef};

use super::StoreError;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The database engine behind a store, chosen by the URL's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `sqlite://PATH` or `sqlite::memory:`: one daemon, the embedded default.
    Sqlite,
    /// `postgres://…` (or `postgresql://…`): shared by every instance of a fleet.
    Postgres,
}

impl Engine {
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnknownEngine {
                scheme: url.split(':').next().unwrap_or_default().to_owned(),
            })
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    pub(super) fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATOR,
            Self::Postgres => &POSTGRES_MIGRATOR,
        }
    }
}

/// SQLite durability mode; PostgreSQL's commits are always durable (`fsync` on).
#[derive(Clone, Copy, Debug)]
pub(super) enum Synchronous {
    Full,
    Normal,
}

/// What the pool needs to know about an SQLite URL: the URL handed to the `Any`
/// driver (created when missing), whether it is in memory (one connection only: each
/// connection of an in-memory URL would get a database of its own), and the file's
/// parent directory to create.
pub(super) struct SqliteTarget {
    pub any_url: String,
    /// The database file's path.
    pub path: std::path::PathBuf,
    pub in_memory: bool,
    pub parent: Option<std::path::PathBuf>,
}

pub(super) fn sqlite_target(url: &str) -> Result<SqliteTarget, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let path = options.get_filename().to_path_buf();
    let parent = path
        .parent()
        .filter(|p| !in_memory && !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf());
    let any_url = if in_memory || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok(SqliteTarget {
        any_url,
        path,
        in_memory,
        parent,
    })
}

/// Settings applied to every new SQLite connection: WAL, `synchronous` (FULL: a commit
/// is on disk when it returns, so a journal phase is durable before the action it
/// announces; cost measured in `benches/journal.rs`), the busy timeout and foreign keys.
pub(super) async fn sqlite_session(
    conn: &mut sqlx::AnyConnection,
    synchronous: Synchronous,
    busy_timeout: Duration,
) -> Result<(), sqlx::Error> {
    let sync = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    let sql = format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
         PRAGMA foreign_keys = ON;",
        busy_timeout.as_millis()
    );
    conn.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// Bulk inserts at which the table's planner statistics are refreshed at once.
pub(super) const ANALYZE_AFTER_ROWS: usize = 1000;

/// After a bulk insert into `table` (a new rollout's targets): on PostgreSQL, refresh
/// the table's planner statistics now instead of when autovacuum gets to it (up to a
/// minute later), so the next controller passes join the new rows by hash rather than
/// one index lookup per row. SQLite plans without statistics; nothing to do. A failure
/// only costs speed: logged, not returned.
pub(super) async fn analyze_after_bulk_insert(
    pool: &sqlx::AnyPool,
    engine: Engine,
    table: &'static str,
) {
    if engine != Engine::Postgres {
        return;
    }
    let sql = format!("ANALYZE {table}");
    if let Err(e) = pool.execute(sqlx::AssertSqlSafe(sql.as_str())).await {
        tracing::warn!(table, error = %e, "could not refresh planner statistics");
    }
}

/// A truth value read from a query: PostgreSQL answers `EXISTS (…)` with a boolean,
/// SQLite with 0 or 1. Read into a row field with `#[sqlx(try_from = "SqlBool")]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SqlBool(pub bool);

impl From<SqlBool> for bool {
    fn from(b: SqlBool) -> bool {
        b.0
    }
}

impl Type<Any> for SqlBool {
    fn type_info() -> AnyTypeInfo {
        <bool as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        ty.kind() == AnyTypeInfoKind::Bool || ty.kind().is_integer()
    }
}

impl<'r> Decode<'r, Any> for SqlBool {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.type_info().kind() == AnyTypeInfoKind::Bool {
            <bool as Decode<Any>>::decode(value).map(SqlBool)
        } else {
            <i64 as Decode<Any>>::decode(value).map(|n| SqlBool(n != 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_comes_from_the_scheme() {
        assert_eq!(Engine::of_url("sqlite:///x.db").unwrap(), Engine::Sqlite);
        assert_eq!(Engine::of_url("sqlite::memory:").unwrap(), Engine::Sqlite);
        assert_eq!(
            Engine::of_url("postgres://u@127.0.0.1/db").unwrap(),
            Engine::Postgres
        );
        assert_eq!(
            Engine::of_url("postgresql://u@h/db").unwrap(),
            Engine::Postgres
        );
        let err = Engine::of_url("mysql://h/db").unwrap_err().to_string();
        assert!(err.contains("mysql"), "{err}");
    }

    #[test]
    fn an_sqlite_file_is_created_when_missing_and_memory_stays_memory() {
        let t = sqlite_target("sqlite:///tmp/a/b.db").unwrap();
        assert_eq!(t.any_url, "sqlite:///tmp/a/b.db?mode=rwc");
        assert_eq!(t.parent.unwrap(), std::path::Path::new("/tmp/a"));
        let m = sqlite_target("sqlite::memory:").unwrap();
        assert!(m.in_memory && m.parent.is_none());
        assert_eq!(m.any_url, "sqlite::memory:");
    }
}
