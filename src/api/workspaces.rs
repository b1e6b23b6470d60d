//! `/api/v1/workspaces`: list, show, create, patch, delete.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Actor;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::volume_claims;
use super::workspace_bodies::{CreateWorkspace, PatchWorkspace};
use crate::domain::spec::{VolumeMount, WorkspaceSpec};
use crate::domain::{
    Digest, Health, HostName, ImageRef, Tier, UpdateMode, WorkspaceName, WorkspaceState,
};
use crate::store::{KeptVolume, LastUpdate, NewWorkspace, RetireResult, Workspace, WorkspacePatch};

/// A workspace as the API returns it.
#[derive(Debug, Serialize)]
pub struct WorkspaceView {
    pub name: String,
    pub image: String,
    pub host: HostName,
    pub update_tier: Tier,
    pub update_mode: UpdateMode,
    pub maintenance_window: Option<String>,
    pub pinned_digest: Option<Digest>,
    pub desired_digest: Option<Digest>,
    pub actual_digest: Option<Digest>,
    pub state: WorkspaceState,
    pub health: Health,
    pub container_id: Option<String>,
    /// Spec fields the running container differs in (drift); empty when none.
    pub drift: Vec<String>,
    pub last_update: Option<LastUpdate>,
    pub spec: WorkspaceSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl WorkspaceView {
    pub fn new(w: Workspace, last_update: Option<LastUpdate>) -> Self {
        Self {
            name: w.name.to_string(),
            image: w.image.to_string(),
            host: w.host,
            update_tier: w.update_tier,
            update_mode: w.update_mode,
            maintenance_window: w.maintenance_window.map(|m| m.to_string()),
            pinned_digest: w.pinned_digest,
            desired_digest: w.desired_digest,
            actual_digest: w.actual_digest,
            state: w.state,
            health: w.health,
            container_id: w.container_id,
            drift: w.drift,
            last_update,
            spec: w.spec,
            created_at: w.created_at,
            updated_at: w.updated_at,
            version: w.version,
        }
    }
}

/// `validate` puts the field path (`volumes[0].mount`) first in the reason: the message
/// leads with it, as every 400 does.
pub(super) fn invalid_spec(e: crate::domain::ParseError) -> ApiError {
    let message = match e.reason.split_once(": ") {
        Some((field, reason)) => format!("{field}: invalid value `{}`: {reason}", e.input),
        None => e.to_string(),
    };
    ApiError::bad_request("invalid_spec", message)
}

/// Parses a tracked image reference and checks it against `[images] allow`.
pub fn check_image(state: &AppState, raw: &str) -> Result<ImageRef, ApiError> {
    let image = ImageRef::parse_tracked(raw)
        .map_err(|e| ApiError::bad_request("invalid_image", format!("image: {e}")))?;
    let allow = &state.api.images_allow;
    let full = image.to_string();
    if !allow.is_empty() && !allow.iter().any(|p| full.starts_with(p.as_str())) {
        return Err(ApiError::bad_request(
            "image_not_allowed",
            format!(
                "image: `{full}` is outside the allowlist `[images] allow` ({})",
                allow.join(", ")
            ),
        ));
    }
    Ok(image)
}

/// The digest the tag points at now: where a new workspace starts. An unknown tag is bad
/// input (400); a registry that does not answer is 502.
async fn initial_digest(state: &AppState, image: &ImageRef) -> Result<Option<Digest>, ApiError> {
    use crate::registry::{Registry as _, RegistryError};
    let Some(registry) = &state.registry else {
        return Ok(None);
    };
    match registry.resolve(image).await {
        Ok(r) => Ok(Some(r.digest)),
        Err(RegistryError::NotFound { .. }) => Err(ApiError::bad_request(
            "image_not_found",
            format!("image: `{image}` does not exist in its registry"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "registry_unavailable",
            format!("image: cannot resolve `{image}`: {e}"),
        )),
    }
}

fn parse_name(raw: &str) -> Result<WorkspaceName, ApiError> {
    // A name that cannot exist is simply not found.
    WorkspaceName::parse(raw)
        .map_err(|_| ApiError::not_found(format!("workspace `{raw}` not found")))
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<WorkspaceView>>, ApiError> {
    let all = state.store.workspaces().await?;
    let mut last = state.store.last_updates().await?;
    Ok(Json(
        all.into_iter()
            .map(|w| {
                let l = last.remove(&w.id);
                WorkspaceView::new(w, l)
            })
            .collect(),
    ))
}

async fn view(state: &AppState, w: Workspace) -> Result<WorkspaceView, ApiError> {
    let l = state.store.last_updates().await?.remove(&w.id);
    Ok(WorkspaceView::new(w, l))
}

pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let w = state.store.workspace(&parse_name(&name)?).await?;
    Ok(Json(view(&state, w).await?))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceView>), ApiError> {
    let image = check_image(&state, &body.image)?;
    let spec = WorkspaceSpec {
        env: body.env,
        volumes: body.volumes,
        ports: body.ports,
        command: body.command,
        health: body.health,
        restart: body.restart,
        network: body.network,
        networks: body.networks,
        container_name: None,
        drift: body.drift,
        update_order: body.update_order,
        snapshot_on_start_first: body.snapshot_on_start_first,
        labels: body.labels,
        entrypoint: body.entrypoint,
        user: body.user,
        working_dir: body.working_dir,
        hostname: body.hostname,
        stop_signal: body.stop_signal,
        stop_timeout: body.stop_timeout,
        read_only_rootfs: body.read_only_rootfs,
        resources: body.resources,
        tmpfs: body.tmpfs,
        extra_hosts: body.extra_hosts,
        dns: body.dns,
        ulimits: body.ulimits,
        sysctls: body.sysctls,
        log: body.log,
        binds: body.binds,
        cap_add: body.cap_add,
        cap_drop: body.cap_drop,
        security_opt: body.security_opt,
        contacts: body.contacts,
    };
    spec.validate().map_err(invalid_spec)?;
    spec.check_policy(&state.api.workspace_policy)
        .map_err(invalid_spec)?;
    let hosts = state.store.hosts().await?;
    let host = super::placement::place(body.host, &hosts)?;
    if let Some(row) = hosts.iter().find(|h| h.name == host) {
        let placed = state.store.host_workspace_counts().await?;
        let n = placed.get(host.as_str()).map_or(0, |c| c.0);
        super::placement::check_capacity(row, n)?;
    }
    let new = NewWorkspace {
        host,
        name: body.name,
        image,
        update_tier: body.update_tier.unwrap_or_default(),
        update_mode: body.update_mode.unwrap_or(UpdateMode::Auto),
        maintenance_window: body.maintenance_window,
        spec,
    };
    if state.store.workspace(&new.name).await.is_ok() {
        return Err(ApiError::conflict(
            "already_exists",
            format!("workspace `{}` already exists", new.name),
        ));
    }
    let entries: Vec<(usize, &VolumeMount)> = new.spec.volumes.iter().enumerate().collect();
    let adopted = volume_claims::check(&state, new.name.as_str(), None, &entries).await?;
    let desired = initial_digest(&state, &new.image).await?;
    let now = state.clock.now();
    let w = state
        .store
        .create_workspace_audited(&new, desired.as_ref(), &adopted, &actor.name, now)
        .await
        .map_err(|e| volume_claims::store_refusal(e, &new.spec.volumes))?;
    for a in &adopted {
        tracing::info!(workspace = %w.name, volume = %a.volume, actor = %actor.name, "volume adopted");
    }
    tracing::info!(workspace = %w.name, image = %w.image, actor = %actor.name, "workspace created");
    state.wakers.watcher.notify_one();
    state.wakers.controller.notify_one();
    state.wakers.reconciler.notify_one();
    Ok((StatusCode::CREATED, Json(WorkspaceView::new(w, None))))
}

pub async fn patch(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PatchWorkspace>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let name = parse_name(&name)?;
    let current = state.store.workspace(&name).await?;
    super::placement::check_unmoved(name.as_str(), &current.host, body.host.as_ref())?;
    let mut patch = WorkspacePatch {
        update_tier: body.update_tier,
        update_mode: body.update_mode,
        pinned_digest: body.pinned_digest.clone(),
        maintenance_window: body.maintenance_window,
        spec: None,
        adopted: Vec::new(),
    };
    if body.touches_spec() {
        let spec = body.apply_to(current.spec.clone());
        spec.validate().map_err(invalid_spec)?;
        spec.check_policy(&state.api.workspace_policy)
            .map_err(invalid_spec)?;
        // Volumes it used all along are not re-checked; new ones are, and so is an
        // existing entry that newly asks to adopt.
        let entries: Vec<(usize, &VolumeMount)> = spec
            .volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| {
                current
                    .spec
                    .volumes
                    .iter()
                    .find(|c| c.name == v.name)
                    .is_none_or(|c| v.adopt && !c.adopt)
            })
            .collect();
        patch.adopted =
            volume_claims::check(&state, name.as_str(), Some(current.id), &entries).await?;
        patch.spec = Some(spec);
    }
    let now = state.clock.now();
    let volumes = patch
        .spec
        .as_ref()
        .map_or(&[][..], |s| s.volumes.as_slice());
    let w = state
        .store
        .patch_workspace(&name, &patch, &actor.name, now)
        .await
        .map_err(|e| volume_claims::store_refusal(e, volumes))?;
    for a in &patch.adopted {
        tracing::info!(workspace = %name, volume = %a.volume, actor = %actor.name, "volume adopted");
    }
    tracing::info!(workspace = %name, actor = %actor.name, "workspace updated");
    state.wakers.controller.notify_one();
    state.wakers.reconciler.notify_one();
    Ok(Json(view(&state, w).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    pub purge: bool,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub name: String,
    pub container_removed: bool,
    pub volumes_removed: Vec<String>,
    /// With `purge`: volumes of the spec left in place because the workspace does not
    /// own them (another workspace's label, or unowned and never adopted).
    pub volumes_kept: Vec<KeptVolume>,
}

/// How long a delete waits at most for the reconciler to retire the workspace before it
/// answers that the reconciler will finish on its own.
const RETIRE_WAIT: Duration = Duration::from_secs(30);
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// Marks the workspace deleted and for retirement (one transaction with its audit event),
/// wakes the reconciler, which removes the container (and with `purge` the volumes the
/// workspace owns), and answers with what it did. The API itself never touches Docker.
pub async fn delete(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let name = parse_name(&name)?;
    let w = state.store.workspace(&name).await?;
    if state.docker.get().is_none() {
        return Err(ApiError::unavailable(
            "docker_unavailable",
            "docker is not reachable; nothing was deleted",
        ));
    }
    let now = state.clock.now();
    if !state
        .store
        .delete_workspace_audited(&name, q.purge, &actor.name, now)
        .await?
    {
        return Err(ApiError::conflict(
            "update_in_progress",
            format!("workspace `{name}` is being updated; retry when the update ends"),
        ));
    }
    // The row is gone for every loop; the reconciler retires its container (and volumes).
    tracing::info!(workspace = %name, workspace_id = w.id, purge = q.purge, actor = %actor.name, "workspace deleted");
    state.wakers.reconciler.notify_one();
    state.wakers.watcher.notify_one();
    // The reconciler may run in another instance (the leader): wake it before waiting.
    super::publish_wake(&state).await;
    let Some(done) = wait_retired(&state, w.id).await? else {
        tracing::warn!(workspace = %name, workspace_id = w.id, "workspace not retired yet; the reconciler finishes it");
        return Err(ApiError::unavailable(
            "retirement_pending",
            format!(
                "workspace `{name}` was deleted; its container{} not removed yet: the \
                 reconciler removes {} as soon as docker answers",
                if q.purge { " and volumes were" } else { " was" },
                if q.purge { "them" } else { "it" },
            ),
        ));
    };
    if let Some(error) = done.error {
        return Err(ApiError::unavailable(
            "docker_error",
            format!("workspace `{name}` was deleted but {error}; remove it by hand"),
        ));
    }
    Ok(Json(Deleted {
        name: name.to_string(),
        container_removed: done.container_removed,
        volumes_removed: done.volumes_removed,
        volumes_kept: done.volumes_kept,
    }))
}

/// The retirement's result once the reconciler recorded it; `None` after [`RETIRE_WAIT`]
/// (or three quarters of `[api] request_timeout` if that is shorter, so the answer is
/// this one and not the timeout's).
async fn wait_retired(state: &AppState, id: i64) -> Result<Option<RetireResult>, ApiError> {
    let wait = RETIRE_WAIT.min(state.api.request_timeout * 3 / 4);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(done) = state.store.retirement(id).await? {
            return Ok(Some(done));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(RETIRE_POLL).await;
    }
}
