//! What a workspace may reach on its host beyond its own volumes: bind mounts of host
//! paths, Linux capabilities and security options. The shape of each value is checked
//! with the rest of the spec ([`check_shape`]); whether the fleet allows it is checked
//! against the operator's policy ([`Policy`], from `[workspaces]`) whenever a spec is
//! written ([`check_policy`]): a tenant is never given `/`, the Docker socket, a host
//! path outside the allowed prefixes, or a privileged-equivalent capability or option
//! unless `allow_privileged` says so.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{WorkspaceSpec, is_false};
use super::spec_process::{Refusal, refuse};

/// A host directory or file mounted into the container. Not snapshotted: its data is the
/// host's, not the workspace's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindMount {
    /// Absolute host path, under one of `[workspaces] allowed_bind_prefixes`.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// The operator's policy, `[workspaces]`.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Host path prefixes binds may come from; empty: no binds at all.
    pub allowed_bind_prefixes: Vec<PathBuf>,
    /// Allows privileged-equivalent capabilities and security options.
    pub allow_privileged: bool,
}

/// Capabilities that give a container the host (or close to it).
pub const PRIVILEGED_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "SYS_BOOT",
    "SYS_TIME",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "BPF",
    "PERFMON",
];

/// Host paths no tenant is ever given, whatever the prefixes say.
const NEVER_BOUND: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/run/docker",
    "/run/docker",
];

/// `CAP_NAME` or `NAME` → `NAME`.
pub fn cap_name(c: &str) -> &str {
    c.strip_prefix("CAP_").unwrap_or(c)
}

/// An absolute path without `.`, `..` or empty components.
fn is_clean_absolute(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("//")
        && !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// The shape of binds, capabilities and security options (no policy needed).
pub fn check_shape(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    for (i, b) in spec.binds.iter().enumerate() {
        if !is_clean_absolute(&b.source) || b.source.contains([':', ',']) {
            return Err(refuse(
                &format!("binds[{i}].source"),
                &b.source,
                "must be an absolute host path without `.`, `..`, `:` or `,`",
            ));
        }
        if !is_clean_absolute(&b.target) || b.target == "/" || b.target.contains([':', ',']) {
            return Err(refuse(
                &format!("binds[{i}].target"),
                &b.target,
                "must be an absolute path other than `/`, without `.`, `..`, `:` or `,`",
            ));
        }
        let taken = spec
            .volumes
            .iter()
            .any(|v| v.mount.trim_end_matches('/') == b.target)
            || spec.tmpfs.contains_key(&b.target)
            || spec.binds[..i].iter().any(|o| o.target == b.target);
        if taken {
            return Err(refuse(
                &format!("binds[{i}].target"),
                &b.target,
                "is already mounted (a volume, tmpfs or another bind)",
            ));
        }
    }
    for (field, caps) in [("cap_add", &spec.cap_add), ("cap_drop", &spec.cap_drop)] {
        for (i, c) in caps.iter().enumerate() {
            let name = cap_name(c);
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
                return Err(refuse(
                    &format!("{field}[{i}]"),
                    c,
                    "must be a capability name such as NET_BIND_SERVICE (or CAP_NET_BIND_SERVICE)",
                ));
            }
        }
    }
    for (i, o) in spec.security_opt.iter().enumerate() {
        if security_opt_kind(o).is_none() {
            return Err(refuse(
                &format!("security_opt[{i}]"),
                o,
                "must be no-new-privileges[:true|false], apparmor=PROFILE, label=TYPE:VALUE|disable or seccomp=unconfined",
            ));
        }
    }
    Ok(())
}

/// `Some(true)` for an option that lifts confinement (privileged-equivalent), `Some(false)`
/// for one that keeps or tightens it, `None` for an unknown one.
fn security_opt_kind(o: &str) -> Option<bool> {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    };
    match o.split_once('=') {
        None => matches!(
            o,
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges:false"
        )
        .then_some(o == "no-new-privileges:false"),
        Some(("apparmor", "unconfined")) | Some(("seccomp", "unconfined")) => Some(true),
        Some(("label", "disable")) | Some(("systempaths", "unconfined")) => Some(true),
        Some(("apparmor", p)) if word(p) => Some(false),
        Some(("label", l))
            if ["type:", "user:", "role:", "level:"]
                .iter()
                .any(|k| l.starts_with(k))
                && word(l) =>
        {
            Some(false)
        }
        _ => None,
    }
}

/// Whether the operator's `policy` allows what `spec` reaches on the host.
pub fn check_policy(spec: &WorkspaceSpec, policy: &Policy) -> Result<(), Refusal> {
    for (i, b) in spec.binds.iter().enumerate() {
        let field = format!("binds[{i}].source");
        let source = Path::new(&b.source);
        if b.source == "/" || NEVER_BOUND.iter().any(|n| source.starts_with(n)) {
            return Err(refuse(
                &field,
                &b.source,
                "is never given to a workspace (the host root or the Docker socket)",
            ));
        }
        if !policy
            .allowed_bind_prefixes
            .iter()
            .any(|p| source.starts_with(p) && source != p.as_path())
        {
            return Err(refuse(
                &field,
                &b.source,
                "is not under [workspaces] allowed_bind_prefixes (empty: no host paths at all)",
            ));
        }
    }
    if policy.allow_privileged {
        return Ok(());
    }
    for (i, c) in spec.cap_add.iter().enumerate() {
        if PRIVILEGED_CAPS.contains(&cap_name(c)) {
            return Err(refuse(
                &format!("cap_add[{i}]"),
                c,
                "is privileged-equivalent; allowed only with [workspaces] allow_privileged = true",
            ));
        }
    }
    for (i, o) in spec.security_opt.iter().enumerate() {
        if security_opt_kind(o) == Some(true) {
            return Err(refuse(
                &format!("security_opt[{i}]"),
                o,
                "lifts the container's confinement; allowed only with [workspaces] allow_privileged = true",
            ));
        }
    }
    Ok(())
}
