//! Table `workspaces`, operator writes: create, patch (tier, mode, pin, window, spec),
//! tier and delete, written by the API, each audited with its actor in the same
//! transaction (`events`). Every write here checks `version` or, for create and delete,
//! is one statement whose own condition is the check (a taken name, an open journal row).
//! Also the per-(tier, state) counts for the `sluice_workspaces` gauge.

use chrono::{DateTime, Utc};

use super::volumes::{AdoptedVolume, append_adoptions_in, ensure_unclaimed_in};
use super::{NewWorkspace, Workspace, insert_in};
use crate::clock::to_millis;
use crate::domain::spec::WorkspaceSpec;
use crate::domain::{Digest, MaintenanceWindow, Tier, UpdateMode, WorkspaceName, WorkspaceState};
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

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

pub(super) fn ws_event(
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
        // A new row has no version to check: a taken name is refused by the UNIQUE index.
        // The insert comes first so the transaction holds the write lock while it looks
        // for other users of the volumes: two creations cannot both take one volume.
        let created = insert_in(&mut tx, w, desired, now).await?;
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
            let cur = self.workspace(name).await?;
            if let Some(w) = self.patch_workspace_once(&cur, patch, actor, now).await? {
                return Ok(w);
            }
        }
        Err(StoreError::Conflict {
            what: "workspace",
            key: name.to_string(),
        })
    }

    /// One optimistic attempt from `cur` (a read): a transaction whose first statement is
    /// the versioned UPDATE (so SQLite takes the write lock at once). `None`: `cur` is
    /// stale (lost the race), and nothing was written.
    async fn patch_workspace_once(
        &self,
        cur: &Workspace,
        patch: &WorkspacePatch,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Workspace>, StoreError> {
        let name = &cur.name;
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
        // Not version-checked: a deletion does not depend on what the operator read (the
        // API takes no version for it), so a concurrent observation or patch does not make
        // it wrong. Its one precondition, no open journal row, is in the statement itself.
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

    /// Sets a workspace's tier, checking `version` (optimistic concurrency).
    pub async fn set_workspace_tier(
        &self,
        name: &WorkspaceName,
        tier: Tier,
        expected_version: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE workspaces SET update_tier = $1, updated_at = $2, version = version + 1 \
             WHERE name = $3 AND version = $4 AND deleted_at IS NULL",
        )
        .bind(tier.as_str())
        .bind(to_millis(now))
        .bind(name.as_str())
        .bind(expected_version)
        .execute(&self.pool)
        .await
        .ctx("set workspace tier")?;
        if done.rows_affected() == 0 {
            self.workspace(name).await?;
            return Err(StoreError::Conflict {
                what: "workspace",
                key: name.to_string(),
            });
        }
        Ok(())
    }

    /// Live workspaces counted by (tier, state), for the `sluice_workspaces` gauge.
    pub async fn workspace_counts(&self) -> Result<Vec<(Tier, WorkspaceState, i64)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT update_tier, state, COUNT(*) FROM workspaces WHERE deleted_at IS NULL \
             GROUP BY update_tier, state",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("count workspaces")?;
        let corrupt = |e: crate::domain::ParseError| StoreError::Corrupt {
            what: "workspace",
            message: e.to_string(),
        };
        rows.into_iter()
            .map(|(tier, state, n)| {
                Ok((
                    Tier::parse(&tier).map_err(corrupt)?,
                    WorkspaceState::parse(&state).map_err(corrupt)?,
                    n,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::domain::ImageRef;

    async fn fresh() -> (crate::store::TestDb, Store) {
        let db = crate::store::TestDb::new().await;
        let store = db.store(2).await;
        (db, store)
    }

    #[tokio::test]
    async fn operator_writes_from_a_stale_read_are_refused() {
        let (_dir, store) = fresh().await;
        let now = Utc::now();
        let new = NewWorkspace {
            host: crate::domain::HostName::local(),
            name: WorkspaceName::parse("acme").unwrap(),
            image: ImageRef::parse("127.0.0.1:5000/app:stable").unwrap(),
            update_tier: Tier::Production,
            update_mode: UpdateMode::Auto,
            maintenance_window: None,
            spec: WorkspaceSpec::default(),
        };
        let stale = store.insert_workspace(&new, now).await.unwrap();
        // Another writer (here the reconciler's observation) moves the version on.
        store
            .set_workspace_state(stale.id, WorkspaceState::Running, now)
            .await
            .unwrap();
        let events = store.events(0, 100).await.unwrap().len();
        let pin = Digest::of_bytes(b"pin");
        let pinning = WorkspacePatch {
            pinned_digest: Some(Some(pin.clone())),
            ..WorkspacePatch::default()
        };
        let holding = WorkspacePatch {
            update_mode: Some(UpdateMode::Manual),
            ..WorkspacePatch::default()
        };
        let tiering = WorkspacePatch {
            update_tier: Some(Tier::Canary),
            ..WorkspacePatch::default()
        };
        for patch in [&pinning, &holding, &tiering] {
            let lost = store
                .patch_workspace_once(&stale, patch, "ops", now)
                .await
                .unwrap();
            assert!(lost.is_none(), "a patch from a stale read lost the race");
        }
        let e = store
            .set_workspace_tier(&stale.name, Tier::Canary, stale.version, now)
            .await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        let w = store.workspace(&stale.name).await.unwrap();
        assert_eq!(
            (w.pinned_digest, w.update_mode, w.update_tier, w.version),
            (None, UpdateMode::Auto, Tier::Production, stale.version + 1),
            "nothing was written"
        );
        assert_eq!(store.events(0, 100).await.unwrap().len(), events);
        // The operator's patch re-reads and wins.
        let w = store
            .patch_workspace(&stale.name, &pinning, "ops", now)
            .await
            .unwrap();
        assert_eq!(
            (w.pinned_digest, w.desired_digest),
            (Some(pin.clone()), Some(pin))
        );
    }
}
