//! ENGINE-SPECIFIC SQL of the copy (`sluice migrate --to`), the one place besides
//! `dialect.rs` and `leases.rs` where SQLite and PostgreSQL are spoken to differently:
//! the catalog reads (which tables and columns exist: SQLite's `sqlite_master` and
//! `pragma_table_info`, PostgreSQL's `information_schema`) and the identity reset
//! (`setval`, PostgreSQL only). Reads the catalogs; writes only the target's identity
//! sequences, inside the copy's transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::CopyError;
use crate::store::dialect::Engine;
use crate::store::{QueryContext, StoreError};

/// How a column's values are read from the source and bound into the target.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Int,
    Text,
}

#[derive(Debug)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) kind: Kind,
    /// `GENERATED … AS IDENTITY`: its sequence is moved past the copied ids.
    pub(super) identity: bool,
}

pub(super) async fn tables(
    conn: &mut AnyConnection,
    engine: Engine,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(match engine {
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'"
        }
        Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> '_sqlx_migrations'"
        }
    })
    .fetch_all(conn)
    .await
    .ctx("list the tables")
}

pub(super) async fn column_names(
    conn: &mut AnyConnection,
    engine: Engine,
    table: &'static str,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(match engine {
        Engine::Sqlite => "SELECT name FROM pragma_table_info($1)",
        Engine::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    })
    .bind(table)
    .fetch_all(conn)
    .await
    .ctx("list a table's columns")
}

/// The target's columns of `table`, in order, with how to carry each.
pub(super) async fn target_columns(
    tx: &mut AnyConnection,
    table: &'static str,
) -> Result<Vec<Column>, CopyError> {
    let rows: Vec<AnyRow> = sqlx::query(
        "SELECT CAST(column_name AS TEXT) AS name, CAST(data_type AS TEXT) AS ty, \
         CAST(is_identity AS TEXT) AS identity FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(tx)
    .await
    .ctx("describe a target table")?;
    rows.iter()
        .map(|r| {
            let get = |c: &str| {
                r.try_get::<String, _>(c)
                    .map_err(|source| CopyError::Write { table, source })
            };
            let (name, ty) = (get("name")?, get("ty")?);
            let kind = match ty.as_str() {
                "bigint" => Kind::Int,
                "text" => Kind::Text,
                _ => {
                    return Err(CopyError::ColumnType {
                        table,
                        column: name,
                        ty,
                    });
                }
            };
            Ok(Column {
                name,
                kind,
                identity: get("identity")? == "YES",
            })
        })
        .collect()
}

/// Moves each identity sequence of `table` past the highest copied id, so the next row
/// the daemon inserts does not collide with a copied one (PostgreSQL only).
pub(super) async fn reset_identities(
    tx: &mut AnyConnection,
    table: &'static str,
    columns: &[Column],
) -> Result<(), CopyError> {
    for c in columns.iter().filter(|c| c.identity) {
        let column = &c.name;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await
        .map_err(|source| CopyError::Write { table, source })?;
    }
    Ok(())
}
