//! What the in-memory runtime shows of a container: its [`ContainerInfo`] and its
//! [`RunningConfig`] (the fake's images supply no defaults, so that is the spec it was
//! created from).

use super::fake::FakeContainer;
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
