//! Operator writes on workspaces (create, patch, delete), each audited with its actor in
//! the same transaction, plus the read models the API serves (last update, counts).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::events::append_event_in;
use super::workspace_volumes::{append_adoptions_in, ensure_unclaimed_in};
use super::{AdoptedVolume, NewEvent, NewWorkspace, QueryContext, Store, StoreError, Workspace};
use crate::clock::{from_millis, to_millis};
use crate::domain::spec::WorkspaceSpec;
use crate::domain::{Digest, MaintenanceWindow, Tier, UpdateMode, WorkspaceName};

/// Changes an operator asks for; `None` leaves a field alone. For the nullable fields
/// the inner `None` clears it.
#[derive(Clone, Debug, Default)]
pub struct WorkspacePatch {
    pub update_tier: Option<Tier>,
    pub update_mode: Option<UpdateMode>,
    pub pinned_digest: Option<Option<Digest>>,
    pub maintenance_window: Option<Option<MaintenanceWindow>>,
    pub spec: Option<WorkspaceSpec>,
    /// Volumes of the new spec taken over with `adopt: true` (checked against Docker by
    /// the caller); each is audited as `volume_adopted` with the change.
    pub adopted: Vec<AdoptedVolume>,
}

/// The newest update attempt of a workspace, as shown by the API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LastUpdate {
    pub id: i64,
    /// The journal phase (`succeeded`, `rolled_back`, `failed`, `quarantined`, or a running step).
    pub result: String,
    pub from_digest: Option<String>,
    pub to_digest: String,
    pub rollout_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
}

fn ws_event(
    actor: &str,
    name: &WorkspaceName,
    action: &str,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent {
        actor: actor.to_owned(),
        subject: format!("workspace:{name}"),
        action: action.to_owned(),
        detail,
        rollout_id: None,
        workspace: Some(name.to_string()),
    }
}

