//! Table `workspaces`, adoption, written by the API (`POST /api/v1/workspaces/adopt`): a
//! workspace made from a container already running. It
//! starts where the container is — desired and actual digest both the one it runs, its
//! container's id recorded (that id, not a label, makes the unlabelled container the
//! workspace's), state `running` — audited as `workspace.adopted` with whatever was
//! forced past, in one transaction.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::admin::ws_event;
use super::volumes::{AdoptedVolume, append_adoptions_in, ensure_unclaimed_in};
use super::{NewWorkspace, Workspace, from_row, insert_in, write_observed_in};
use crate::clock::to_millis;
use crate::domain::{Digest, Health, WorkspaceState};
use crate::store::events::append_event_in;
use crate::store::{QueryContext, Store, StoreError};

/// What an adoption records besides the workspace itself.
#[derive(Clone, Debug)]
pub struct Adoption<'a> {
    pub digest: &'a Digest,
    pub container_id: &'a str,
    pub container_name: &'a str,
    /// Settings the spec cannot carry that the operator forced past (named in the event).
    pub forced: &'a [String],
    pub volumes: &'a [AdoptedVolume],
}

impl Store {
    /// Inserts workspace `w` adopting a running container. A container another live
    /// workspace holds is [`StoreError::AlreadyExists`]; a volume another live workspace's
    /// spec names is [`StoreError::VolumeInUse`]; either way nothing is written.
    pub async fn adopt_workspace(
        &self,
        w: &NewWorkspace,
        a: &Adoption<'_>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.pool.begin().await.ctx("begin")?;
        let created = insert_in(&mut tx, w, Some(a.digest), now).await?;
        let holder = sqlx::query(
            "SELECT name FROM workspaces WHERE container_id = $1 AND deleted_at IS NULL LIMIT 1",
        )
        .bind(a.container_id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("find the container's workspace")?;
        if let Some(row) = holder {
            let name: String = row.try_get("name").ctx("read workspace name")?;
            return Err(StoreError::AlreadyExists {
                what: "managed container",
                key: format!("{} (workspace {name})", a.container_name),
            });
        }
        let volumes: Vec<&str> = w.spec.volumes.iter().map(|v| v.name.as_str()).collect();
        ensure_unclaimed_in(&mut tx, created.id, &volumes).await?;
        let ms = to_millis(now);
        write_observed_in(
            &mut tx,
            created.id,
            Some(a.digest),
            Some(a.container_id),
            WorkspaceState::Running,
            Health::Unknown,
            ms,
        )
        .await?;
        let detail = serde_json::json!({
            "image": w.image.to_string(),
            "update_tier": w.update_tier.as_str(),
            "update_mode": w.update_mode.as_str(),
            "digest": a.digest.as_str(),
            "container": a.container_name,
            "container_id": a.container_id,
            "forced": a.forced,
        });
        append_event_in(
            &mut tx,
            &ws_event(actor, &w.name, "workspace.adopted", detail),
            now,
        )
        .await?;
        append_adoptions_in(&mut tx, actor, &w.name, created.id, a.volumes, now).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM workspaces WHERE id = $1",
            super::COLUMNS
        )))
        .bind(created.id)
        .fetch_one(&mut *tx)
        .await
        .ctx("read the adopted workspace")?;
        let adopted = from_row(&row)?;
        tx.commit().await.ctx("commit")?;
        Ok(adopted)
    }
}
