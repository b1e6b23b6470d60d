//! Workspace → container: the pure mapping from a workspace's spec and a digest to what
//! the runtime creates. Two digests of one workspace map to specs that differ only in
//! image and the `sluice.digest` label.
//!
//! Also the pure rules of volume ownership: a volume belongs to the workspace whose id
//! its `sluice.workspace_id` label names, or — for a volume that existed before sluice
//! and carries no such label — to the workspace whose stored spec adopted it. A
//! workspace claims only free volumes, its own, or (explicitly) unowned ones, and
//! sluice removes only volumes the workspace owns.

use std::collections::BTreeMap;

use crate::domain::Digest;
use crate::domain::spec::{WorkspaceSpec, parse_restart};
use crate::runtime::{
    Attachment, ContainerInfo, ContainerSpec, LABEL_DIGEST, LABEL_MANAGED, LABEL_WORKSPACE,
    LABEL_WORKSPACE_ID, Limits, PortSpec,
};
use crate::store::Workspace;

/// The container `workspace` should run at `digest`.
pub fn container_spec(w: &Workspace, digest: &Digest) -> ContainerSpec {
    build(
        w.id,
        w.name.as_str(),
        &w.image.pinned(digest).to_string(),
        digest,
        &w.spec,
    )
}

fn build(id: i64, name: &str, image: &str, digest: &Digest, spec: &WorkspaceSpec) -> ContainerSpec {
    let restart = spec.restart.as_deref().and_then(parse_restart);
    let mut labels: BTreeMap<String, String> = spec.labels.clone();
    labels.extend(volume_labels(id, name));
    labels.insert(LABEL_DIGEST.to_owned(), digest.to_string());
    ContainerSpec {
        name: spec
            .container_name
            .clone()
            .unwrap_or_else(|| format!("sluice-{name}")),
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
                protocol: p.protocol.clone().unwrap_or_else(|| "tcp".to_owned()),
                host: p.host,
                host_ip: p.host_ip.clone().unwrap_or_else(|| "127.0.0.1".to_owned()),
            })
            .collect(),
        restart: restart.map(|(name, _)| name.to_owned()),
        restart_retries: restart.and_then(|(_, n)| n),
        networks: match &spec.network {
            Some(n) => vec![Attachment {
                network: n.clone(),
                aliases: Vec::new(),
            }],
            None => spec
                .networks
                .iter()
                .map(|n| Attachment {
                    network: n.name.clone(),
                    aliases: n.aliases.clone(),
                })
                .collect(),
        },
        read_only_mounts: spec
            .volumes
            .iter()
            .filter(|v| v.read_only)
            .map(|v| v.mount.clone())
            .collect(),
        tmpfs: spec.tmpfs.clone(),
        binds: spec
            .binds
            .iter()
            .map(|b| (b.source.clone(), b.target.clone(), b.read_only))
            .collect(),
        cap_add: spec.cap_add.clone(),
        cap_drop: spec.cap_drop.clone(),
        security_opt: spec.security_opt.clone(),
        extra_hosts: spec.extra_hosts.clone(),
        dns: spec.dns.clone(),
        ulimits: spec
            .ulimits
            .iter()
            .map(|u| (u.name.clone(), u.soft, u.hard))
            .collect(),
        sysctls: spec.sysctls.clone(),
        log: spec
            .log
            .as_ref()
            .map(|l| (l.driver.clone(), l.options.clone())),
        entrypoint: spec.entrypoint.clone(),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout,
        read_only_rootfs: spec.read_only_rootfs,
        limits: spec
            .resources
            .as_ref()
            .map(|r| Limits {
                memory: r.memory,
                memory_swap: r.memory_swap,
                cpu_quota: r.cpu_quota,
                cpu_period: r.cpu_period,
                cpu_shares: r.cpu_shares,
                cpuset_cpus: r.cpuset_cpus.clone(),
                pids_limit: r.pids_limit,
                nano_cpus: r.nano_cpus,
            })
            .unwrap_or_default(),
    }
}

