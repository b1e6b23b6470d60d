//! The container configuration a workspace asks for. Stored as JSON in
//! `workspaces.spec`; the reconciler turns it into a Docker container and compares it
//! with what Docker runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::spec_host::{LOG_DRIVERS, LogConfig, ULIMITS, Ulimit, parse_restart};
pub use super::spec_network::{DriftAction, NetworkSpec};
pub use super::spec_order::{UpdateOrder, effective as effective_order};
pub use super::spec_policy::{BindMount, PRIVILEGED_CAPS, Policy};
pub use super::spec_process::{MIN_MEMORY, Resources};
use super::{EmailAddress, ParseError};

/// Everything about a workspace's container except its image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// Environment variables, sorted so that comparisons and hashes are stable.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Named volumes: the tenant's data, snapshotted before every update.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Overrides the image's command when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthProbe>,
    /// Docker restart policy name (`no`, `always`, `unless-stopped`, `on-failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// A Docker network to attach (the default bridge when absent); or `networks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Networks with aliases, the first as the container's own (`spec_network.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkSpec>,
    /// The container's name; `sluice-<workspace>` when absent (an adopted container
    /// keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// `correct` (the default): a container changed behind sluice's back is put back to
    /// the spec; `report`: the drift is only reported.
    #[serde(default, skip_serializing_if = "DriftAction::is_default")]
    pub drift: DriftAction,
    /// How an update replaces the container: `stop-first` or `start-first`
    /// (`spec_order.rs`: what it asks of volumes, ports and binds); when absent, the
    /// image's `[[rollout.images]] update_order`, else `[update] order`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_order: Option<UpdateOrder>,
    /// Start-first only: snapshot the (shared) volumes before the new container starts,
    /// while the old one keeps running.
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshot_on_start_first: bool,
    /// Extra labels; `sluice.*` labels are reserved and refused.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the image's entrypoint when set (`spec_process.rs` checks this and the
    /// fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `NAME`, `UID`, `NAME:GROUP` or `UID:GID`; the image's user when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The container's hostname; Docker derives one from the container id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The signal `docker stop` sends; the image's (or SIGTERM) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds an update's stop waits for the process to exit before Docker kills it
    /// (0–3600); `[update] stop_timeout` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// Mounts the container's root filesystem read-only (volumes stay writable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only_rootfs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// tmpfs mounts: path → options (`size=64m,mode=1777`); `spec_host.rs` checks these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tmpfs: BTreeMap<String, String>,
    /// `/etc/hosts` entries, `HOST:IP`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// Namespaced sysctls only (`net.*`, `kernel.shm*`, ...), never the host's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogConfig>,
    /// Host paths mounted in; allowed only under `[workspaces] allowed_bind_prefixes`
    /// (`spec_policy.rs` checks these and the two fields below).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<BindMount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// The tenant's mail addresses (`[email]`): told when an update is available (manual
    /// mode) and when the workspace was updated. Not part of the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<EmailAddress>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// Docker volume name.
    pub name: String,
    /// Absolute path inside the container.
    pub mount: String,
    /// Takes over a volume that already exists without a sluice owner label. Docker
    /// cannot label an existing volume, so the stored spec is the record of ownership:
    /// the workspace may remove the volume on purge. Never takes a volume labelled for
    /// another live workspace.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt: bool,
    /// Mounted read-only in the container (still snapshotted and restored).
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// The application may run twice on this volume at once (required by start-first).
    #[serde(default, skip_serializing_if = "is_false")]
    pub shared: bool,
}

impl VolumeMount {
    /// A mount of a volume sluice creates (no adoption).
    pub fn new(name: impl Into<String>, mount: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            mount: mount.into(),
            adopt: false,
            read_only: false,
            shared: false,
        }
    }
}

/// The most `contacts` a workspace may list.
const MAX_CONTACTS: usize = 20;

/// A refused spec value, its reason led by the field it is in.
fn spec_error(field: &str, value: &str, reason: &str) -> ParseError {
    let mut e = ParseError::new("workspace spec", value, reason);
    e.reason = format!("{field}: {reason}");
    e
}

#[allow(clippy::trivially_copy_pass_by_ref)] // reason: serde's skip_serializing_if passes a reference
pub(super) fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    pub container: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    /// Host address to bind; `127.0.0.1` when absent, so nothing is exposed by accident;
    /// `""` binds every address (Docker's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `tcp` (when absent) or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// How the health gate decides a container is healthy: one of an HTTP probe, a TCP
/// probe or the image's own HEALTHCHECK (none: it keeps running, and passes the image's
/// HEALTHCHECK if it has one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthProbe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// A TCP connection to this container port is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// The image's own HEALTHCHECK must report `healthy`; an image without one fails.
    #[serde(default, skip_serializing_if = "is_false")]
    pub image: bool,
    /// A command run inside the container (`docker exec`) must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Container port probed.
    pub port: u16,
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Expected status; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

fn default_health_path() -> String {
    "/health".to_owned()
}