impl Store {
    /// Inserts a workspace and its `workspace.created` event together, with one
    /// `volume_adopted` event per `adopted` volume. `desired` is the digest the tag
    /// pointed at on creation (the reconciler starts it). A volume another live
    /// workspace's spec names is [`StoreError::VolumeInUse`], and nothing is written.
    pub async fn create_workspace_audited(
        &self,
        w: &NewWorkspace,
        desired: Option<&Digest>,
        adopted: &[AdoptedVolume],
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        // The insert comes first so the transaction holds the write lock while it looks
        // for other users of the volumes: two creations cannot both take one volume.
        let created = super::workspaces::insert_in(&mut tx, w, desired, now).await?;
        let volumes: Vec<&str> = w.spec.volumes.iter().map(|v| v.name.as_str()).collect();
        ensure_unclaimed_in(&mut tx, created.id, &volumes).await?;
        let detail = serde_json::json!({
            "image": w.image.to_string(),
            "update_tier": w.update_tier.as_str(),
            "update_mode": w.update_mode.as_str(),
            "desired_digest": desired.map(Digest::as_str),
        });
        append_event_in(
            &mut tx,
            &ws_event(actor, &w.name, "workspace.created", detail),
            now,
        )
        .await?;
        append_adoptions_in(&mut tx, actor, &w.name, created.id, adopted, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(created)
    }

    /// Applies `patch` (checking `version`) and audits the before/after of each changed
    /// field. A volume the new spec adds that another live workspace's spec names is
    /// [`StoreError::VolumeInUse`], and nothing is written. Pinning also sets `desired_digest` to the pin, so the reconciler converges to it.
    /// Lost races with the loops' writes (version moved) are retried from a fresh read.
    pub async fn patch_workspace(
        &self,
        name: &WorkspaceName,
        patch: &WorkspacePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Workspace, StoreError> {
        for _ in 0..5 {
            if let Some(w) = self.patch_workspace_once(name, patch, actor, now).await? {
                return Ok(w);
            }
        }
        Err(StoreError::Conflict {
            what: "workspace",
            key: name.to_string(),
        })
    }

    /// One optimistic attempt: read, then a transaction whose first statement is the
    /// versioned UPDATE (so SQLite takes the write lock at once). `None`: lost the race.
    async fn patch_workspace_once(
        &self,
        name: &WorkspaceName,
        patch: &WorkspacePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Workspace>, StoreError> {
        let cur = self.workspace(name).await?;
        let mut changes = serde_json::Map::new();
        let mut change = |k: &str, before: serde_json::Value, after: serde_json::Value| {
            if before != after {
                changes.insert(
                    k.to_owned(),
                    serde_json::json!({ "before": before, "after": after }),
                );
            }
        };
        let tier = patch.update_tier.unwrap_or(cur.update_tier);
        change(
            "update_tier",
            cur.update_tier.as_str().into(),
            tier.as_str().into(),
        );
        let mode = patch.update_mode.unwrap_or(cur.update_mode);
        change(
            "update_mode",
            cur.update_mode.as_str().into(),
            mode.as_str().into(),
        );
        let pin = patch
            .pinned_digest
            .clone()
            .unwrap_or(cur.pinned_digest.clone());
        let s = |d: &Option<Digest>| d.as_ref().map(|d| d.to_string());
        change(
            "pinned_digest",
            s(&cur.pinned_digest).into(),
            s(&pin).into(),
        );
        let window = patch.maintenance_window.unwrap_or(cur.maintenance_window);
        let w = |m: &Option<MaintenanceWindow>| m.map(|m| m.to_string());
        change(
            "maintenance_window",
            w(&cur.maintenance_window).into(),
            w(&window).into(),
        );
        let spec = patch.spec.clone().unwrap_or(cur.spec.clone());
        let to_json = |s: &WorkspaceSpec| serde_json::to_value(s).unwrap_or_default();
        change("spec", to_json(&cur.spec), to_json(&spec));
        let newly_pinned = pin.is_some() && pin != cur.pinned_digest;
        let (desired, desired_rollout) = if newly_pinned {
            (s(&pin), None)
        } else {
            (s(&cur.desired_digest), None::<i64>)
        };
        let keep_rollout = !newly_pinned;
        let spec_text = serde_json::to_string(&spec).map_err(|e| StoreError::Corrupt {
            what: "workspace spec",
            message: e.to_string(),
        })?;
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let done = sqlx::query(
            "UPDATE workspaces SET update_tier = $1, update_mode = $2, pinned_digest = $3, \
             maintenance_window = $4, spec = $5, desired_digest = $6, \
             desired_rollout_id = CASE WHEN $7 THEN desired_rollout_id ELSE $8 END, \
             updated_at = $9, version = version + 1 WHERE id = $10 AND version = $11",
        )
        .bind(tier.as_str())
        .bind(mode.as_str())
        .bind(s(&pin))
        .bind(w(&window))
        .bind(spec_text)
        .bind(desired)
        .bind(keep_rollout)
        .bind(desired_rollout)
        .bind(to_millis(now))
        .bind(cur.id)
        .bind(cur.version)
        .execute(&mut *tx)
        .await
        .ctx("patch workspace")?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        // Only volumes the spec did not name before are checked: a change of `env` must
        // not trip over a volume the workspace has used all along.
        let added: Vec<&str> = spec
            .volumes
            .iter()
            .map(|v| v.name.as_str())
            .filter(|n| !cur.spec.volumes.iter().any(|c| c.name == *n))
            .collect();
        ensure_unclaimed_in(&mut tx, cur.id, &added).await?;
        if !changes.is_empty() {
            let ev = ws_event(actor, name, "workspace.changed", changes.into());
            append_event_in(&mut tx, &ev, now).await?;
        }
        append_adoptions_in(&mut tx, actor, name, cur.id, &patch.adopted, now).await?;
        tx.commit().await.ctx("commit")?;
        self.workspace(name).await.map(Some)
    }

    /// Marks a workspace deleted (its row and history stay for the audit trail) and
    /// audits it, unless an update attempt of it is open (then `Ok(false)`): the check and
    /// the delete are one statement, so the reconciler cannot start an update in between.
    /// The deleted row gives its name up (it becomes `name~deleted-<id>`, which no live
    /// name can be), so a workspace of the same name can be created again; the audit
    /// trail keeps the original name.
    pub async fn delete_workspace_audited(
        &self,
        name: &WorkspaceName,
        purge: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let done = sqlx::query(
            "UPDATE workspaces SET deleted_at = $1, desired_digest = NULL, updated_at = $1, \
             name = name || '~deleted-' || id, retire_purge = $3, \
             version = version + 1 WHERE name = $2 AND deleted_at IS NULL AND NOT EXISTS ( \
             SELECT 1 FROM workspace_updates u WHERE u.workspace_id = workspaces.id \
             AND u.phase NOT IN ('succeeded', 'rolled_back', 'failed', 'quarantined'))",
        )
        .bind(to_millis(now))
        .bind(name.as_str())
        .bind(i64::from(purge))
        .execute(&mut *tx)
        .await
        .ctx("delete workspace")?;
        if done.rows_affected() == 0 {
            drop(tx);
            // Either it does not exist (NotFound) or an update is open.
            self.workspace(name).await?;
            return Ok(false);
        }
        let ev = ws_event(
            actor,
            name,
            "workspace.deleted",
            serde_json::json!({ "purge": purge }),
        );
        append_event_in(&mut tx, &ev, now).await?;
        tx.commit().await.ctx("commit")?;
        Ok(true)
    }

    /// The newest update attempt of each workspace, by workspace id.
    pub async fn last_updates(&self) -> Result<HashMap<i64, LastUpdate>, StoreError> {
        type Row = (
            i64,
            i64,
            String,
            Option<String>,
            String,
            Option<i64>,
            i64,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT u.workspace_id, u.id, u.phase, u.from_digest, u.to_digest, u.rollout_id, \
             u.updated_at, u.error FROM workspace_updates u \
             WHERE u.id = (SELECT MAX(id) FROM workspace_updates v WHERE v.workspace_id = u.workspace_id)",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("last updates")?;
        Ok(rows
            .into_iter()
            .map(|(ws, id, phase, from, to, rollout, at, error)| {
                (
                    ws,
                    LastUpdate {
                        id,
                        result: phase,
                        from_digest: from,
                        to_digest: to,
                        rollout_id: rollout,
                        at: from_millis(at),
                        error,
                    },
                )
            })
            .collect())
    }

    /// Live workspaces counted by (tier, state), for the `sluice_workspaces` gauge.
    pub async fn workspace_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT update_tier, state, COUNT(*) FROM workspaces WHERE deleted_at IS NULL \
             GROUP BY update_tier, state",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("count workspaces")
    }
}
