//! Adopting a running container: pure planning from what Docker shows of it (a
//! [`RunningConfig`], the image's defaults already taken out) to the workspace that
//! reproduces it — the tracked image, the digest it runs now and the spec — plus every
//! setting the spec cannot carry, named. The inverse of `reconciler::container`: a spec
//! mapped to a container and planned back is the same spec (`tests.rs` proves it).
//! No I/O here; `api::adopt` reads Docker and writes the store.

use std::collections::BTreeMap;

use crate::domain::spec::{
    BindMount, LogConfig, NetworkSpec, PortMapping, Resources, Ulimit, VolumeMount, WorkspaceSpec,
};
use crate::domain::{Digest, ImageRef, ParseError, WorkspaceName};
use crate::runtime::{ContainerSpec, Limits, RunningConfig};

/// Why a container cannot be adopted as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    /// Started from an image id or a digest, so there is no tag to follow.
    #[error(
        "image: the container was started from `{0}`, which names no tag to follow; \
         pass the tag to track (`image`, or `--image repo:tag`)"
    )]
    NoTag(String),
    #[error("image: {0}")]
    BadImage(ParseError),
    /// Its image has no registry digest for the tracked repository.
    #[error(
        "image: the container's image has no digest in `{repo}` (known as: {known}); \
         it was built here or pulled under another name: push it there, or pass the \
         `image` it was pulled as"
    )]
    NoDigest { repo: String, known: String },
    /// The spec built from it is refused by the same checks a create gets.
    #[error("{0}")]
    Invalid(ParseError),
}

/// What adoption would store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdoptPlan {
    pub image: ImageRef,
    /// The digest it runs now: desired and actual.
    pub digest: Digest,
    pub spec: WorkspaceSpec,
    /// Settings the spec cannot carry, each `Docker field: value`; adoption refuses while
    /// any remain unless forced.
    pub unrepresentable: Vec<String>,
}

/// Plans the adoption of `c` as workspace `name`, following `image` when given (else
/// the reference the container was started from).
pub fn plan(
    c: &RunningConfig,
    name: &WorkspaceName,
    image: Option<&ImageRef>,
) -> Result<AdoptPlan, AdoptError> {
    let image = match image {
        Some(i) => i.clone(),
        None => tracked(&c.spec.image)?,
    };
    let digest = running_digest(c, &image)?;
    let spec = spec_of(&c.spec, name);
    spec.validate().map_err(AdoptError::Invalid)?;
    Ok(AdoptPlan {
        image,
        digest,
        spec,
        unrepresentable: c.unrepresentable.clone(),
    })
}

/// The tag a container started from `reference` follows.
fn tracked(reference: &str) -> Result<ImageRef, AdoptError> {
    if reference.starts_with("sha256:") || reference.is_empty() {
        return Err(AdoptError::NoTag(reference.to_owned()));
    }
    let r = ImageRef::parse(reference).map_err(AdoptError::BadImage)?;
    if r.tag().is_none() {
        return Err(AdoptError::NoTag(reference.to_owned()));
    }
    let name = format!("{}:{}", r.name(), r.tag().unwrap_or("latest"));
    ImageRef::parse_tracked(&name).map_err(AdoptError::BadImage)
}

/// The digest of the running image in `image`'s repository.
fn running_digest(c: &RunningConfig, image: &ImageRef) -> Result<Digest, AdoptError> {
    let repo = image.name();
    for r in &c.repo_digests {
        let Ok(known) = ImageRef::parse(r) else {
            continue;
        };
        if known.name() == repo
            && let Some(d) = known.digest()
        {
            return Ok(d.clone());
        }
    }
    Err(AdoptError::NoDigest {
        repo,
        known: if c.repo_digests.is_empty() {
            "no registry".to_owned()
        } else {
            c.repo_digests.join(", ")
        },
    })
}