impl WorkspaceSpec {
    /// Checks what serde cannot: names Docker would refuse, reserved labels, paths.
    pub fn validate(&self) -> Result<(), ParseError> {
        let err = spec_error;
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(err(
                    "env",
                    key,
                    "variable names must be non-empty, without `=`",
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            if let Err(reason) = check_volume_name(&v.name) {
                return Err(err(&format!("volumes[{i}].name"), &v.name, reason));
            }
            if let Err(reason) = check_mount_path(&v.mount) {
                return Err(err(&format!("volumes[{i}].mount"), &v.mount, reason));
            }
            if !seen.insert(v.mount.trim_end_matches('/')) {
                return Err(err(
                    &format!("volumes[{i}].mount"),
                    &v.mount,
                    "is mounted twice",
                ));
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.container == 0 {
                return Err(err(
                    &format!("ports[{i}].container"),
                    "0",
                    "must be 1-65535",
                ));
            }
            if let Some(proto) = &p.protocol
                && !matches!(proto.as_str(), "tcp" | "udp")
            {
                return Err(err(
                    &format!("ports[{i}].protocol"),
                    proto,
                    "must be tcp or udp",
                ));
            }
            // `""`: every address, as `docker run -p 8080:80` binds (kept on adoption).
            if let Some(ip) = &p.host_ip
                && !ip.is_empty()
                && ip.parse::<core::net::IpAddr>().is_err()
            {
                return Err(err(
                    &format!("ports[{i}].host_ip"),
                    ip,
                    "must be an IP address",
                ));
            }
        }
        if let Some(h) = &self.health {
            let named = usize::from(h.http.is_some())
                + usize::from(h.tcp.is_some())
                + usize::from(h.image)
                + usize::from(h.command.is_some());
            if named > 1 {
                return Err(err(
                    "health",
                    "",
                    "name one probe: http, tcp, command or image",
                ));
            }
            if let Some(cmd) = &h.command
                && (cmd.is_empty() || cmd.iter().any(|a| a.contains('\0')))
            {
                return Err(err(
                    "health.command",
                    &cmd.join(" "),
                    "must name a program to run",
                ));
            }
            if let Some(TcpProbe { port: 0 }) = &h.tcp {
                return Err(err("health.tcp.port", "0", "must be 1-65535"));
            }
        }
        if let Some(HealthProbe { http: Some(h), .. }) = &self.health {
            if !h.path.starts_with('/') {
                return Err(err("health.http.path", &h.path, "must start with `/`"));
            }
            if h.port == 0 {
                return Err(err("health.http.port", "0", "must be 1-65535"));
            }
        }
        for k in self.labels.keys() {
            if k.starts_with("sluice.") {
                return Err(err(
                    "labels",
                    k,
                    "labels starting with `sluice.` are reserved",
                ));
            }
        }
        for (i, c) in self.contacts.iter().enumerate() {
            if self.contacts[..i].contains(c) {
                return Err(err(
                    &format!("contacts[{i}]"),
                    c.as_str(),
                    "is listed twice",
                ));
            }
        }
        if self.contacts.len() > MAX_CONTACTS {
            return Err(err("contacts", "", "at most 20 addresses"));
        }
        super::spec_process::check(self)
            .and_then(|()| super::spec_host::check(self))
            .and_then(|()| super::spec_network::check(self))
            .and_then(|()| super::spec_policy::check_shape(self))
            .and_then(|()| super::spec_order::check(self))
            .map_err(|(field, value, reason)| err(&field, &value, reason))
    }

    /// Whether the operator's policy allows what this spec reaches on the host: bind
    /// sources, privileged-equivalent capabilities and security options.
    pub fn check_policy(&self, policy: &Policy) -> Result<(), ParseError> {
        super::spec_policy::check_policy(self, policy)
            .map_err(|(field, value, reason)| spec_error(&field, &value, reason))
    }
}

/// A Docker volume name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 128 bytes. Nothing else
/// reaches Docker's bind syntax (`NAME:/PATH`), so a name can never be a host path.
fn check_volume_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("must match `[A-Za-z0-9][A-Za-z0-9_.-]*` (at most 128 characters)")
    }
}

