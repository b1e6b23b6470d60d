//! A container's configuration read back from Docker — the reverse of
//! `docker_convert::body`: `docker inspect` of the container less what its image
//! supplies, with every setting sluice's spec cannot carry named. Also attaching a
//! created container to its further networks.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{
    ContainerConfig, ContainerInspectResponse, EndpointSettings, HostConfig, ImageInspect,
    NetworkConnectRequest,
};
use bollard::query_parameters::ListContainersOptionsBuilder;

use super::docker_convert::{err, is_status};
use super::docker_unrepresentable::{config_oddities, host_oddities};
use super::{
    Attachment, ContainerSpec, ImageDefaults, Limits, PortSpec, RunningConfig, RuntimeError,
};

/// Reads `name` and its image; `None` when no container has that name or id.
pub(super) async fn inspect_config(
    docker: &Docker,
    name: &str,
) -> Result<Option<RunningConfig>, RuntimeError> {
    let c = match docker.inspect_container(name, None).await {
        Ok(c) => c,
        Err(e) if is_status(&e, &[404]) => return Ok(None),
        Err(e) => return Err(err("inspect", name)(e)),
    };
    let image_id = c.image.clone().unwrap_or_default();
    let image = match docker.inspect_image(&image_id).await {
        Ok(i) => Some(i),
        Err(e) if is_status(&e, &[404]) => None,
        Err(e) => return Err(err("inspect image", &image_id)(e)),
    };
    Ok(Some(running_config(c, image)))
}

impl super::DockerRuntime {
    /// Names of the running containers carrying `label` (`KEY` or `KEY=VALUE`), sorted:
    /// what a bulk adoption selects.
    pub async fn running_with_label(&self, label: &str) -> Result<Vec<String>, RuntimeError> {
        running_with_label(self.docker(), label).await
    }
}

async fn running_with_label(docker: &Docker, label: &str) -> Result<Vec<String>, RuntimeError> {
    let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    let opts = ListContainersOptionsBuilder::default()
        .filters(&filters)
        .build();
    let mut names: Vec<String> = docker
        .list_containers(Some(opts))
        .await
        .map_err(err("list containers", label))?
        .into_iter()
        .filter_map(|c| c.names?.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Attaches the created (not yet started) container to every network after the first,
/// with its aliases there; one it is already on is left alone.
pub(super) async fn connect_networks(
    docker: &Docker,
    spec: &ContainerSpec,
) -> Result<(), RuntimeError> {
    for a in spec.networks.iter().skip(1) {
        let req = NetworkConnectRequest {
            container: spec.name.clone(),
            endpoint_config: Some(EndpointSettings {
                aliases: (!a.aliases.is_empty()).then(|| a.aliases.clone()),
                ..Default::default()
            }),
        };
        match docker.connect_network(&a.network, req).await {
            Ok(()) => {}
            Err(e) if is_status(&e, &[403, 409]) => {}
            Err(e) => return Err(err("connect network", &a.network)(e)),
        }
    }
    Ok(())
}

fn some_if<T>(v: Option<T>, keep: impl Fn(&T) -> bool) -> Option<T> {
    v.filter(|x| keep(x))
}

pub(super) fn nonzero(v: Option<i64>) -> Option<i64> {
    some_if(v, |x| *x != 0)
}

pub(super) fn nonempty(v: Option<String>) -> Option<String> {
    some_if(v, |x| !x.is_empty())
}

/// The container's configuration with its image's defaults taken out.
pub(super) fn running_config(
    c: ContainerInspectResponse,
    image: Option<ImageInspect>,
) -> RunningConfig {
    let id = c.id.clone().unwrap_or_default();
    let cfg = c.config.clone().unwrap_or_default();
    let host = c.host_config.clone().unwrap_or_default();
    let img = image
        .as_ref()
        .and_then(|i| i.config.clone())
        .unwrap_or_default();
    let mut odd = Vec::new();
    let defaults = ImageDefaults {
        env: img.env.clone().unwrap_or_default(),
        labels: img.labels.clone().unwrap_or_default().into_iter().collect(),
        cmd: img.cmd.clone(),
        entrypoint: img.entrypoint.clone(),
        user: img.user.clone(),
        working_dir: img.working_dir.clone(),
        stop_signal: img.stop_signal.clone(),
    };
    if cfg.entrypoint.is_none() && img.entrypoint.is_some() {
        odd.push("Config.Entrypoint: the image's entrypoint was cleared".to_owned());
    }
    config_oddities(&cfg, &img, &host, &mut odd);
    host_oddities(&host, &mut odd);
    let (volumes, read_only_mounts, binds) = mounts(&c, &mut odd);
    let ports = ports(&host);
    let networks = networks(&c, &cfg, &host, &mut odd);
    let restart = host
        .restart_policy
        .as_ref()
        .and_then(|r| r.name)
        .map(|n| n.to_string());
    let restart = some_if(restart, |n| !n.is_empty() && n != "no");
    let restart_retries = host
        .restart_policy
        .as_ref()
        .and_then(|r| r.maximum_retry_count)
        .filter(|n| *n > 0 && restart.as_deref() == Some("on-failure"));
    let hostname = nonempty(cfg.hostname.clone()).filter(|h| !id.starts_with(h.as_str()));
    let spec = ContainerSpec {
        name: c
            .name
            .clone()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: cfg.image.clone().unwrap_or_default(),
        labels: cfg.labels.clone().unwrap_or_default().into_iter().collect(),
        env: cfg.env.clone().unwrap_or_default(),
        cmd: cfg.cmd.clone(),
        volumes,
        ports,
        restart,
        networks,
        entrypoint: cfg.entrypoint.clone(),
        user: cfg.user.clone(),
        working_dir: cfg.working_dir.clone(),
        hostname,
        stop_signal: cfg.stop_signal.clone(),
        stop_timeout: cfg.stop_timeout.and_then(|t| u32::try_from(t).ok()),
        read_only_rootfs: host.readonly_rootfs.unwrap_or(false),
        limits: Limits {
            memory: nonzero(host.memory),
            memory_swap: nonzero(host.memory_swap),
            cpu_quota: nonzero(host.cpu_quota),
            cpu_period: nonzero(host.cpu_period),
            cpu_shares: nonzero(host.cpu_shares),
            cpuset_cpus: nonempty(host.cpuset_cpus.clone()),
            pids_limit: host.pids_limit.filter(|p| *p > 0),
            nano_cpus: nonzero(host.nano_cpus),
        },
        read_only_mounts,
        restart_retries,
        tmpfs: host.tmpfs.clone().unwrap_or_default().into_iter().collect(),
        extra_hosts: host.extra_hosts.clone().unwrap_or_default(),
        dns: host.dns.clone().unwrap_or_default(),
        ulimits: host
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                (
                    u.name.unwrap_or_default(),
                    u.soft.unwrap_or(0),
                    u.hard.unwrap_or(0),
                )
            })
            .collect(),
        sysctls: host
            .sysctls
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        log: host.log_config.clone().and_then(|l| {
            Some((
                nonempty(l.typ)?,
                l.config.unwrap_or_default().into_iter().collect(),
            ))
        }),
        binds,
        cap_add: host.cap_add.clone().unwrap_or_default(),
        cap_drop: host.cap_drop.clone().unwrap_or_default(),
        security_opt: host.security_opt.clone().unwrap_or_default(),
    };
    RunningConfig {
        id,
        running: c.state.and_then(|s| s.running).unwrap_or(false),
        spec: spec.less_image(&defaults),
        image_defaults: defaults,
        repo_digests: image.and_then(|i| i.repo_digests).unwrap_or_default(),
        unrepresentable: odd,
    }
}

