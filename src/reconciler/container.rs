//! Workspace → container: the pure mapping from a workspace's spec and a digest to what
//! the runtime creates. Two digests of one workspace map to specs that differ only in
//! image and the `sluice.digest` label.

use std::collections::BTreeMap;

use crate::domain::Digest;
use crate::domain::spec::WorkspaceSpec;
use crate::runtime::{ContainerSpec, LABEL_DIGEST, LABEL_MANAGED, LABEL_WORKSPACE, PortSpec};
use crate::store::Workspace;

/// The container `workspace` should run at `digest`.
pub fn container_spec(w: &Workspace, digest: &Digest) -> ContainerSpec {
    build(
        w.name.as_str(),
        &w.image.pinned(digest).to_string(),
        digest,
        &w.spec,
    )
}

fn build(name: &str, image: &str, digest: &Digest, spec: &WorkspaceSpec) -> ContainerSpec {
    let mut labels: BTreeMap<String, String> = spec.labels.clone();
    labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
    labels.insert(LABEL_WORKSPACE.to_owned(), name.to_owned());
    labels.insert(LABEL_DIGEST.to_owned(), digest.to_string());
    ContainerSpec {
        name: format!("sluice-{name}"),
        image: image.to_owned(),
        labels,
        env: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cmd: spec.command.clone(),
        volumes: spec
            .volumes
            .iter()
            .map(|v| (v.name.clone(), v.mount.clone()))
            .collect(),
        ports: spec
            .ports
            .iter()
            .map(|p| PortSpec {
                container: p.container,
                host: p.host,
                host_ip: p.host_ip.clone().unwrap_or_else(|| "127.0.0.1".to_owned()),
            })
            .collect(),
        restart: spec.restart.clone(),
        network: spec.network.clone(),
    }
}

/// Labels of the named volumes sluice creates for a workspace.
pub fn volume_labels(workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKSPACE.to_owned(), workspace.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{PortMapping, VolumeMount};

    #[test]
    fn two_digests_differ_only_in_image_and_digest_label() {
        let spec = WorkspaceSpec {
            env: [("K".to_owned(), "V".to_owned())].into(),
            volumes: vec![VolumeMount::new("acme-data", "/data")],
            ports: vec![PortMapping {
                container: 8080,
                host: None,
                host_ip: None,
            }],
            labels: [("team".to_owned(), "a".to_owned())].into(),
            ..Default::default()
        };
        let d1 = Digest::of_bytes(b"1");
        let d2 = Digest::of_bytes(b"2");
        let a = build("acme", "r/x@1", &d1, &spec);
        let mut b = build("acme", "r/x@2", &d2, &spec);
        assert_eq!(a.name, "sluice-acme");
        assert_eq!(a.ports[0].host_ip, "127.0.0.1");
        assert_eq!(a.labels["sluice.managed"], "true");
        assert_eq!(a.labels["team"], "a");
        assert_eq!(a.env, ["K=V"]);
        b.image = a.image.clone();
        b.labels.insert(LABEL_DIGEST.into(), d1.to_string());
        assert_eq!(a, b);
    }
}
