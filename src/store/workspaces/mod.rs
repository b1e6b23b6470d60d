//! Table `workspaces`: the row type and its reads. Writers, each in its own file:
//! operators through the API (`admin`: create, patch, tier, delete; version-checked), the
//! controller (`desired_digest`, with its rollout writes in `rollout_targets`), and the
//! reconciler (`observed`: what Docker shows). `volumes` checks which workspace claims a
//! volume, inside the API's writing transactions.

mod admin;
mod adopt;
mod observed;
mod retirements;
mod volumes;

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;

pub use admin::WorkspacePatch;
pub use adopt::Adoption;
pub use observed::Observed;
pub(crate) use observed::write_observed_in;
pub use retirements::{KeptVolume, RetireResult, Retirement};
pub use volumes::{AdoptedVolume, WorkspaceIdentity};

use super::{QueryContext, Store, StoreError, is_unique_violation};
use crate::clock::{from_millis, to_millis};
use crate::domain::spec::WorkspaceSpec;
use crate::domain::{
    Digest, Health, HostName, ImageRef, MaintenanceWindow, Tier, UpdateMode, WorkspaceName,
    WorkspaceState,
};

/// A workspace as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Workspace {
    pub id: i64,
    pub name: WorkspaceName,
    /// The `repo:tag` the workspace tracks.
    pub image: ImageRef,
    pub update_tier: Tier,
    pub update_mode: UpdateMode,
    pub maintenance_window: Option<MaintenanceWindow>,
    pub spec: WorkspaceSpec,
    /// The Docker host that runs it (and holds its volumes and snapshots).
    pub host: HostName,
    /// Holds the workspace on this digest whatever rollouts do.
    pub pinned_digest: Option<Digest>,
    /// What the controller wants it to run.
    pub desired_digest: Option<Digest>,
    /// What Docker was last seen running.
    pub actual_digest: Option<Digest>,
    pub container_id: Option<String>,
    pub state: WorkspaceState,
    pub health: Health,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// Spec fields in which the running container differs from the spec (the drift
    /// detector's last finding); empty when it runs as asked.
    pub drift: Vec<String>,
}

impl Workspace {
    /// The name of its container: the spec's `container_name` (an adopted container
    /// keeps its own), else `sluice-<name>`.
    pub fn container_name(&self) -> String {
        self.spec.container_name_for(&self.name)
    }
}

/// What creating a workspace needs; everything else starts at its default.
#[derive(Clone, Debug)]
pub struct NewWorkspace {
    pub name: WorkspaceName,
    pub image: ImageRef,
    pub update_tier: Tier,
    pub update_mode: UpdateMode,
    pub maintenance_window: Option<MaintenanceWindow>,
    pub spec: WorkspaceSpec,
    pub host: HostName,
}

pub(super) const COLUMNS: &str = "id, name, image, update_tier, update_mode, maintenance_window, spec, \
    host, pinned_digest, desired_digest, actual_digest, container_id, state, health, created_at, \
    updated_at, version, drift";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "workspace",
        message: e.to_string(),
    }
}

fn opt_digest(v: Option<String>) -> Result<Option<Digest>, StoreError> {
    v.map(|s| Digest::parse(&s)).transpose().map_err(corrupt)
}

