//! Table `workspaces`, volume claims (read only; the claiming writes are the API's
//! create and patch in `admin`, inside whose transactions these checks run). Who uses
//! which volume, as the store knows it: the volumes named in live workspaces'
//! specs (one tenant's volume is never named by another's spec), the workspace behind
//! a volume's `sluice.workspace_id` label, and the `volume_adopted` audit events.
//!
//! The spec is JSON, read and compared here in Rust rather than with a dialect's JSON
//! functions, so the SQL stays portable.

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use crate::domain::WorkspaceName;
use crate::domain::spec::WorkspaceSpec;
use crate::store::events::append_event_in;
use crate::store::{NewEvent, QueryContext, Store, StoreError};

/// A workspace row by id, live or deleted: what a volume's owner label points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceIdentity {
    pub id: i64,
    /// The row's name (`NAME~deleted-ID` once deleted).
    pub name: String,
    pub deleted: bool,
}

/// A volume a workspace takes over with `adopt: true`; audited as `volume_adopted` in
/// the transaction that stores the spec naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptedVolume {
    pub volume: String,
    /// The deleted workspace whose label the volume carries, if any.
    pub previous_owner: Option<i64>,
}

impl Store {
    /// The workspace row with this id, live or deleted; `None` when this store never
    /// issued the id.
    pub async fn workspace_identity(
        &self,
        id: i64,
    ) -> Result<Option<WorkspaceIdentity>, StoreError> {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, deleted_at FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .ctx("get workspace by id")?;
        Ok(row.map(|(name, deleted_at)| WorkspaceIdentity {
            id,
            name,
            deleted: deleted_at.is_some(),
        }))
    }
}

/// Fails with [`StoreError::VolumeInUse`] when a live workspace other than `exclude_id`
/// names one of `volumes` in its spec. Run inside the writing transaction, after its
/// first write, so that SQLite's single writer serialises concurrent claims.
pub(super) async fn ensure_unclaimed_in(
    conn: &mut AnyConnection,
    exclude_id: i64,
    volumes: &[&str],
) -> Result<(), StoreError> {
    if volumes.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, spec FROM workspaces WHERE deleted_at IS NULL AND id <> $1 ORDER BY id",
    )
    .bind(exclude_id)
    .fetch_all(&mut *conn)
    .await
    .ctx("list volume users")?;
    for (owner, spec) in rows {
        let spec: WorkspaceSpec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
            what: "workspace spec",
            message: format!("{owner}: {e}"),
        })?;
        if let Some(v) = spec
            .volumes
            .iter()
            .find(|v| volumes.contains(&v.name.as_str()))
        {
            return Err(StoreError::VolumeInUse {
                volume: v.name.clone(),
                owner,
            });
        }
    }
    Ok(())
}

/// Appends one `volume_adopted` event per adopted volume.
pub(super) async fn append_adoptions_in(
    conn: &mut AnyConnection,
    actor: &str,
    workspace: &WorkspaceName,
    workspace_id: i64,
    adopted: &[AdoptedVolume],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for a in adopted {
        let ev = NewEvent {
            actor: actor.to_owned(),
            subject: format!("workspace:{workspace}"),
            action: "volume_adopted".to_owned(),
            detail: serde_json::json!({
                "volume": a.volume,
                "workspace_id": workspace_id,
                "previous_owner_id": a.previous_owner,
            }),
            rollout_id: None,
            workspace: Some(workspace.to_string()),
        };
        append_event_in(conn, &ev, now).await?;
    }
    Ok(())
}