/// The workspace spec whose container is `c` (less sluice's own labels).
pub fn spec_of(c: &ContainerSpec, name: &WorkspaceName) -> WorkspaceSpec {
    let (network, networks) = match c.networks.as_slice() {
        [only] if only.aliases.is_empty() => (Some(only.network.clone()), Vec::new()),
        all => (
            None,
            all.iter()
                .map(|a| NetworkSpec {
                    name: a.network.clone(),
                    aliases: a.aliases.clone(),
                })
                .collect(),
        ),
    };
    WorkspaceSpec {
        env: c
            .env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e.clone(), String::new()),
            })
            .collect(),
        volumes: c
            .volumes
            .iter()
            .map(|(v, m)| VolumeMount {
                name: v.clone(),
                mount: m.clone(),
                adopt: true,
                read_only: c.read_only_mounts.contains(m),
                shared: false,
            })
            .collect(),
        ports: c
            .ports
            .iter()
            .map(|p| PortMapping {
                container: p.container,
                host: p.host,
                host_ip: Some(p.host_ip.clone()),
                protocol: (p.protocol != "tcp").then(|| p.protocol.clone()),
            })
            .collect(),
        command: c.cmd.clone(),
        health: None,
        restart: c.restart.as_ref().map(|r| match c.restart_retries {
            Some(n) => format!("{r}:{n}"),
            None => r.clone(),
        }),
        network,
        networks,
        container_name: (c.name != format!("sluice-{name}")).then(|| c.name.clone()),
        drift: crate::domain::spec::DriftAction::Correct,
        update_order: None,
        snapshot_on_start_first: false,
        labels: c
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("sluice."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        entrypoint: c.entrypoint.clone(),
        user: c.user.clone(),
        working_dir: c.working_dir.clone(),
        hostname: c.hostname.clone(),
        stop_signal: c.stop_signal.clone(),
        stop_timeout: c.stop_timeout,
        read_only_rootfs: c.read_only_rootfs,
        resources: resources(&c.limits),
        tmpfs: c.tmpfs.clone(),
        extra_hosts: c.extra_hosts.clone(),
        dns: c.dns.clone(),
        ulimits: c
            .ulimits
            .iter()
            .map(|(name, soft, hard)| Ulimit {
                name: name.clone(),
                soft: *soft,
                hard: *hard,
            })
            .collect(),
        sysctls: c.sysctls.clone(),
        log: c.log.as_ref().map(|(driver, options)| LogConfig {
            driver: driver.clone(),
            options: options.clone(),
        }),
        binds: c
            .binds
            .iter()
            .map(|(source, target, read_only)| BindMount {
                source: source.clone(),
                target: target.clone(),
                read_only: *read_only,
            })
            .collect(),
        cap_add: c.cap_add.clone(),
        cap_drop: c.cap_drop.clone(),
        security_opt: c.security_opt.clone(),
        // Not part of the container: an adopted workspace starts with nobody to mail.
        contacts: Vec::new(),
    }
}

fn resources(l: &Limits) -> Option<Resources> {
    let r = Resources {
        memory: l.memory,
        memory_swap: l.memory_swap,
        cpu_quota: l.cpu_quota,
        cpu_period: l.cpu_period,
        cpu_shares: l.cpu_shares,
        cpuset_cpus: l.cpuset_cpus.clone(),
        pids_limit: l.pids_limit,
        nano_cpus: l.nano_cpus,
    };
    (r != Resources::default()).then_some(r)
}

/// Labels the adopted container carries that name a sluice owner: it is managed already.
pub fn managed_by(labels: &BTreeMap<String, String>) -> Option<&str> {
    labels
        .get(crate::runtime::LABEL_WORKSPACE)
        .map(String::as_str)
        .filter(|_| {
            labels
                .get(crate::runtime::LABEL_MANAGED)
                .map(String::as_str)
                == Some("true")
        })
}

pub mod drift;

#[cfg(test)]
mod tests;
