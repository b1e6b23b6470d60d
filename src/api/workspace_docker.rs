//! The one Docker effect of the API: removing a deleted workspace's container (and, with
//! `?purge=true`, its volumes). Everything else in Docker belongs to the reconciler.

use bollard::Docker;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder};

use super::error::ApiError;
use crate::store::Workspace;

pub struct Removed {
    pub container: bool,
    pub volumes: Vec<String>,
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
    if purge {
        for v in &w.spec.volumes {
            let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
            match docker.remove_volume(&v.name, Some(opts)).await {
                Ok(()) => volumes.push(v.name.clone()),
                Err(e) if is_404(&e) => {}
                Err(e) => {
                    return Err(ApiError::unavailable(
                        "docker_error",
                        format!("cannot remove volume `{}`: {e}", v.name),
                    ));
                }
            }
        }
    }
    Ok(Removed { container, volumes })
}
