//! `POST /api/v1/workspaces/adopt`: take over a container that is already running —
//! started by `docker run`, a script or Compose — without restarting it. Docker is read
//! (the container and its image), `adopt::plan` builds the spec that reproduces it, and
//! the workspace is stored already running its current digest. With `dry_run` nothing is
//! written: the plan is the answer.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::ApiJson;
use super::volume_claims;
use super::workspaces::{WorkspaceView, check_image, invalid_spec};
use crate::adopt::{AdoptError, AdoptPlan, managed_by, plan};
use crate::domain::spec::{HealthProbe, VolumeMount, WorkspaceSpec};
use crate::domain::{Digest, MaintenanceWindow, Tier, UpdateMode, WorkspaceName};
use crate::runtime::{ContainerRuntime as _, DockerRuntime, RunningConfig};
use crate::store::{Adoption, NewWorkspace};

/// The request: which container, and the workspace to make of it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// The container's name or id.
    pub container: String,
    pub name: WorkspaceName,
    /// The `repo:tag` to follow; the reference the container was started from when
    /// absent (required when that was an image id or a digest).
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub update_tier: Option<Tier>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
    #[serde(default)]
    pub maintenance_window: Option<MaintenanceWindow>,
    /// The health gate of its updates (adoption cannot infer one).
    #[serde(default)]
    pub health: Option<HealthProbe>,
    /// Plan only: store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Adopt even though some settings cannot be carried (they are named in the audit
    /// event, and are lost when the container is next recreated).
    #[serde(default)]
    pub force: bool,
}

/// What adoption did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct AdoptView {
    pub dry_run: bool,
    pub container: String,
    pub container_id: String,
    pub name: String,
    pub image: String,
    pub digest: Digest,
    pub spec: WorkspaceSpec,
    /// Settings the spec cannot carry, each `Docker field: value`.
    pub unrepresentable: Vec<String>,
    /// The stored workspace (absent on a dry run).
    pub workspace: Option<WorkspaceView>,
}

fn refusal(e: AdoptError) -> ApiError {
    let code = match &e {
        AdoptError::NoTag(_) => "image_has_no_tag",
        AdoptError::BadImage(_) => "invalid_image",
        AdoptError::NoDigest { .. } => "image_not_in_registry",
        AdoptError::Invalid(p) => return invalid_spec(p.clone()),
    };
    ApiError::bad_request(code, e.to_string())
}

/// Reads the container on this instance's own Docker engine.
async fn read(state: &AppState, container: &str) -> Result<RunningConfig, ApiError> {
    let docker = state.docker.get().ok_or_else(|| {
        ApiError::unavailable(
            "docker_unavailable",
            "docker is not reachable, so the container cannot be read; nothing was changed",
        )
    })?;
    let rt = DockerRuntime::new(docker.as_ref().clone());
    rt.inspect_config(container)
        .await
        .map_err(|e| {
            ApiError::unavailable(
                "docker_error",
                format!("container: cannot inspect `{container}`: {e}"),
            )
        })?
        .ok_or_else(|| ApiError::not_found(format!("container: no container `{container}`")))
}

/// Everything that refuses an adoption before anything is written.
async fn check(
    state: &AppState,
    body: &AdoptRequest,
    c: &RunningConfig,
) -> Result<AdoptPlan, ApiError> {
    if let Some(owner) = managed_by(&c.spec.labels) {
        return Err(ApiError::conflict(
            "already_managed",
            format!(
                "container: `{}` is already workspace `{owner}`'s container",
                c.spec.name
            ),
        ));
    }
    if !c.running {
        return Err(ApiError::conflict(
            "container_not_running",
            format!(
                "container: `{}` is not running; start it (or create the workspace) instead",
                c.spec.name
            ),
        ));
    }
    let image = body
        .image
        .as_deref()
        .map(|i| check_image(state, i))
        .transpose()?;
    let mut p = plan(c, &body.name, image.as_ref()).map_err(refusal)?;
    if image.is_none() {
        // The tag it was started from meets the same allowlist as a named one.
        check_image(state, &p.image.to_string())?;
    }
    p.spec.health.clone_from(&body.health);
    p.spec.validate().map_err(invalid_spec)?;
    p.spec
        .check_policy(&state.api.workspace_policy)
        .map_err(invalid_spec)?;
    Ok(p)
}

