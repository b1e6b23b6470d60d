//! The one write path of a rollout: [`Store::apply_rollout_changes`] commits the
//! [`Change`]s one decision made (by the controller or an operator operation) in one
//! transaction guarded by the rollout row's version. Writes `rollouts`,
//! `rollout_targets`, `workspaces.desired_digest` (+ `failed_digests` on a retry),
//! `releases.status`, `rollout_analysis` and `events`.

use chrono::{DateTime, Utc};

use super::batch;
use super::map_insert_err;
use crate::clock::to_millis;
use crate::domain::{
    AnalysisRecord, AuditEvent, Change, DesiredChange, Digest, NewTarget, ReleaseChange,
    RolloutChange, RolloutRowKey, TargetChange,
};
use crate::store::dialect;
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

/// The changes of one decision, grouped by table in the order they were made.
struct Grouped<'a> {
    row: &'a RolloutChange,
    new_targets: Vec<&'a NewTarget>,
    targets: Vec<&'a TargetChange>,
    desired: Vec<&'a DesiredChange>,
    releases: Vec<&'a ReleaseChange>,
    events: Vec<&'a AuditEvent>,
    analysis: Vec<&'a AnalysisRecord>,
}

fn group(changes: &[Change]) -> Result<Grouped<'_>, StoreError> {
    let mut row = None;
    let mut g = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut analysis = Vec::new();
    for c in changes {
        match c {
            Change::Rollout(r) if row.is_none() => row = Some(r),
            Change::Rollout(_) => {
                return Err(StoreError::Corrupt {
                    what: "rollout changes",
                    message: "two rollout rows in one decision".to_owned(),
                });
            }
            Change::AddTarget(t) => g.0.push(t),
            Change::Target(t) => g.1.push(t),
            Change::Desired(d) => g.2.push(d),
            Change::Release(r) => g.3.push(r),
            Change::Audit(e) => g.4.push(e),
            Change::Analysis(a) => analysis.push(a),
        }
    }
    let row = row.ok_or_else(|| StoreError::Corrupt {
        what: "rollout changes",
        message: "a decision without its rollout row".to_owned(),
    })?;
    Ok(Grouped {
        row,
        new_targets: g.0,
        targets: g.1,
        desired: g.2,
        releases: g.3,
        events: g.4,
        analysis,
    })
}

impl Store {
    /// Commits one rollout decision (exactly one [`Change::Rollout`] plus what goes with
    /// it); returns the rollout id. A lost race on the rollout's version is
    /// [`StoreError::Conflict`]; a second rollout for a release is
    /// [`StoreError::AlreadyExists`].
    pub async fn apply_rollout_changes(
        &self,
        changes: &[Change],
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let g = group(changes)?;
        let w = g.row;
        let at = to_millis(now);
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let id: i64 = match &w.key {
            RolloutRowKey::New {
                release_id,
                strategy,
                started_by,
            } => sqlx::query_scalar(
                "INSERT INTO rollouts (release_id, state, state_data, strategy, soak_started_at, \
                 soak_ends_at, started_by, reason, created_at, updated_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
            )
            .bind(release_id)
            .bind(w.state.as_str())
            .bind(&w.state_data)
            .bind(w.strategy.as_deref().unwrap_or(strategy))
            .bind(w.soak_started_at.map(to_millis))
            .bind(w.soak_ends_at.map(to_millis))
            .bind(started_by)
            .bind(&w.reason)
            .bind(at)
            .bind(w.finished_at.map(to_millis))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_insert_err(e, *release_id))?,
            RolloutRowKey::Existing {
                id,
                expected_version,
            } => {
                let done = sqlx::query(
                    "UPDATE rollouts SET state = $1, state_data = $2, strategy = COALESCE($3, strategy), \
                     soak_started_at = $4, soak_ends_at = $5, finished_at = $6, \
                     reason = COALESCE($7, reason), updated_at = $8, version = version + 1 \
                     WHERE id = $9 AND version = $10",
                )
                .bind(w.state.as_str())
                .bind(&w.state_data)
                .bind(&w.strategy)
                .bind(w.soak_started_at.map(to_millis))
                .bind(w.soak_ends_at.map(to_millis))
                .bind(w.finished_at.map(to_millis))
                .bind(&w.reason)
                .bind(at)
                .bind(id)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .ctx("update rollout")?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict {
                        what: "rollout",
                        key: id.to_string(),
                    });
                }
                *id
            }
        };
        for t in &g.new_targets {
            sqlx::query(
                "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, wave, status, \
                 from_digest, to_digest, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id)
            .bind(t.workspace_id)
            .bind(t.tier.as_str())
            .bind(t.wave)
            .bind(t.status.as_str())
            .bind(t.from_digest.as_ref().map(Digest::as_str))
            .bind(t.to_digest.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await
            .ctx("insert rollout target")?;
        }
        batch::update_targets(&mut tx, id, at, &g.targets).await?;
        super::analysis::insert(&mut tx, id, &g.analysis).await?;
        batch::set_desired(&mut tx, id, at, &g.desired).await?;
        for r in &g.releases {
            sqlx::query(
                "UPDATE releases SET status = $1, status_reason = $2, updated_at = $3, \
                 version = version + 1 WHERE id = $4",
            )
            .bind(r.status.as_str())
            .bind(&r.reason)
            .bind(at)
            .bind(r.release_id)
            .execute(&mut *tx)
            .await
            .ctx("set release status")?;
        }
        for e in &g.events {
            let ev = NewEvent {
                actor: e.actor.clone(),
                subject: format!("rollout:{id}"),
                action: e.action.clone(),
                detail: e.detail.clone(),
                rollout_id: Some(id),
                workspace: e.workspace.clone(),
            };
            append_event_in(&mut tx, &ev, now).await?;
        }
        tx.commit().await.ctx("commit")?;
        if g.new_targets.len() >= dialect::ANALYZE_AFTER_ROWS {
            dialect::analyze_after_bulk_insert(&self.pool, self.engine, "rollout_targets").await;
        }
        Ok(id)
    }
}
