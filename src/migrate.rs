//! `sluice migrate --to postgres://…`: moves a fleet's SQLite database to PostgreSQL.
//!
//! Opens the configured (source) database as startup does, which applies its pending
//! migrations and settles its fleet id, so the copy carries the fleet id too; applies the
//! PostgreSQL migrations to the target; copies every table (`Store::copy_into`: refused
//! unless the target holds no data, one transaction, row counts verified) and returns the
//! per-table summary. The target URL carries a password: it is shown only through
//! `redact_url`.

use std::fmt::Write as _;

use crate::config::Settings;
use crate::startup::{self, StartupError};
use crate::store::{
    Carry, CopyError, Engine, Store, StoreError, TableCopy, redact_url, sqlite_file_missing,
};

/// Connections to the target: the copy uses one, the migrations another.
const TARGET_CONNECTIONS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("--to {url}: the target must be a PostgreSQL database (postgres://…)")]
    TargetNotPostgres { url: String },
    #[error(
        "the source database {url} is already PostgreSQL; `migrate --to` copies an SQLite \
         database (between PostgreSQL servers, use pg_dump)"
    )]
    SourceNotSqlite { url: String },
    #[error(
        "the source database {url} does not exist; check [database] url and [data] dir \
         (SLUICE__DATABASE__URL, SLUICE__DATA__DIR)"
    )]
    NoSource { url: String },
    #[error("source: {0}")]
    Source(#[source] StartupError),
    #[error("target: {0}")]
    Target(#[source] StoreError),
    #[error("{0}")]
    Copy(#[source] CopyError),
}

/// What a finished copy reports.
#[derive(Debug)]
pub struct Migrated {
    pub source: String,
    pub target: String,
    pub fleet: Option<String>,
    pub tables: Vec<TableCopy>,
}

/// Copies the configured database into the empty PostgreSQL database at `target_url`.
pub async fn to_postgres(settings: &Settings, target_url: &str) -> Result<Migrated, MigrateError> {
    let target = redact_url(target_url);
    if !matches!(Engine::of_url(target_url), Ok(Engine::Postgres)) {
        return Err(MigrateError::TargetNotPostgres { url: target });
    }
    let source_url = settings.database_url();
    if !matches!(Engine::of_url(&source_url), Ok(Engine::Sqlite)) {
        return Err(MigrateError::SourceNotSqlite {
            url: redact_url(&source_url),
        });
    }
    if sqlite_file_missing(&source_url) {
        return Err(MigrateError::NoSource {
            url: redact_url(&source_url),
        });
    }
    let source = startup::open_store(settings)
        .await
        .map_err(MigrateError::Source)?;
    let result = copy(&source, target_url, settings).await;
    let fleet = source.stored_fleet().await.ok().flatten();
    source.close().await;
    Ok(Migrated {
        source: redact_url(&source_url),
        target,
        fleet,
        tables: result?,
    })
}

async fn copy(
    source: &Store,
    target_url: &str,
    settings: &Settings,
) -> Result<Vec<TableCopy>, MigrateError> {
    let target = Store::open(
        target_url,
        TARGET_CONNECTIONS,
        settings.database.busy_timeout,
    )
    .await
    .map_err(MigrateError::Target)?;
    let copied = match target.migrate().await {
        Ok(()) => source.copy_into(&target).await.map_err(MigrateError::Copy),
        Err(e) => Err(MigrateError::Target(e)),
    };
    target.close().await;
    copied
}

impl std::fmt::Display for Migrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fleet = self.fleet.as_deref().unwrap_or("-");
        writeln!(
            f,
            "copied {} to {} (fleet {fleet})",
            self.source, self.target
        )?;
        writeln!(f, "{:<20} {:>10} {:>10}", "table", "source", "target")?;
        for t in &self.tables {
            let mut line = format!(
                "{:<20} {:>10} {:>10}",
                t.table, t.source_rows, t.target_rows
            );
            if t.carry == Carry::Fresh {
                let _ = write!(
                    line,
                    "  not copied: the first instance on PostgreSQL takes the lease afresh"
                );
            }
            writeln!(f, "{line}")?;
        }
        writeln!(
            f,
            "row counts verified. Now set [database] url to the target (fleet {fleet}) and \
             start sluice on it."
        )
    }
}