/// A mount point inside the container: absolute, not `/` itself, no `.` or `..`
/// component (the snapshot is taken of exactly this directory), and none of the bytes
/// Docker's bind syntax gives a meaning (`:` separates options, `,` lists them).
pub(super) fn check_mount_path(mount: &str) -> Result<(), &'static str> {
    if !mount.starts_with('/') {
        return Err("must be an absolute path (start with `/`)");
    }
    if mount.len() > 4096 {
        return Err("must be at most 4096 bytes");
    }
    if mount
        .chars()
        .any(|c| c == ':' || c == ',' || c.is_control())
    {
        return Err("must not contain `:`, `,` or control characters");
    }
    let mut parts = 0;
    for part in mount.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err("must not contain `.` or `..` components");
        }
        parts += 1;
    }
    if parts == 0 {
        return Err("must not be `/`: a volume cannot replace the container's root");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shape_parses_and_validates() {
        let s: WorkspaceSpec = serde_json::from_str(
            r#"{"env":{"K":"V"},"volumes":[{"name":"acme-data","mount":"/data"}],
                "ports":[{"container":8080,"host":18080}],"command":["sh"],
                "health":{"http":{"port":8080,"path":"/health"}}}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.health.unwrap().http.unwrap().path, "/health");
    }

    #[test]
    fn contacts_are_addresses_listed_once() {
        let bad = serde_json::from_str::<WorkspaceSpec>(r#"{"contacts":["a@example.com","nope"]}"#)
            .unwrap_err();
        assert!(
            bad.to_string().contains("invalid email address `nope`"),
            "{bad}"
        );
        let s: WorkspaceSpec =
            serde_json::from_str(r#"{"contacts":["a@example.com","a@example.com"]}"#).unwrap();
        let e = s.validate().unwrap_err();
        assert!(e.reason.starts_with("contacts[1]:"), "{e}");
        let s: WorkspaceSpec = serde_json::from_str(r#"{"contacts":["a@example.com"]}"#).unwrap();
        s.validate().unwrap();
        assert!(
            serde_json::to_string(&WorkspaceSpec::default())
                .unwrap()
                .find("contacts")
                .is_none()
        );
    }

    #[test]
    fn bad_specs_name_the_field() {
        let s = WorkspaceSpec {
            labels: [("sluice.managed".to_owned(), "false".to_owned())].into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("reserved"));
        assert!(serde_json::from_str::<WorkspaceSpec>(r#"{"envv":{}}"#).is_err());
    }

    fn volumes(v: &[(&str, &str)]) -> WorkspaceSpec {
        WorkspaceSpec {
            volumes: v.iter().map(|(n, m)| VolumeMount::new(*n, *m)).collect(),
            ..Default::default()
        }
    }

    /// The reason `validate` gives, which starts with the field path.
    fn refusal(v: &[(&str, &str)]) -> String {
        volumes(v).validate().unwrap_err().reason
    }

    #[test]
    fn volume_names_are_refused_naming_the_entry() {
        for bad in ["../x", "", "-x", "a/b", "a:b", ".hidden", "/abs", "a b"] {
            let r = refusal(&[("ok", "/a"), (bad, "/data")]);
            assert!(r.starts_with("volumes[1].name: "), "{bad}: {r}");
        }
        let long = "a".repeat(129);
        assert!(refusal(&[(&long, "/d")]).starts_with("volumes[0].name: "));
        volumes(&[("a", "/a"), ("A-b_c.1", "/b"), (&"a".repeat(128), "/c")])
            .validate()
            .unwrap();
    }

    #[test]
    fn mount_paths_with_dot_dot_components_are_refused() {
        for bad in ["/data/..", "/../etc", "/a/../../b", "/data/./x", "/."] {
            let r = refusal(&[("v", bad)]);
            assert!(r.starts_with("volumes[0].mount: "), "{bad}: {r}");
        }
        assert!(refusal(&[("v", "/a/../b")]).contains("`..`"));
        // Dots inside a name are not components.
        volumes(&[("v", "/data..x"), ("w", "/srv/.cache")])
            .validate()
            .unwrap();
    }

    #[test]
    fn relative_mount_paths_are_refused() {
        for bad in ["data", "./data", "", "~/data", "../data"] {
            let r = refusal(&[("v", bad)]);
            assert!(r.starts_with("volumes[0].mount: "), "{bad}: {r}");
            assert!(r.contains("absolute"), "{bad}: {r}");
        }
    }

    #[test]
    fn mounting_on_the_root_is_refused() {
        for bad in ["/", "//", "///", "/./"] {
            let r = refusal(&[("v", bad)]);
            assert!(r.starts_with("volumes[0].mount: "), "{bad}: {r}");
        }
        assert!(refusal(&[("v", "/")]).contains("must not be `/`"));
    }

    #[test]
    fn mount_paths_cannot_smuggle_bind_options() {
        for bad in ["/data:ro", "/data,z", "/da\nta", "/data\0"] {
            let r = refusal(&[("v", bad)]);
            assert!(r.starts_with("volumes[0].mount: "), "{bad:?}: {r}");
        }
    }

    #[test]
    fn one_mount_point_twice_is_refused() {
        let r = refusal(&[("a", "/data"), ("b", "/data/")]);
        assert!(
            r.starts_with("volumes[1].mount: ") && r.contains("twice"),
            "{r}"
        );
    }

    #[test]
    fn adopt_is_optional_and_stored_only_when_set() {
        let s: WorkspaceSpec = serde_json::from_str(
            r#"{"volumes":[{"name":"a","mount":"/a"},{"name":"b","mount":"/b","adopt":true}]}"#,
        )
        .unwrap();
        assert!(!s.volumes[0].adopt && s.volumes[1].adopt);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text.matches("adopt").count(), 1, "{text}");
        assert!(
            serde_json::from_str::<WorkspaceSpec>(
                r#"{"volumes":[{"name":"a","mount":"/a","adopt":"yes"}]}"#
            )
            .is_err()
        );
    }
}
