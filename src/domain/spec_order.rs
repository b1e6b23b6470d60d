//! How an update replaces a workspace's container (`update_order`), and what
//! `start-first` asks of the spec. Stop-first (the default) stops the old container,
//! snapshots its volumes and starts the new one: a short outage, and the data is copied
//! while nothing writes. Start-first starts the new container beside the old, switches
//! traffic once it is healthy and only then stops the old one: no outage, but for a
//! moment two containers run on the same data, so it is refused unless every named
//! volume says it may be shared, no host port is published (two containers cannot bind
//! one) and every bind is read-only.

use serde::{Deserialize, Serialize};

use super::spec::WorkspaceSpec;
use super::spec_process::{Refusal, refuse};

/// The order in which an update replaces the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpdateOrder {
    /// Stop the old container, snapshot, start the new one (rollback restores the data).
    #[default]
    #[serde(rename = "stop-first")]
    StopFirst,
    /// Start the new container beside the old, switch traffic, then stop the old one
    /// (rollback removes the new one; the old never stopped).
    #[serde(rename = "start-first")]
    StartFirst,
}

impl UpdateOrder {
    pub const ALL: &'static [UpdateOrder] = &[UpdateOrder::StopFirst, UpdateOrder::StartFirst];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }

    pub fn parse(s: &str) -> Result<Self, super::ParseError> {
        Self::ALL
            .iter()
            .copied()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                super::ParseError::new("update order", s, "expected stop-first or start-first")
            })
    }
}

impl std::fmt::Display for UpdateOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks `update_order` against the rest of the spec, and `snapshot_on_start_first`.
pub fn check(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    match spec.update_order {
        Some(UpdateOrder::StartFirst) => shareable(spec),
        Some(UpdateOrder::StopFirst) if spec.snapshot_on_start_first => Err(refuse(
            "snapshot_on_start_first",
            "true",
            "applies only with update_order start-first (stop-first always snapshots)",
        )),
        _ => Ok(()),
    }
}

/// The order an update of a workspace with `spec` runs in: its own `update_order`, else
/// `default` (the image's or the fleet's). A default of start-first applies only where
/// the spec allows it; elsewhere the update runs stop-first.
pub fn effective(spec: &WorkspaceSpec, default: UpdateOrder) -> UpdateOrder {
    match spec.update_order {
        Some(o) => o,
        None if default == UpdateOrder::StartFirst && shareable(spec).is_ok() => default,
        None => UpdateOrder::StopFirst,
    }
}

/// Whether two containers can run on what `spec` mounts and publishes at once.
fn shareable(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    for (i, v) in spec.volumes.iter().enumerate() {
        if !v.shared {
            return Err(refuse(
                &format!("volumes[{i}].shared"),
                &v.name,
                "start-first runs the old and the new container on this volume at once; \
                 set shared: true only if the application allows two writers, or use stop-first",
            ));
        }
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if let Some(host) = p.host {
            return Err(refuse(
                &format!("ports[{i}].host"),
                host,
                "start-first cannot publish a host port: the old and the new container \
                 cannot both bind it; reach the workspace through a router instead",
            ));
        }
    }
    for (i, b) in spec.binds.iter().enumerate() {
        if !b.read_only {
            return Err(refuse(
                &format!("binds[{i}].read_only"),
                &b.source,
                "start-first would give the old and the new container this host path to \
                 write at once; mount it read_only, or use stop-first",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::{PortMapping, VolumeMount};

    #[test]
    fn a_default_of_start_first_applies_only_where_the_spec_allows_it() {
        let mut shared = VolumeMount::new("data", "/data");
        shared.shared = true;
        let ok = WorkspaceSpec {
            volumes: vec![shared],
            ..Default::default()
        };
        let not_shared = WorkspaceSpec {
            volumes: vec![VolumeMount::new("db", "/db")],
            ..Default::default()
        };
        let published = WorkspaceSpec {
            ports: vec![PortMapping {
                container: 80,
                host: Some(8080),
                host_ip: None,
                protocol: None,
            }],
            ..Default::default()
        };
        use UpdateOrder::{StartFirst, StopFirst};
        assert_eq!(effective(&ok, StartFirst), StartFirst);
        assert_eq!(effective(&not_shared, StartFirst), StopFirst);
        assert_eq!(effective(&published, StartFirst), StopFirst);
        assert_eq!(effective(&ok, StopFirst), StopFirst);
        let own = WorkspaceSpec {
            update_order: Some(StopFirst),
            ..ok.clone()
        };
        assert_eq!(effective(&own, StartFirst), StopFirst, "its own order wins");
        assert!(
            check(&not_shared).is_ok(),
            "no order of its own: nothing refused"
        );
    }
}