/// True when `c` is the container adopted for a workspace whose recorded container id
/// is `container_id`, not yet replaced: Docker cannot label a running container, so
/// the id the store recorded on adoption is what makes it the workspace's.
pub fn is_adopted(c: &ContainerInfo, container_id: Option<&str>) -> bool {
    !c.is_managed() && container_id == Some(c.id.as_str())
}

/// Whether `c` is `w`'s container: labelled for it, or adopted by it.
pub fn belongs_to(c: &ContainerInfo, w: &Workspace) -> bool {
    is_adopted(c, w.container_id.as_deref())
        || (c.is_managed()
            && c.labels.get(LABEL_WORKSPACE).map(String::as_str) == Some(w.name.as_str()))
}

/// The digest `c` runs for `w`: its label, or for an adopted container the digest the
/// store recorded on adoption.
pub fn running_digest<'a>(c: &'a ContainerInfo, w: &'a Workspace) -> Option<&'a str> {
    if is_adopted(c, w.container_id.as_deref()) {
        w.actual_digest.as_ref().map(Digest::as_str)
    } else {
        c.digest_label()
    }
}

/// Labels of the named volumes sluice creates for workspace `workspace_id` (`workspace`
/// is its name, for people; ownership is decided by the id alone). Containers carry the
/// same three.
pub fn volume_labels(workspace_id: i64, workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKSPACE.to_owned(), workspace.to_owned()),
        (LABEL_WORKSPACE_ID.to_owned(), workspace_id.to_string()),
    ])
}

/// The volume labels for the workspace whose container `spec` is (built by
/// [`container_spec`], which carries the owner's id); an error when the spec names none.
pub fn volume_labels_for(
    spec: &ContainerSpec,
    workspace: &str,
) -> Result<BTreeMap<String, String>, String> {
    let id = volume_owner(&spec.labels).ok_or_else(|| {
        format!(
            "container {} carries no {LABEL_WORKSPACE_ID} label; refusing to create unowned volumes",
            spec.name
        )
    })?;
    Ok(volume_labels(id, workspace))
}

/// The id of the workspace a volume (or container) is labelled for: `Some` only when it
/// carries `sluice.managed=true` and a numeric `sluice.workspace_id`. Volumes created
/// by hand, or by sluice before it labelled owners, have none.
pub fn volume_owner(labels: &BTreeMap<String, String>) -> Option<i64> {
    if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
        return None;
    }
    labels.get(LABEL_WORKSPACE_ID)?.parse().ok()
}

/// A volume made before volumes carried the owner's id: managed, labelled with the
/// workspace's name, no id. Its workspace's own restores may still refill it (the API
/// refuses such a volume to any other workspace without an explicit adopt).
pub fn legacy_owned_by(labels: &BTreeMap<String, String>, workspace: &str) -> bool {
    labels.get(LABEL_MANAGED).map(String::as_str) == Some("true")
        && !labels.contains_key(LABEL_WORKSPACE_ID)
        && labels.get(LABEL_WORKSPACE).map(String::as_str) == Some(workspace)
}

/// True when the labels name `workspace_id` as the owner.
pub fn volume_owned_by(labels: &BTreeMap<String, String>, workspace_id: i64) -> bool {
    volume_owner(labels) == Some(workspace_id)
}

/// Why a volume is left in place instead of being removed for a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// Labelled for another workspace id: that tenant's data.
    OtherWorkspace { owner: i64 },
    /// No sluice owner label, and the workspace's spec did not adopt it.
    NotOwned,
}

impl KeepReason {
    /// Stable word for APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::OtherWorkspace { .. } => "other_workspace",
            KeepReason::NotOwned => "not_owned",
        }
    }
}

impl std::fmt::Display for KeepReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepReason::OtherWorkspace { owner } => {
                write!(f, "labelled for another workspace (id {owner})")
            }
            KeepReason::NotOwned => {
                write!(f, "carries no sluice owner label and was not adopted")
            }
        }
    }
}