pub(super) fn from_row(row: &AnyRow) -> Result<Workspace, StoreError> {
    let get_s = |c: &str| row.try_get::<String, _>(c).map_err(corrupt);
    let get_os = |c: &str| row.try_get::<Option<String>, _>(c).map_err(corrupt);
    Ok(Workspace {
        id: row.try_get("id").map_err(corrupt)?,
        name: WorkspaceName::parse(&get_s("name")?).map_err(corrupt)?,
        image: ImageRef::parse(&get_s("image")?).map_err(corrupt)?,
        update_tier: Tier::parse(&get_s("update_tier")?).map_err(corrupt)?,
        update_mode: UpdateMode::parse(&get_s("update_mode")?).map_err(corrupt)?,
        maintenance_window: get_os("maintenance_window")?
            .map(|w| MaintenanceWindow::parse(&w))
            .transpose()
            .map_err(corrupt)?,
        spec: serde_json::from_str(&get_s("spec")?).map_err(corrupt)?,
        host: HostName::parse(&get_s("host")?).map_err(corrupt)?,
        pinned_digest: opt_digest(get_os("pinned_digest")?)?,
        desired_digest: opt_digest(get_os("desired_digest")?)?,
        actual_digest: opt_digest(get_os("actual_digest")?)?,
        container_id: get_os("container_id")?,
        state: WorkspaceState::parse(&get_s("state")?).map_err(corrupt)?,
        health: Health::parse(&get_s("health")?).map_err(corrupt)?,
        created_at: from_millis(row.try_get("created_at").map_err(corrupt)?),
        updated_at: from_millis(row.try_get("updated_at").map_err(corrupt)?),
        version: row.try_get("version").map_err(corrupt)?,
        drift: get_os("drift")?
            .map(|d| serde_json::from_str(&d))
            .transpose()
            .map_err(corrupt)?
            .unwrap_or_default(),
    })
}

impl Store {
    /// Inserts a workspace; a taken name is [`StoreError::AlreadyExists`].
    pub async fn insert_workspace(
        &self,
        w: &NewWorkspace,
        now: DateTime<Utc>,
    ) -> Result<Workspace, StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire connection")?;
        insert_in(&mut conn, w, None, now).await
    }

    pub async fn workspace(&self, name: &WorkspaceName) -> Result<Workspace, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM workspaces WHERE name = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .ctx("get workspace")?
            .ok_or_else(|| StoreError::NotFound {
                what: "workspace",
                key: name.to_string(),
            })?;
        from_row(&row)
    }

    /// All live workspaces, by name.
    pub async fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM workspaces WHERE deleted_at IS NULL ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .ctx("list workspaces")?;
        rows.iter().map(from_row).collect()
    }

    /// The live workspaces placed on `host`, by name (what that host's agent converges).
    pub async fn workspaces_on(&self, host: &HostName) -> Result<Vec<Workspace>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM workspaces WHERE host = $1 AND deleted_at IS NULL ORDER BY name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(host.as_str())
            .fetch_all(&self.pool)
            .await
            .ctx("list workspaces of a host")?;
        rows.iter().map(from_row).collect()
    }

    /// The name of a live workspace by id.
    pub async fn workspace_name(&self, workspace_id: i64) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1 AND deleted_at IS NULL")
            .bind(workspace_id)
            .fetch_optional(&self.pool)
            .await
            .ctx("get workspace name")?
            .ok_or_else(|| StoreError::NotFound {
                what: "workspace",
                key: workspace_id.to_string(),
            })
    }
}

/// Inserts a workspace on `conn` (inside a caller's transaction when it needs one), with
/// `desired` as its first desired digest; a taken name is [`StoreError::AlreadyExists`].
/// A new row has no version to check; it starts at the schema's default.
pub(super) async fn insert_in(
    conn: &mut AnyConnection,
    w: &NewWorkspace,
    desired: Option<&Digest>,
    now: DateTime<Utc>,
) -> Result<Workspace, StoreError> {
    let spec = serde_json::to_string(&w.spec).map_err(corrupt)?;
    let sql = format!(
        "INSERT INTO workspaces (name, image, update_tier, update_mode, maintenance_window, spec, \
         desired_digest, created_at, updated_at, host) VALUES ($1, $2, $3, $4, $5, $6, $8, $7, $7, $9) \
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(w.name.as_str())
        .bind(w.image.to_string())
        .bind(w.update_tier.as_str())
        .bind(w.update_mode.as_str())
        .bind(w.maintenance_window.map(|m| m.to_string()))
        .bind(spec)
        .bind(to_millis(now))
        .bind(desired.map(Digest::as_str))
        .bind(w.host.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::AlreadyExists {
                    what: "workspace",
                    key: w.name.to_string(),
                }
            } else {
                StoreError::query("insert workspace", e)
            }
        })?;
    from_row(&row)
}
