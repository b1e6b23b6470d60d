//! The request bodies of `/api/v1/workspaces`: what POST and PATCH accept, and how a
//! PATCH applies to the stored spec.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::domain::spec::{
    BindMount, DriftAction, HealthProbe, LogConfig, NetworkSpec, PortMapping, Resources, Ulimit,
    UpdateOrder, VolumeMount, WorkspaceSpec,
};
use crate::domain::{
    Digest, EmailAddress, HostName, MaintenanceWindow, Tier, UpdateMode, WorkspaceName,
};

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /api/v1/workspaces`. Enumerated fields parse as domain types, so an invalid
/// value is refused naming its field; `image` is parsed by hand (tracked refs only).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    pub name: WorkspaceName,
    pub image: String,
    /// The Docker host to run on (required when more than one is registered).
    #[serde(default)]
    pub host: Option<HostName>,
    #[serde(default)]
    pub update_tier: Option<Tier>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
    #[serde(default)]
    pub maintenance_window: Option<MaintenanceWindow>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub health: Option<HealthProbe>,
    #[serde(default)]
    pub restart: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    #[serde(default)]
    pub drift: DriftAction,
    #[serde(default)]
    pub update_order: Option<UpdateOrder>,
    #[serde(default)]
    pub snapshot_on_start_first: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    #[serde(default)]
    pub read_only_rootfs: bool,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub log: Option<LogConfig>,
    #[serde(default)]
    pub binds: Vec<BindMount>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// Mail addresses told about the workspace's updates (`[email]`).
    #[serde(default)]
    pub contacts: Vec<EmailAddress>,
}

/// `PATCH /api/v1/workspaces/{name}`: any subset; spec fields replace their current value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchWorkspace {
    /// Only the workspace's own host is accepted: a move is refused.
    #[serde(default)]
    pub host: Option<HostName>,
    #[serde(default)]
    pub update_tier: Option<Tier>,
    #[serde(default)]
    pub update_mode: Option<UpdateMode>,
    #[serde(default, deserialize_with = "nullable")]
    pub pinned_digest: Option<Option<Digest>>,
    #[serde(default, deserialize_with = "nullable")]
    pub maintenance_window: Option<Option<MaintenanceWindow>>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub volumes: Option<Vec<VolumeMount>>,
    #[serde(default)]
    pub ports: Option<Vec<PortMapping>>,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub health: Option<Option<HealthProbe>>,
    #[serde(default, deserialize_with = "nullable")]
    pub restart: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub network: Option<Option<String>>,
    /// Replaces the list (`[]` leaves only `network`, or the default bridge).
    #[serde(default)]
    pub networks: Option<Vec<NetworkSpec>>,
    #[serde(default)]
    pub drift: Option<DriftAction>,
    #[serde(default)]
    pub update_order: Option<UpdateOrder>,
    #[serde(default)]
    pub snapshot_on_start_first: Option<bool>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub user: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub hostname: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub stop_signal: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub stop_timeout: Option<Option<u32>>,
    #[serde(default)]
    pub read_only_rootfs: Option<bool>,
    /// Replaces the whole `resources` object; `null` removes every limit.
    #[serde(default, deserialize_with = "nullable")]
    pub resources: Option<Option<Resources>>,
    #[serde(default)]
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub extra_hosts: Option<Vec<String>>,
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    #[serde(default)]
    pub ulimits: Option<Vec<Ulimit>>,
    #[serde(default)]
    pub sysctls: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub log: Option<Option<LogConfig>>,
    #[serde(default)]
    pub binds: Option<Vec<BindMount>>,
    #[serde(default)]
    pub cap_add: Option<Vec<String>>,
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    #[serde(default)]
    pub security_opt: Option<Vec<String>>,
    /// Replaces the list (`[]`: nobody is mailed).
    #[serde(default)]
    pub contacts: Option<Vec<EmailAddress>>,
}

impl PatchWorkspace {
    pub(super) fn touches_spec(&self) -> bool {
        self.env.is_some()
            || self.volumes.is_some()
            || self.ports.is_some()
            || self.command.is_some()
            || self.health.is_some()
            || self.restart.is_some()
            || self.network.is_some()
            || self.networks.is_some()
            || self.drift.is_some()
            || self.update_order.is_some()
            || self.snapshot_on_start_first.is_some()
            || self.labels.is_some()
            || self.entrypoint.is_some()
            || self.user.is_some()
            || self.working_dir.is_some()
            || self.hostname.is_some()
            || self.stop_signal.is_some()
            || self.stop_timeout.is_some()
            || self.read_only_rootfs.is_some()
            || self.resources.is_some()
            || self.tmpfs.is_some()
            || self.extra_hosts.is_some()
            || self.dns.is_some()
            || self.ulimits.is_some()
            || self.sysctls.is_some()
            || self.log.is_some()
            || self.binds.is_some()
            || self.cap_add.is_some()
            || self.cap_drop.is_some()
            || self.security_opt.is_some()
            || self.contacts.is_some()
    }

    pub(super) fn apply_to(self, mut spec: WorkspaceSpec) -> WorkspaceSpec {
        if let Some(v) = self.env {
            spec.env = v;
        }
        if let Some(v) = self.volumes {
            spec.volumes = v;
        }
        if let Some(v) = self.ports {
            spec.ports = v;
        }
        if let Some(v) = self.command {
            spec.command = v;
        }
        if let Some(v) = self.health {
            spec.health = v;
        }
        if let Some(v) = self.restart {
            spec.restart = v;
        }
        if let Some(v) = self.networks {
            spec.networks = v;
        }
        if let Some(v) = self.drift {
            spec.drift = v;
        }
        if let Some(v) = self.update_order {
            spec.update_order = Some(v);
        }
        if let Some(v) = self.snapshot_on_start_first {
            spec.snapshot_on_start_first = v;
        }
        if let Some(v) = self.network {
            spec.network = v;
        }
        if let Some(v) = self.labels {
            spec.labels = v;
        }
        if let Some(v) = self.entrypoint {
            spec.entrypoint = v;
        }
        if let Some(v) = self.user {
            spec.user = v;
        }
        if let Some(v) = self.working_dir {
            spec.working_dir = v;
        }
        if let Some(v) = self.hostname {
            spec.hostname = v;
        }
        if let Some(v) = self.stop_signal {
            spec.stop_signal = v;
        }
        if let Some(v) = self.stop_timeout {
            spec.stop_timeout = v;
        }
        if let Some(v) = self.read_only_rootfs {
            spec.read_only_rootfs = v;
        }
        if let Some(v) = self.resources {
            spec.resources = v;
        }
        if let Some(v) = self.tmpfs {
            spec.tmpfs = v;
        }
        if let Some(v) = self.extra_hosts {
            spec.extra_hosts = v;
        }
        if let Some(v) = self.dns {
            spec.dns = v;
        }
        if let Some(v) = self.ulimits {
            spec.ulimits = v;
        }
        if let Some(v) = self.sysctls {
            spec.sysctls = v;
        }
        if let Some(v) = self.log {
            spec.log = v;
        }
        if let Some(v) = self.binds {
            spec.binds = v;
        }
        if let Some(v) = self.cap_add {
            spec.cap_add = v;
        }
        if let Some(v) = self.cap_drop {
            spec.cap_drop = v;
        }
        if let Some(v) = self.security_opt {
            spec.security_opt = v;
        }
        if let Some(v) = self.contacts {
            spec.contacts = v;
        }
        spec
    }
}