pub async fn adopt(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    ApiJson(body): ApiJson<AdoptRequest>,
) -> Result<(StatusCode, Json<AdoptView>), ApiError> {
    let view = adopt_one(&state, &actor, &body).await?;
    let status = if body.dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

/// The container's engine is this instance's own: the host its in-process loops run.
pub(super) fn local_host(state: &AppState) -> Result<crate::domain::HostName, ApiError> {
    state.api.local_host.clone().ok_or_else(|| {
        ApiError::conflict(
            "adopt_needs_local_engine",
            "container: this instance runs no host loops ([agent] in_process = false), so \
             the engine holding the container is not its own; adopt through an instance \
             that runs them",
        )
    })
}

/// Adopts (or, with `dry_run`, plans) one container; nothing is written on a refusal.
pub(super) async fn adopt_one(
    state: &AppState,
    actor: &Actor,
    body: &AdoptRequest,
) -> Result<AdoptView, ApiError> {
    let host = local_host(state)?;
    let c = read(state, &body.container).await?;
    let p = check(state, body, &c).await?;
    let mut view = AdoptView {
        dry_run: body.dry_run,
        container: c.spec.name.clone(),
        container_id: c.id.clone(),
        name: body.name.to_string(),
        image: p.image.to_string(),
        digest: p.digest.clone(),
        spec: p.spec.clone(),
        unrepresentable: p.unrepresentable.clone(),
        workspace: None,
    };
    if body.dry_run {
        return Ok(view);
    }
    if let Some(first) = p.unrepresentable.first().filter(|_| !body.force) {
        return Err(ApiError::bad_request(
            "unrepresentable",
            format!(
                "container: {first} cannot be carried into a workspace spec, so a recreate \
                 would lose it (all: {}); nothing was changed. Adopt with force to accept that",
                p.unrepresentable.join("; ")
            ),
        ));
    }
    if state.store.workspace(&body.name).await.is_ok() {
        return Err(ApiError::conflict(
            "already_exists",
            format!("name: workspace `{}` already exists", body.name),
        ));
    }
    // The host's capacity counts adopted workspaces as it counts created ones.
    if let Some(row) = state.store.hosts().await?.iter().find(|h| h.name == host) {
        let placed = state.store.host_workspace_counts().await?;
        let n = placed.get(host.as_str()).map_or(0, |c| c.0);
        super::placement::check_capacity(row, n)?;
    }
    let entries: Vec<(usize, &VolumeMount)> = p.spec.volumes.iter().enumerate().collect();
    let volumes = volume_claims::check(state, body.name.as_str(), None, &entries).await?;
    let new = NewWorkspace {
        host,
        name: body.name.clone(),
        image: p.image.clone(),
        update_tier: body.update_tier.unwrap_or_default(),
        update_mode: body.update_mode.unwrap_or(UpdateMode::Auto),
        maintenance_window: body.maintenance_window,
        spec: p.spec.clone(),
    };
    let forced = if body.force {
        p.unrepresentable.clone()
    } else {
        Vec::new()
    };
    let adoption = Adoption {
        digest: &p.digest,
        container_id: &c.id,
        container_name: &c.spec.name,
        forced: &forced,
        volumes: &volumes,
    };
    let now = state.clock.now();
    let w = state
        .store
        .adopt_workspace(&new, &adoption, &actor.name, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::AlreadyExists {
                what: "managed container",
                ..
            } => ApiError::conflict("already_managed", format!("container: {e}")),
            e => volume_claims::store_refusal(e, &new.spec.volumes),
        })?;
    tracing::info!(workspace = %w.name, container = %c.spec.name, digest = %p.digest, actor = %actor.name, forced = forced.len(), "container adopted");
    state.wakers.watcher.notify_one();
    state.wakers.controller.notify_one();
    state.wakers.reconciler.notify_one();
    view.workspace = Some(WorkspaceView::new(w, None));
    Ok(view)
}
