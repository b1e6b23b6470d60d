//! What the in-memory runtime shows of a container: its [`ContainerInfo`] and its
//! [`RunningConfig`] (the fake's images supply no defaults, so that is the spec it was
//! created from), and the start-first calls (rename, moving a network attachment) on its
//! containers.

use std::collections::HashMap;

use super::fake::{FakeContainer, refused};
use super::{Attachment, RuntimeError};
use super::{ContainerInfo, RunningConfig};

pub(super) fn info(c: &FakeContainer) -> ContainerInfo {
    ContainerInfo {
        id: c.id.clone(),
        name: c.spec.name.clone(),
        labels: c.spec.labels.clone(),
        running: c.running,
        exit_code: Some(if c.running { 0 } else { 1 }),
        health: None,
        ip: Some("127.0.0.1".to_owned()),
        restart_count: 0,
        networks: c.spec.networks.iter().map(|a| a.network.clone()).collect(),
        host_ports: c
            .spec
            .ports
            .iter()
            .map(|p| (p.container, p.host.unwrap_or(p.container)))
            .collect(),
    }
}

pub(super) fn config_of(c: &FakeContainer) -> RunningConfig {
    RunningConfig {
        id: c.id.clone(),
        running: c.running,
        spec: c.spec.clone(),
        image_defaults: super::ImageDefaults::default(),
        repo_digests: c
            .spec
            .image
            .contains("@sha256:")
            .then(|| c.spec.image.clone())
            .into_iter()
            .collect(),
        unrepresentable: Vec::new(),
    }
}

pub(super) fn rename(
    containers: &mut HashMap<String, FakeContainer>,
    from: &str,
    to: &str,
) -> Result<(), RuntimeError> {
    if !containers.contains_key(from) {
        return if containers.contains_key(to) {
            Ok(())
        } else {
            Err(refused("rename", from, "no such container"))
        };
    }
    if containers.contains_key(to) {
        return Err(refused("rename", from, "name already in use"));
    }
    if let Some(mut c) = containers.remove(from) {
        c.spec.name = to.to_owned();
        containers.insert(to.to_owned(), c);
    }
    Ok(())
}

/// Attaches `name` to `a.network` with exactly `a.aliases`.
pub(super) fn attach(
    containers: &mut HashMap<String, FakeContainer>,
    name: &str,
    a: &Attachment,
) -> Result<(), RuntimeError> {
    let c = containers
        .get_mut(name)
        .ok_or_else(|| refused("attach", name, "no such container"))?;
    c.spec.networks.retain(|x| x.network != a.network);
    c.spec.networks.push(a.clone());
    Ok(())
}
