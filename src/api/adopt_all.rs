//! `POST /api/v1/workspaces/adopt-all`: adopt every running container that carries a
//! label (or belongs to a Compose project) in one audited operation. Each container is
//! adopted on its own as `POST /api/v1/workspaces/adopt` would (a refusal of one leaves
//! the others alone); one `workspaces.adopted_all` event records the whole table.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::adopt::{AdoptRequest, AdoptView, adopt_one, local_host};
use super::auth::Actor;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::domain::spec::HealthProbe;
use crate::domain::{MaintenanceWindow, Tier, UpdateMode, WorkspaceName};
use crate::runtime::DockerRuntime;
use crate::store::NewEvent;

/// Which containers, and the settings every workspace made of them gets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptAllRequest {
    /// `KEY=VALUE` (or `KEY`): containers carrying this label.
    #[serde(default)]
    pub label: Option<String>,
    /// The containers of this Compose project (`com.docker.compose.project`).
    #[serde(default)]
    pub compose_project: Option<String>,
    #[serde(default)]
    pub update_tier: Option<Tier>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
    #[serde(default)]
    pub maintenance_window: Option<MaintenanceWindow>,
    #[serde(default)]
    pub health: Option<HealthProbe>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub force: bool,
}

/// A container that was not adopted, and why.
#[derive(Debug, Serialize)]
pub struct Refused {
    pub container: String,
    pub name: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct AdoptAllView {
    pub dry_run: bool,
    pub selector: String,
    pub adopted: Vec<AdoptView>,
    pub refused: Vec<Refused>,
}

/// The workspace name a container's name becomes: lowercased, `_` and `.` as `-`.
pub fn name_for(container: &str) -> String {
    let mut n: String = container
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .collect();
    n.truncate(63);
    n.trim_matches('-').to_owned()
}

fn selector(body: &AdoptAllRequest) -> Result<String, ApiError> {
    match (&body.label, &body.compose_project) {
        (Some(l), None) if !l.is_empty() && !l.starts_with('=') => Ok(l.clone()),
        (None, Some(p)) if !p.is_empty() && !p.contains('=') => {
            Ok(format!("com.docker.compose.project={p}"))
        }
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_selector",
            "label: name either a label or a Compose project, not both",
        )),
        _ => Err(ApiError::bad_request(
            "invalid_selector",
            "label: name the containers: a label (KEY=VALUE) or a compose_project",
        )),
    }
}

pub async fn adopt_all(
    State(state): State<AppState>,
    Extension(actor): Extension<Arc<Actor>>,
    ApiJson(body): ApiJson<AdoptAllRequest>,
) -> Result<Json<AdoptAllView>, ApiError> {
    let label = selector(&body)?;
    local_host(&state)?;
    let docker = state.docker.get().ok_or_else(|| {
        ApiError::unavailable(
            "docker_unavailable",
            "docker is not reachable, so no container can be read; nothing was changed",
        )
    })?;
    let names = DockerRuntime::new(docker.as_ref().clone())
        .running_with_label(&label)
        .await
        .map_err(|e| {
            ApiError::unavailable(
                "docker_error",
                format!("label: cannot list containers: {e}"),
            )
        })?;
    let mut out = AdoptAllView {
        dry_run: body.dry_run,
        selector: label.clone(),
        adopted: Vec::new(),
        refused: Vec::new(),
    };
    for container in names {
        let name = name_for(&container);
        let Ok(ws) = WorkspaceName::parse(&name) else {
            out.refused.push(Refused {
                container,
                name: None,
                code: "invalid_name".to_owned(),
                message: format!(
                    "name: `{name}` is not a workspace name; adopt it alone with a name"
                ),
            });
            continue;
        };
        let one = AdoptRequest {
            container: container.clone(),
            name: ws,
            image: None,
            update_tier: body.update_tier,
            update_mode: body.update_mode,
            maintenance_window: body.maintenance_window,
            health: body.health.clone(),
            dry_run: body.dry_run,
            force: body.force,
        };
        match adopt_one(&state, &actor, &one).await {
            Ok(v) => out.adopted.push(v),
            Err(e) => out.refused.push(Refused {
                container,
                name: Some(name),
                code: e.code.to_owned(),
                message: e.message,
            }),
        }
    }
    if !body.dry_run {
        let detail = serde_json::json!({
            "selector": label,
            "adopted": out.adopted.iter().map(|a| &a.name).collect::<Vec<_>>(),
            "refused": out.refused.iter().map(|r| serde_json::json!({
                "container": r.container, "code": r.code, "message": r.message })).collect::<Vec<_>>(),
        });
        let ev = NewEvent {
            actor: actor.name.clone(),
            subject: format!("containers:{label}"),
            action: "workspaces.adopted_all".to_owned(),
            detail,
            rollout_id: None,
            workspace: None,
        };
        state.store.append_event(&ev, state.clock.now()).await?;
    }
    tracing::info!(selector = %label, adopted = out.adopted.len(), refused = out.refused.len(), actor = %actor.name, dry_run = body.dry_run, "bulk adoption");
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::name_for;

    #[test]
    fn container_names_become_workspace_names() {
        assert_eq!(name_for("shop_web_1"), "shop-web-1");
        assert_eq!(name_for("Shop.Web-1"), "shop-web-1");
        assert_eq!(name_for("_x_"), "x");
    }
}
