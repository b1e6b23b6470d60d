//! Retiring deleted workspaces: the reconciler's side of a delete. Table `workspaces`
//! (`retire_*` columns), written by the API (the mark) and the reconciler (the result).
//!
//! `DELETE /api/v1/workspaces/{name}` only marks the row (`deleted_at`, `retire_purge`, in
//! the transaction that audits the delete: [`Store::delete_workspace_audited`]). The
//! reconciler then lists the marked rows ([`Store::pending_retirements`]), removes the
//! container and, with purge, the volumes the workspace owns, and records what it did
//! ([`Store::record_retirement`]); the API reads that back ([`Store::retirement`]). A row
//! stays pending until its result is recorded, so a retirement interrupted by a stop or a
//! crash is finished at the next start.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::{QueryContext, Store, StoreError};
use crate::clock::to_millis;
use crate::domain::spec::WorkspaceSpec;
use crate::domain::{HostName, WorkspaceName};

/// A deleted workspace whose container (and volumes) the reconciler still has to remove.
#[derive(Clone, Debug, PartialEq)]
pub struct Retirement {
    pub id: i64,
    /// The name it had while it was live (the row has given it up).
    pub name: WorkspaceName,
    pub container_id: Option<String>,
    pub spec: WorkspaceSpec,
    /// Remove the volumes it owns too.
    pub purge: bool,
}

/// A volume a purge left in place, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptVolume {
    pub name: String,
    /// `other_workspace` or `not_owned`.
    pub reason: String,
    /// The workspace id the volume is labelled for (with `other_workspace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<i64>,
    /// For people.
    pub message: String,
}

/// What retiring a workspace did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetireResult {
    pub container_removed: bool,
    pub volumes_removed: Vec<String>,
    pub volumes_kept: Vec<KeptVolume>,
    /// Set when Docker refused a removal for good (not a passing outage): what was left,
    /// for the operator to remove by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "workspace retirement",
        message: e.to_string(),
    }
}

/// The live name of a deleted row (`name~deleted-<id>`).
fn live_name(stored: &str, id: i64) -> Result<WorkspaceName, StoreError> {
    let suffix = format!("~deleted-{id}");
    let raw = stored.strip_suffix(&suffix).unwrap_or(stored);
    WorkspaceName::parse(raw).map_err(corrupt)
}

impl Store {
    /// Deleted workspaces not retired yet, oldest deletion first.
    pub async fn pending_retirements(
        &self,
        host: &HostName,
    ) -> Result<Vec<Retirement>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, container_id, spec, retire_purge FROM workspaces \
             WHERE host = $1 AND deleted_at IS NOT NULL AND retired_at IS NULL \
             ORDER BY deleted_at, id",
        )
        .bind(host.as_str())
        .fetch_all(&self.pool)
        .await
        .ctx("list pending retirements")?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("id").map_err(corrupt)?;
                let name: String = row.try_get("name").map_err(corrupt)?;
                let spec: String = row.try_get("spec").map_err(corrupt)?;
                let purge: i64 = row.try_get("retire_purge").map_err(corrupt)?;
                Ok(Retirement {
                    id,
                    name: live_name(&name, id)?,
                    container_id: row.try_get("container_id").map_err(corrupt)?,
                    spec: serde_json::from_str(&spec).map_err(corrupt)?,
                    purge: purge != 0,
                })
            })
            .collect()
    }

    /// Records the result of retiring workspace `id`. Only the first result counts: a
    /// second writer (a stale pass) changes nothing and gets `Ok(false)`.
    pub async fn record_retirement(
        &self,
        id: i64,
        result: &RetireResult,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(result).map_err(corrupt)?;
        let done = sqlx::query(
            "UPDATE workspaces SET retired_at = $1, retire_result = $2, updated_at = $1, \
             version = version + 1 WHERE id = $3 AND deleted_at IS NOT NULL AND retired_at IS NULL",
        )
        .bind(to_millis(now))
        .bind(json)
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("record retirement")?;
        Ok(done.rows_affected() == 1)
    }

    /// What an interrupted attempt at retiring `id` had already done (empty at first).
    pub async fn retirement_progress(&self, id: i64) -> Result<RetireResult, StoreError> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT retire_result FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .ctx("read retirement progress")?;
        match row.and_then(|(json,)| json) {
            Some(j) => serde_json::from_str(&j).map_err(corrupt),
            None => Ok(RetireResult::default()),
        }
    }

    /// Keeps what an interrupted attempt did, so the next one reports it too (a removed
    /// container is absent then). The row stays pending.
    pub async fn record_retirement_progress(
        &self,
        id: i64,
        done: &RetireResult,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(done).map_err(corrupt)?;
        sqlx::query(
            "UPDATE workspaces SET retire_result = $1 WHERE id = $2 AND retired_at IS NULL",
        )
        .bind(json)
        .bind(id)
        .execute(&self.pool)
        .await
        .ctx("record retirement progress")?;
        Ok(())
    }

    /// The recorded result of retiring workspace `id`; `None` while it is pending (or
    /// for a row deleted before retirements were recorded).
    pub async fn retirement(&self, id: i64) -> Result<Option<RetireResult>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(
            "SELECT retire_result FROM workspaces WHERE id = $1 AND retired_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("read retirement")?;
        row.and_then(|(json,)| json)
            .map(|j| serde_json::from_str(&j).map_err(corrupt))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_rows_name_is_its_live_name() {
        assert_eq!(live_name("acme~deleted-7", 7).unwrap().as_str(), "acme");
        assert_eq!(live_name("acme", 7).unwrap().as_str(), "acme");
        assert!(live_name("acme~deleted-8", 7).is_err());
    }

    #[test]
    fn a_kept_volume_serializes_as_the_api_always_showed_it() {
        let r = RetireResult {
            container_removed: true,
            volumes_removed: vec!["a".into()],
            volumes_kept: vec![
                KeptVolume {
                    name: "b".into(),
                    reason: "other_workspace".into(),
                    owner_id: Some(3),
                    message: "m".into(),
                },
                KeptVolume {
                    name: "c".into(),
                    reason: "not_owned".into(),
                    owner_id: None,
                    message: "n".into(),
                },
            ],
            error: None,
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({
                "container_removed": true,
                "volumes_removed": ["a"],
                "volumes_kept": [
                    {"name": "b", "reason": "other_workspace", "owner_id": 3, "message": "m"},
                    {"name": "c", "reason": "not_owned", "message": "n"}
                ]
            })
        );
        let back: RetireResult = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }
}
