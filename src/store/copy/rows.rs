//! The copy's rows (`sluice migrate --to`): streams one table of the source into the
//! target, several rows per INSERT, each value read and bound with its column's type.
//! Writes the target's tables named in the copy plan, inside the copy's transaction;
//! reads the source. Portable SQL only.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::CopyError;
use super::catalog::{Column, Kind};

/// At most this many bound values in one INSERT (PostgreSQL allows 65535).
const MAX_VALUES_PER_INSERT: usize = 8_000;

enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Streams the source's rows of `table` into the target, several rows per INSERT.
pub(super) async fn copy_rows(
    src: &mut AnyConnection,
    tx: &mut AnyConnection,
    table: &'static str,
    columns: &[Column],
) -> Result<(), CopyError> {
    let list = columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let per_insert = (MAX_VALUES_PER_INSERT / columns.len().max(1)).max(1);
    let mut rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {list} FROM {table}"))).fetch(src);
    let mut batch = Vec::with_capacity(per_insert);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|source| CopyError::Write { table, source })?
    {
        batch.push(cells(&row, table, columns)?);
        if batch.len() == per_insert {
            insert(tx, table, &list, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        insert(tx, table, &list, batch).await?;
    }
    Ok(())
}

fn cells(row: &AnyRow, table: &'static str, columns: &[Column]) -> Result<Vec<Cell>, CopyError> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let bad = |source| CopyError::Value {
                table,
                column: c.name.clone(),
                source,
            };
            Ok(match c.kind {
                Kind::Int => Cell::Int(row.try_get(i).map_err(bad)?),
                Kind::Text => Cell::Text(row.try_get(i).map_err(bad)?),
            })
        })
        .collect()
}

async fn insert(
    tx: &mut AnyConnection,
    table: &'static str,
    list: &str,
    batch: Vec<Vec<Cell>>,
) -> Result<(), CopyError> {
    let mut sql = format!("INSERT INTO {table} ({list}) VALUES ");
    let mut n = 0;
    for (i, row) in batch.iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for j in 0..row.len() {
            n += 1;
            if j > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${n}"));
        }
        sql.push(')');
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for cell in batch.into_iter().flatten() {
        query = match cell {
            Cell::Int(v) => query.bind(v),
            Cell::Text(v) => query.bind(v),
        };
    }
    query
        .execute(tx)
        .await
        .map_err(|source| CopyError::Write { table, source })?;
    Ok(())
}