type Mounts = (
    Vec<(String, String)>,
    Vec<String>,
    Vec<(String, String, bool)>,
);

fn mounts(c: &ContainerInspectResponse, odd: &mut Vec<String>) -> Mounts {
    let (mut volumes, mut read_only, mut binds) = (Vec::new(), Vec::new(), Vec::new());
    for m in c.mounts.iter().flatten() {
        let dest = m.destination.clone().unwrap_or_default();
        let rw = m.rw.unwrap_or(true);
        match m.typ.as_deref() {
            Some("volume") => {
                volumes.push((m.name.clone().unwrap_or_default(), dest.clone()));
                if !rw {
                    read_only.push(dest);
                }
            }
            Some("bind") => binds.push((m.source.clone().unwrap_or_default(), dest, !rw)),
            other => odd.push(format!(
                "Mounts: a {} mount at {dest}",
                other.unwrap_or("?")
            )),
        }
    }
    volumes.sort_by(|a, b| a.1.cmp(&b.1));
    binds.sort_by(|a, b| a.1.cmp(&b.1));
    (volumes, read_only, binds)
}

fn ports(host: &HostConfig) -> Vec<PortSpec> {
    let mut out = Vec::new();
    for (key, bindings) in host.port_bindings.iter().flatten() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.iter().flatten() {
            out.push(PortSpec {
                container,
                protocol: proto.to_owned(),
                host: b.host_port.as_deref().and_then(|p| p.parse().ok()),
                host_ip: b.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| (a.container, &a.protocol).cmp(&(b.container, &b.protocol)));
    out
}

fn networks(
    c: &ContainerInspectResponse,
    cfg: &ContainerConfig,
    host: &HostConfig,
    odd: &mut Vec<String>,
) -> Vec<Attachment> {
    let id = c.id.clone().unwrap_or_default();
    let mode = host.network_mode.clone().unwrap_or_default();
    let all = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default();
    if mode == "host" || mode == "none" || mode.starts_with("container:") {
        odd.push(format!("HostConfig.NetworkMode: {mode}"));
        return Vec::new();
    }
    let primary = if mode.is_empty() || mode == "default" {
        "bridge".to_owned()
    } else {
        mode
    };
    let attach = |net: &str, e: Option<&EndpointSettings>, odd: &mut Vec<String>| {
        if e.and_then(|e| e.ipam_config.as_ref())
            .is_some_and(|i| i.ipv4_address.is_some() || i.ipv6_address.is_some())
        {
            odd.push(format!(
                "NetworkSettings.Networks.{net}: a fixed address (--ip)"
            ));
        }
        let mut aliases: Vec<String> = e
            .and_then(|e| e.aliases.clone())
            .unwrap_or_default()
            .into_iter()
            // Docker adds the short id and the hostname by itself.
            .filter(|a| !id.starts_with(a.as_str()) && Some(a) != cfg.hostname.as_ref())
            .collect();
        aliases.dedup();
        Attachment {
            network: net.to_owned(),
            aliases,
        }
    };
    let mut out = vec![attach(&primary, all.get(&primary), odd)];
    let mut others: Vec<&String> = all.keys().filter(|k| **k != primary).collect();
    others.sort();
    for n in others {
        out.push(attach(n, all.get(n), odd));
    }
    if out.len() == 1 && out[0].network == "bridge" && out[0].aliases.is_empty() {
        return Vec::new();
    }
    out
}
