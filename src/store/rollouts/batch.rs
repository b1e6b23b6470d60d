//! Same-shaped rollout writes (`rollout_targets`, `workspaces.desired_digest`) as one
//! statement per run of rows, inside `Store::apply_rollout_changes`'s transaction. Only consecutive writes of one shape share a statement, and a run ends
//! at a repeated workspace, so the rows change exactly as with one statement each.

use std::collections::HashSet;

use sqlx::AnyConnection;

use crate::domain::{DesiredChange, TargetChange};
use crate::store::{QueryContext, StoreError};

// Statements here are built from constant text and `$n` placeholders only.

/// Rows per statement (keeps the bound parameters far below SQLite's limit).
const CHUNK: usize = 200;

/// Splits `items` into runs of consecutive items with equal `key` and distinct `id`s.
fn runs<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K, id: impl Fn(&T) -> i64) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, it) in items.iter().enumerate() {
        let split = i > start
            && (key(&items[start]) != key(it) || seen.contains(&id(it)) || i - start >= CHUNK);
        if split {
            out.push(&items[start..i]);
            start = i;
            seen.clear();
        }
        seen.insert(id(it));
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies target changes of rollout `id` at `at` (millis).
pub(super) async fn update_targets(
    conn: &mut AnyConnection,
    id: i64,
    at: i64,
    targets: &[&TargetChange],
) -> Result<(), StoreError> {
    for run in runs(
        targets,
        |t| (t.status, t.add_attempt, t.rollback, t.status_reason.clone()),
        |t| t.workspace_id,
    ) {
        let first = &run[0];
        let (rb_at, restore) = match first.rollback {
            Some(restore) => (Some(at), restore),
            None => (None, None),
        };
        let with_update: Vec<&&TargetChange> =
            run.iter().filter(|t| t.update_id.is_some()).collect();
        // $1..$7 shared; then (workspace, update_id) pairs for the CASE; then the ids.
        let mut n = 8;
        let update_id = if with_update.is_empty() {
            "update_id".to_owned()
        } else {
            let arms: Vec<String> = (0..with_update.len())
                .map(|i| format!("WHEN ${} THEN ${}", n + 2 * i, n + 2 * i + 1))
                .collect();
            n += 2 * with_update.len();
            format!(
                "COALESCE(CASE workspace_id {} END, update_id)",
                arms.join(" ")
            )
        };
        let sql = format!(
            "UPDATE rollout_targets SET status = COALESCE($1, status), \
             attempts = attempts + $2, update_id = {update_id}, \
             rollback_requested_at = COALESCE($3, rollback_requested_at), \
             restore_snapshot_of_update_id = COALESCE($4, restore_snapshot_of_update_id), \
             status_reason = COALESCE($7, status_reason), \
             updated_at = $5, version = version + 1 WHERE rollout_id = $6 \
             AND workspace_id IN ({})",
            placeholders(n, run.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(first.status.map(|s| s.as_str()))
            .bind(i64::from(first.add_attempt))
            .bind(rb_at)
            .bind(restore)
            .bind(at)
            .bind(id)
            .bind(first.status_reason.as_deref());
        for t in &with_update {
            q = q.bind(t.workspace_id).bind(t.update_id);
        }
        for t in run {
            q = q.bind(t.workspace_id);
        }
        q.execute(&mut *conn).await.ctx("update rollout targets")?;
    }
    Ok(())
}

/// Sets desired digests (recording rollout `id` where asked) and forgets failed digests.
pub(super) async fn set_desired(
    conn: &mut AnyConnection,
    id: i64,
    at: i64,
    desired: &[&DesiredChange],
) -> Result<(), StoreError> {
    for run in runs(
        desired,
        |d| (d.digest.clone(), d.in_rollout, d.forget_failed),
        |d| d.workspace_id,
    ) {
        let first = &run[0];
        let sql = format!(
            "UPDATE workspaces SET desired_digest = $1, desired_rollout_id = $2, updated_at = $3, \
             version = version + 1 WHERE deleted_at IS NULL AND id IN ({})",
            placeholders(4, run.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(first.digest.as_str())
            .bind(first.in_rollout.then_some(id))
            .bind(at);
        for d in run {
            q = q.bind(d.workspace_id);
        }
        q.execute(&mut *conn).await.ctx("set desired digests")?;
        if first.forget_failed {
            let sql = format!(
                "DELETE FROM failed_digests WHERE digest = $1 AND workspace_id IN ({})",
                placeholders(2, run.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(first.digest.as_str());
            for d in run {
                q = q.bind(d.workspace_id);
            }
            q.execute(&mut *conn).await.ctx("forget failed digests")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_split_on_shape_repeats_and_size() {
        let items: Vec<(u8, i64)> = vec![(1, 1), (1, 2), (2, 3), (2, 3), (2, 4), (1, 5)];
        let r = runs(&items, |x| x.0, |x| x.1);
        let lens: Vec<usize> = r.iter().map(|r| r.len()).collect();
        assert_eq!(lens, [2, 1, 2, 1]);
        let many: Vec<(u8, i64)> = (0..450).map(|i| (0, i)).collect();
        let lens: Vec<usize> = runs(&many, |x| x.0, |x| x.1)
            .iter()
            .map(|r| r.len())
            .collect();
        assert_eq!(lens, [200, 200, 50]);
        assert!(runs(&[] as &[(u8, i64)], |x| x.0, |x| x.1).is_empty());
    }
}
