//! The one Docker effect of the API: removing a deleted workspace's container (and, with
//! `?purge=true`, the volumes it owns). Everything else in Docker belongs to the
//! reconciler.

use bollard::Docker;
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use serde::Serialize;

use super::error::ApiError;
use crate::reconciler::container::KeepReason;
use crate::reconciler::volumes::{VolumeRemoval, remove_owned_volume};
use crate::runtime::DockerRuntime;
use crate::store::Workspace;

pub struct Removed {
    pub container: bool,
    pub volumes: Vec<String>,
    pub kept: Vec<KeptVolume>,
}

/// A volume `purge` left in place, and why.
#[derive(Debug, Serialize)]
pub struct KeptVolume {
    pub name: String,
    /// `other_workspace` or `not_owned`.
    pub reason: &'static str,
    /// The workspace id the volume is labelled for (with `other_workspace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<i64>,
    /// For people.
    pub message: String,
}

fn is_404(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

pub async fn remove(docker: &Docker, w: &Workspace, purge: bool) -> Result<Removed, ApiError> {
    let target = w
        .container_id
        .clone()
        .unwrap_or_else(|| w.name.container_name());
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    let container = match docker.remove_container(&target, Some(opts)).await {
        Ok(()) => true,
        Err(e) if is_404(&e) => false,
        Err(e) => {
            return Err(ApiError::unavailable(
                "docker_error",
                format!("cannot remove container `{target}`: {e}"),
            ));
        }
    };
    let mut volumes = Vec::new();
    let mut kept = Vec::new();
    if purge {
        let rt = DockerRuntime::new(docker.clone());
        for v in &w.spec.volumes {
            let done = remove_owned_volume(&rt, &v.name, w.id, w.name.as_str(), v.adopt)
                .await
                .map_err(|e| {
                    ApiError::unavailable(
                        "docker_error",
                        format!("cannot remove volume `{}`: {e}", v.name),
                    )
                })?;
            match done {
                VolumeRemoval::Removed => volumes.push(v.name.clone()),
                VolumeRemoval::Absent => {}
                VolumeRemoval::Kept(reason) => kept.push(KeptVolume {
                    name: v.name.clone(),
                    reason: reason.as_str(),
                    owner_id: match reason {
                        KeepReason::OtherWorkspace { owner } => Some(owner),
                        KeepReason::NotOwned => None,
                    },
                    message: format!("volume `{}` {reason}; left in place", v.name),
                }),
            }
        }
    }
    Ok(Removed {
        container,
        volumes,
        kept,
    })
}