/// May sluice remove this volume (its current `labels`) on behalf of workspace
/// `workspace_id`? Only when labelled for that id, or unlabelled and `adopted` by the
/// workspace's stored spec. A label naming another id always wins over adoption. Every
/// path that removes a volume (purge, restore, rollback) asks this first.
pub fn may_remove_volume(
    labels: &BTreeMap<String, String>,
    workspace_id: i64,
    adopted: bool,
) -> Result<(), KeepReason> {
    match volume_owner(labels) {
        Some(owner) if owner == workspace_id => Ok(()),
        Some(owner) => Err(KeepReason::OtherWorkspace { owner }),
        None if adopted => Ok(()),
        None => Err(KeepReason::NotOwned),
    }
}

/// What the store knows about the workspace id a volume is labelled for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelledOwner {
    /// A live workspace (its name).
    Live(String),
    /// A deleted workspace (its row's name): nobody uses the volume now.
    Deleted(String),
    /// An id this store never issued (another installation's, or a hand-made label).
    Unknown,
}

/// How a workspace may take a volume named in its spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The volume does not exist: the reconciler creates it, labelled for the workspace.
    Create,
    /// Already labelled for this workspace.
    Own,
    /// Exists without an owner (or with a deleted workspace's label) and the entry says
    /// `adopt: true`: the workspace takes it over; audited as `volume_adopted`.
    Adopt { previous_owner: Option<i64> },
}

/// Why a claim is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimRefused {
    /// Labelled for another live workspace, or for an id this store never issued:
    /// never given out, adopt or not.
    InUse {
        owner: i64,
        owner_name: Option<String>,
    },
    /// Labelled for a workspace that was deleted (its volumes kept): another tenant's
    /// data, taken over only with an explicit `adopt: true`.
    LeftByDeleted { owner: i64, owner_name: String },
    /// Exists without a sluice owner label: taken over only with `adopt: true`.
    Unowned,
}

impl std::fmt::Display for ClaimRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimRefused::InUse {
                owner_name: Some(n),
                ..
            } => write!(f, "belongs to workspace `{n}`"),
            ClaimRefused::InUse { owner, .. } => write!(
                f,
                "is labelled for workspace id {owner}, which this sluice does not know; \
                 it is never given to another workspace"
            ),
            ClaimRefused::LeftByDeleted { owner, owner_name } => write!(
                f,
                "belongs to deleted workspace `{owner_name}` (id {owner}); \
                 set \"adopt\": true on this entry to take it over with its data"
            ),
            ClaimRefused::Unowned => write!(
                f,
                "already exists and no workspace owns it; \
                 set \"adopt\": true on this entry to take it over with its data"
            ),
        }
    }
}

/// Decides whether workspace `claimant` (`None` while it is being created) may use a
/// volume. `labels` are the volume's current labels (`None`: it does not exist);
/// `owner` is what the store knows about the id the labels name (ignored when they name
/// none); `adopt` is the spec entry's flag. A volume labelled for a live workspace, or
/// for an id unknown to this store, is never given out, adopt or not.
pub fn claim_volume(
    labels: Option<&BTreeMap<String, String>>,
    claimant: Option<i64>,
    owner: Option<&LabelledOwner>,
    adopt: bool,
) -> Result<Claim, ClaimRefused> {
    let Some(labels) = labels else {
        return Ok(Claim::Create);
    };
    let Some(id) = volume_owner(labels) else {
        return if adopt {
            Ok(Claim::Adopt {
                previous_owner: None,
            })
        } else {
            Err(ClaimRefused::Unowned)
        };
    };
    if Some(id) == claimant {
        return Ok(Claim::Own);
    }
    match owner {
        Some(LabelledOwner::Deleted(_)) if adopt => Ok(Claim::Adopt {
            previous_owner: Some(id),
        }),
        Some(LabelledOwner::Deleted(n)) => Err(ClaimRefused::LeftByDeleted {
            owner: id,
            owner_name: n.clone(),
        }),
        Some(LabelledOwner::Live(n)) => Err(ClaimRefused::InUse {
            owner: id,
            owner_name: Some(n.clone()),
        }),
        Some(LabelledOwner::Unknown) | None => Err(ClaimRefused::InUse {
            owner: id,
            owner_name: None,
        }),
    }
}

#[cfg(test)]
#[path = "container_tests.rs"]
mod tests;
