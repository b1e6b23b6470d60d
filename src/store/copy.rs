//! Copying a whole database into an empty PostgreSQL one, for `sluice migrate --to`.
//! Writes every table of the target in [`COPY_PLAN`] (all of them but `leases`, which
//! starts empty: see the plan), in one target transaction, and only into a target that
//! holds no data yet; reads the source in one transaction of its own and writes nothing
//! there. Ids are copied as they are, so every reference between rows (and every id an
//! operator wrote down) stays valid.
//!
//! ENGINE-SPECIFIC SQL of the copy lives in `copy/catalog.rs` (the catalog reads and the
//! identity reset), clearly marked there; this file and `copy/rows.rs` are portable SQL.
//!
//! The copy cannot silently leave a table behind: before anything is written, the tables
//! of both databases must be exactly those of the plan, and the columns of each table the
//! same on both sides; a table added by a later migration stops the copy until the plan
//! names it (and `tests/it/migrate_to.rs` compares the plan with both schemas).

mod catalog;
mod rows;

use sqlx::AnyConnection;

use super::dialect::Engine;
use super::{QueryContext, Store, StoreError};
use catalog::{Column, column_names, reset_identities, tables, target_columns};
use rows::copy_rows;

/// What the copy does with a table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    /// Every row, ids included.
    Rows,
    /// None: the table starts empty in the target.
    Fresh,
}

/// Every table of the schema, parents before children (the target checks each foreign
/// key as a row goes in).
pub const COPY_PLAN: &[(&str, Carry)] = &[
    ("settings", Carry::Rows),
    ("hosts", Carry::Rows),
    ("workspaces", Carry::Rows),
    ("failed_digests", Carry::Rows),
    ("tracked_images", Carry::Rows),
    ("releases", Carry::Rows),
    ("rollouts", Carry::Rows),
    ("rollout_targets", Carry::Rows),
    ("rollout_analysis", Carry::Rows),
    ("workspace_updates", Carry::Rows),
    ("update_phases", Carry::Rows),
    ("snapshots", Carry::Rows),
    ("events", Carry::Rows),
    // The leader lease belongs to the old database's instance and epoch (an SQLite
    // database, which has one daemon, never writes it). Left empty, the first instance
    // started on PostgreSQL claims it at epoch 1 and leads at once.
    ("leases", Carry::Fresh),
];

/// Rows the migrations themselves put in an empty database: `settings` holding only its
/// seeded `fleet_mode`, never changed (`version` 1), still counts as empty.
const SEEDED_SETTINGS: &str = "key = 'fleet_mode' AND version = 1";

