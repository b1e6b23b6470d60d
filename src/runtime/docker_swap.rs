//! What a start-first update asks of Docker besides creating and removing containers:
//! giving the new container the workspace's network aliases, and renaming the new container to the workspace's name. Each call is idempotent, so a
//! step repeated after a crash finds its work done. Fault points surround each change.

use bollard::Docker;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkDisconnectRequest};
use bollard::query_parameters::RenameContainerOptions;

use super::docker_convert::{err, is_status};
use super::{Attachment, RuntimeError};

/// The aliases `name` has on `network` (Docker adds the short id; ignored by callers
/// that check a subset); none when it is not attached or does not exist.
async fn aliases_on(
    docker: &Docker,
    name: &str,
    network: &str,
) -> Result<Option<Vec<String>>, RuntimeError> {
    match docker.inspect_container(name, None).await {
        Ok(c) => Ok(c
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(network))
            .map(|e| e.aliases.unwrap_or_default())),
        Err(e) if is_status(&e, &[404]) => Ok(None),
        Err(e) => Err(err("inspect", name)(e)),
    }
}

pub(super) async fn rename(docker: &Docker, from: &str, to: &str) -> Result<(), RuntimeError> {
    crate::fault::point("rename.before").await;
    let result = match docker
        .rename_container(
            from,
            RenameContainerOptions {
                name: to.to_owned(),
            },
        )
        .await
    {
        Ok(()) => Ok(()),
        // Done before (a repeated step): `from` is gone and `to` exists.
        Err(e) if is_status(&e, &[404]) && exists(docker, to).await => Ok(()),
        Err(e) => Err(err("rename", from)(e)),
    };
    crate::fault::point("rename.after").await;
    result
}

async fn exists(docker: &Docker, name: &str) -> bool {
    docker.inspect_container(name, None).await.is_ok()
}

pub(super) async fn attach(
    docker: &Docker,
    name: &str,
    a: &Attachment,
) -> Result<(), RuntimeError> {
    if let Some(have) = aliases_on(docker, name, &a.network).await?
        && a.aliases.iter().all(|x| have.contains(x))
    {
        return Ok(());
    }
    crate::fault::point("attach.before").await;
    // Aliases are set when a container joins a network: leave it, then join again.
    detach_quietly(docker, name, &a.network).await?;
    let req = NetworkConnectRequest {
        container: name.to_owned(),
        endpoint_config: Some(EndpointSettings {
            aliases: (!a.aliases.is_empty()).then(|| a.aliases.clone()),
            ..Default::default()
        }),
    };
    let result = docker
        .connect_network(&a.network, req)
        .await
        .map_err(err("connect network", &a.network));
    crate::fault::point("attach.after").await;
    result
}

async fn detach_quietly(docker: &Docker, name: &str, network: &str) -> Result<(), RuntimeError> {
    let req = NetworkDisconnectRequest {
        container: name.to_owned(),
        force: Some(true),
    };
    match docker.disconnect_network(network, req).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, &[403, 404, 409]) => Ok(()),
        Err(e) => Err(err("disconnect network", network)(e)),
    }
}
