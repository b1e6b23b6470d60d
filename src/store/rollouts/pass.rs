//! Reads of `rollouts`/`rollout_targets` for the rollout controller (read-only here: the
//! controller writes these tables through `apply.rs`).
//! What one controller pass reads about a rollout's targets: in full only the targets a
//! pass can act on or must look at, and the settled rest as counts.
//!
//! A target is *settled* when a pass can neither act on it nor see it change: a
//! production target that is `failed`, `rolled_back` or `skipped`; `updated` and still
//! healthy on its digest (health `healthy`, state not quarantined/rolling back/missing,
//! actual digest unset or equal to the target's); or, when `later_pending` is set,
//! `pending` in a wave after the first wave that still has a startable (not pinned
//! elsewhere) pending target. With a start window of `n`, startable production targets
//! pending in that first wave are settled too past the cutoff: the name of the
//! `n+1`-th of them that is not already on the digest and has no maintenance window of
//! its own. The planner walks a wave in name order and stops at the first target it
//! cannot start for lack of a slot, which is at or before the cutoff, so it sees every
//! target it could act on. Canary targets are always read in full (smoke checks look
//! at each one). Settled targets come back grouped by (tier, wave, status, pinned
//! elsewhere) with their count and newest `updated_at`, which is everything the planner
//! uses of them (and their host, which per-host limits count). The classification is recomputed from the rows on every pass (level
//! triggered, nothing kept in memory) and the reads share one transaction (one snapshot).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::targets::{TargetRow, target_from_row};
use crate::clock::from_millis;
use crate::domain::{HostName, TargetStatus, Tier};
use crate::store::{QueryContext, Store, StoreError};

/// Settled targets of one (tier, wave, status, held, host) group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledTargets {
    pub tier: Tier,
    /// The Docker host of the group's workspaces (per-host limits count them).
    pub host: HostName,
    pub wave: i64,
    pub status: TargetStatus,
    /// The workspace is pinned to another digest than the target's.
    pub held: bool,
    pub count: i64,
    /// Newest `updated_at` in the group.
    pub last_updated_at: DateTime<Utc>,
}

/// `1` when the target is settled (see the module doc); `$2` = later_pending flag,
/// `$3` = first wave with a startable pending target, `$4` = the start window's cutoff
/// name (NULL: no window). NULLs classify as not settled.
const SETTLED: &str = "(CASE WHEN t.tier <> 'canary' AND ( \
     t.status IN ('failed', 'rolled_back', 'skipped') \
     OR (t.status = 'updated' AND w.health = 'healthy' \
         AND w.state NOT IN ('quarantined', 'rolling_back', 'missing') \
         AND (w.actual_digest IS NULL OR w.actual_digest = t.to_digest)) \
     OR ($2 = 1 AND t.status = 'pending' AND COALESCE(t.wave, 0) > $3) \
     OR ($4 IS NOT NULL AND t.status = 'pending' AND COALESCE(t.wave, 0) = $3 \
         AND (w.pinned_digest IS NULL OR w.pinned_digest = t.to_digest) AND w.name > $4)) \
     THEN 1 ELSE 0 END)";

impl Store {
    /// A rollout's targets for one controller pass: the unsettled ones with observed
    /// state (ordered by wave then name, like [`Store::rollout_targets`]) and the
    /// settled ones as groups. `later_pending`: pending targets in later waves may be
    /// settled (false when every target is in one wave). `start_window`: at most how many
    /// updates the pass can start (`None`: no limit, read the first wave in full).
    pub async fn rollout_targets_for_pass(
        &self,
        rollout_id: i64,
        later_pending: bool,
        start_window: Option<usize>,
    ) -> Result<(Vec<TargetRow>, Vec<SettledTargets>), StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let first_wave: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(COALESCE(t.wave, 0)) FROM rollout_targets t \
             JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.rollout_id = $1 AND t.status = 'pending' \
             AND (w.pinned_digest IS NULL OR w.pinned_digest = t.to_digest)",
        )
        .bind(rollout_id)
        .fetch_one(&mut *tx)
        .await
        .ctx("first pending wave")?;
        let flag = i64::from(later_pending && first_wave.is_some());
        let first_wave = first_wave.unwrap_or(i64::MAX);
        let cutoff: Option<String> = match start_window {
            Some(n) if flag == 1 => sqlx::query_scalar(
                "SELECT w.name FROM rollout_targets t JOIN workspaces w ON w.id = t.workspace_id \
                 WHERE t.rollout_id = $1 AND t.tier <> 'canary' AND t.status = 'pending' \
                 AND COALESCE(t.wave, 0) = $2 \
                 AND (w.pinned_digest IS NULL OR w.pinned_digest = t.to_digest) \
                 AND w.maintenance_window IS NULL \
                 AND (w.actual_digest IS NULL OR w.actual_digest <> t.to_digest) \
                 ORDER BY w.name LIMIT 1 OFFSET $3",
            )
            .bind(rollout_id)
            .bind(first_wave)
            .bind(i64::try_from(n).unwrap_or(i64::MAX))
            .fetch_optional(&mut *tx)
            .await
            .ctx("start window cutoff")?,
            _ => None,
        };
        let full = format!(
            concat!(
                target_select!(),
                " WHERE t.rollout_id = $1 AND {settled} = 0 ORDER BY t.wave, w.name"
            ),
            settled = SETTLED
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(full.as_str()))
            .bind(rollout_id)
            .bind(flag)
            .bind(first_wave)
            .bind(cutoff.as_deref())
            .fetch_all(&mut *tx)
            .await
            .ctx("list unsettled rollout targets")?;
        let full = rows
            .iter()
            .map(target_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let grouped = format!(
            "SELECT t.tier, COALESCE(t.wave, 0) AS wave, t.status, \
             CASE WHEN w.pinned_digest IS NOT NULL AND w.pinned_digest <> t.to_digest \
               THEN 1 ELSE 0 END AS held, w.host, COUNT(*) AS n, MAX(t.updated_at) AS last_at \
             FROM rollout_targets t JOIN workspaces w ON w.id = t.workspace_id \
             WHERE t.rollout_id = $1 AND {SETTLED} = 1 GROUP BY 1, 2, 3, 4, 5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(grouped.as_str()))
            .bind(rollout_id)
            .bind(flag)
            .bind(first_wave)
            .bind(cutoff.as_deref())
            .fetch_all(&mut *tx)
            .await
            .ctx("count settled rollout targets")?;
        tx.commit().await.ctx("commit")?;
        let corrupt = |message: String| StoreError::Corrupt {
            what: "rollout target",
            message,
        };
        let settled = rows
            .iter()
            .map(|row| {
                let c = |e: sqlx::Error| corrupt(e.to_string());
                Ok(SettledTargets {
                    tier: Tier::parse(&row.try_get::<String, _>("tier").map_err(c)?)
                        .map_err(|e| corrupt(e.to_string()))?,
                    host: HostName::parse(&row.try_get::<String, _>("host").map_err(c)?)
                        .map_err(|e| corrupt(e.to_string()))?,
                    wave: row.try_get("wave").map_err(c)?,
                    status: TargetStatus::parse(&row.try_get::<String, _>("status").map_err(c)?)
                        .map_err(|e| corrupt(e.to_string()))?,
                    held: row.try_get::<i64, _>("held").map_err(c)? != 0,
                    count: row.try_get("n").map_err(c)?,
                    last_updated_at: from_millis(row.try_get("last_at").map_err(c)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((full, settled))
    }
}