/// One table's line of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    pub carry: Carry,
    pub source_rows: i64,
    /// Counted in the target after the copy, before the commit.
    pub target_rows: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target database must be PostgreSQL (postgres://…)")]
    TargetNotPostgres,
    #[error(
        "the target database is not empty: table `{table}` holds {rows} row(s); \
         migrate into a new, empty database"
    )]
    NotEmpty { table: &'static str, rows: i64 },
    #[error(
        "table `{table}` of the {side} database is not in the copy plan \
         (src/store/copy.rs); refusing to leave it behind"
    )]
    UnknownTable { table: String, side: &'static str },
    #[error("table `{table}` is missing from the {side} database")]
    MissingTable {
        table: &'static str,
        side: &'static str,
    },
    #[error("column `{table}.{column}` is missing from the {side} database")]
    MissingColumn {
        table: &'static str,
        column: String,
        side: &'static str,
    },
    #[error("column `{table}.{column}` has type `{ty}`, which the copy does not know")]
    ColumnType {
        table: &'static str,
        column: String,
        ty: String,
    },
    #[error("cannot read `{table}.{column}` from the source: {source}")]
    Value {
        table: &'static str,
        column: String,
        source: sqlx::Error,
    },
    #[error("cannot copy table `{table}`: {source}")]
    Write {
        table: &'static str,
        source: sqlx::Error,
    },
    #[error(
        "table `{table}`: {source_rows} row(s) in the source but {target_rows} in the \
         target after the copy; nothing was committed"
    )]
    CountMismatch {
        table: &'static str,
        source_rows: i64,
        target_rows: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Copies every row of this database into `target` (PostgreSQL, migrated to the same
    /// schema, holding no data), verifies the row count of each table and commits once.
    /// On any error nothing is committed.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<TableCopy>, CopyError> {
        if target.engine != Engine::Postgres {
            return Err(CopyError::TargetNotPostgres);
        }
        let mut src = self.pool.begin().await.ctx("begin reading the source")?;
        let mut tx = target.pool.begin().await.ctx("begin the copy")?;
        check_tables(&mut src, self.engine, "source").await?;
        check_tables(&mut tx, Engine::Postgres, "target").await?;
        refuse_data(&mut tx).await?;
        sqlx::query("DELETE FROM settings")
            .execute(&mut *tx)
            .await
            .ctx("clear the seeded settings")?;
        let mut report = Vec::with_capacity(COPY_PLAN.len());
        for &(table, carry) in COPY_PLAN {
            let columns = target_columns(&mut tx, table).await?;
            let source_columns = column_names(&mut src, self.engine, table).await?;
            same_columns(table, &columns, &source_columns)?;
            let source_rows = count(&mut src, table).await?;
            if carry == Carry::Rows {
                copy_rows(&mut src, &mut tx, table, &columns).await?;
                reset_identities(&mut tx, table, &columns).await?;
            }
            let target_rows = count(&mut tx, table).await?;
            let expected = if carry == Carry::Rows { source_rows } else { 0 };
            if target_rows != expected {
                return Err(CopyError::CountMismatch {
                    table,
                    source_rows: expected,
                    target_rows,
                });
            }
            report.push(TableCopy {
                table,
                carry,
                source_rows,
                target_rows,
            });
        }
        // Every read is done: end the source's transaction first, so that nothing can
        // fail after the target committed.
        src.rollback().await.ctx("end reading the source")?;
        tx.commit().await.ctx("commit the copy")?;
        Ok(report)
    }

    /// The tables of this database's schema (migrations' own table aside), sorted.
    pub async fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire a connection")?;
        let mut names = tables(&mut conn, self.engine).await?;
        names.sort();
        Ok(names)
    }
}

/// The database's tables must be exactly the plan's.
async fn check_tables(
    conn: &mut AnyConnection,
    engine: Engine,
    side: &'static str,
) -> Result<(), CopyError> {
    let found = tables(conn, engine).await?;
    if let Some(extra) = found
        .iter()
        .find(|t| !COPY_PLAN.iter().any(|(p, _)| p == t))
    {
        return Err(CopyError::UnknownTable {
            table: extra.clone(),
            side,
        });
    }
    if let Some((missing, _)) = COPY_PLAN
        .iter()
        .find(|(p, _)| !found.iter().any(|t| t == p))
    {
        return Err(CopyError::MissingTable {
            table: missing,
            side,
        });
    }
    Ok(())
}

/// Refuses a target holding any row beyond what its migrations seeded.
async fn refuse_data(tx: &mut AnyConnection) -> Result<(), CopyError> {
    for &(table, _) in COPY_PLAN {
        let rows: i64 = if table == "settings" {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM settings WHERE NOT ({SEEDED_SETTINGS})"
            )))
            .fetch_one(&mut *tx)
            .await
            .ctx("count the target's settings")?
        } else {
            count(tx, table).await?
        };
        if rows > 0 {
            return Err(CopyError::NotEmpty { table, rows });
        }
    }
    Ok(())
}

/// `table` comes from [`COPY_PLAN`], never from input.
async fn count(conn: &mut AnyConnection, table: &'static str) -> Result<i64, CopyError> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .map_err(|source| CopyError::Write { table, source })
}

fn same_columns(
    table: &'static str,
    target: &[Column],
    source: &[String],
) -> Result<(), CopyError> {
    let missing = |column: &str, side| CopyError::MissingColumn {
        table,
        column: column.to_owned(),
        side,
    };
    if let Some(c) = target.iter().find(|c| !source.contains(&c.name)) {
        return Err(missing(&c.name, "source"));
    }
    if let Some(c) = source
        .iter()
        .find(|s| !target.iter().any(|c| &c.name == *s))
    {
        return Err(missing(c, "target"));
    }
    Ok(())
}
