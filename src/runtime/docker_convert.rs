//! Conversions between sluice's container spec and bollard's types, and the error
//! helpers the Docker adapter (`docker.rs`) shares.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, NetworkingConfig,
    PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};

use super::{ContainerInfo, ContainerSpec, LABEL_MANAGED, RuntimeError};

/// Docker event filters for managed containers that die, stop or are destroyed: what
/// both the drift hint stream (`super::docker_events`) and `events_since` ask for.
pub(super) fn managed_exit_filters() -> HashMap<String, Vec<String>> {
    HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")]),
        (
            "event".to_owned(),
            vec!["die".to_owned(), "destroy".to_owned(), "stop".to_owned()],
        ),
    ])
}

pub(super) fn err(op: &'static str, target: &str) -> impl FnOnce(BollardError) -> RuntimeError {
    let target = target.to_owned();
    move |source| RuntimeError::Docker { op, target, source }
}

pub(super) fn is_status(e: &BollardError, codes: &[u16]) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if codes.contains(status_code))
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.display().to_string();
    move |source| RuntimeError::Io { path, source }
}

pub(super) fn restart_policy(name: Option<&str>, retries: Option<i64>) -> Option<RestartPolicy> {
    let name = match name? {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    };
    Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    })
}

pub(super) fn body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut ports: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        ports
            .entry(format!("{}/{}", p.container, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host.map(|h| h.to_string()).unwrap_or_default()),
            });
    }
    // Every mapped port is also declared exposed, as `docker run -p` does: a binding for a
    // port the image has no `EXPOSE` for is otherwise stored but never published.
    let mut exposed: Vec<String> = ports.keys().cloned().collect();
    exposed.sort();
    // The first network is the container's own (with its aliases, set at create); the
    // others are connected before it starts (`docker_config::connect_networks`).
    let primary = spec.networks.first();
    let networking_config = primary
        .filter(|a| !a.aliases.is_empty())
        .map(|a| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                a.network.clone(),
                EndpointSettings {
                    aliases: Some(a.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
    ContainerCreateBody {
        networking_config,
        image: Some(spec.image.clone()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        env: Some(spec.env.clone()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout.map(i64::from),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            binds: Some(
                spec.volumes
                    .iter()
                    .map(|(v, m)| {
                        if spec.read_only_mounts.contains(m) {
                            format!("{v}:{m}:ro")
                        } else {
                            format!("{v}:{m}")
                        }
                    })
                    .chain(spec.binds.iter().map(|(source, target, ro)| {
                        if *ro {
                            format!("{source}:{target}:ro")
                        } else {
                            format!("{source}:{target}")
                        }
                    }))
                    .collect(),
            ),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
            security_opt: (!spec.security_opt.is_empty()).then(|| spec.security_opt.clone()),
            port_bindings: Some(ports),
            restart_policy: restart_policy(spec.restart.as_deref(), spec.restart_retries),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone().into_iter().collect()),
            extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
            dns: (!spec.dns.is_empty()).then(|| spec.dns.clone()),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(name, soft, hard)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect()
            }),
            sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone().into_iter().collect()),
            log_config: spec
                .log
                .as_ref()
                .map(|(driver, options)| HostConfigLogConfig {
                    typ: Some(driver.clone()),
                    config: Some(options.clone().into_iter().collect()),
                }),
            network_mode: primary.map(|a| a.network.clone()),
            readonly_rootfs: spec.read_only_rootfs.then_some(true),
            memory: spec.limits.memory,
            memory_swap: spec.limits.memory_swap,
            cpu_quota: spec.limits.cpu_quota,
            cpu_period: spec.limits.cpu_period,
            cpu_shares: spec.limits.cpu_shares,
            cpuset_cpus: spec.limits.cpuset_cpus.clone(),
            pids_limit: spec.limits.pids_limit,
            nano_cpus: spec.limits.nano_cpus,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn info_from_inspect(c: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let labels: BTreeMap<String, String> = c
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let net = c.network_settings.unwrap_or_default();
    let attached = net.networks.unwrap_or_default();
    let networks = attached.keys().cloned().collect();
    let ip = attached
        .into_values()
        .filter_map(|n| n.ip_address)
        .find(|ip| !ip.is_empty());
    let mut host_ports = BTreeMap::new();
    for (k, v) in net.ports.unwrap_or_default() {
        let Some(port) = k.split('/').next().and_then(|p| p.parse::<u16>().ok()) else {
            continue;
        };
        if let Some(hp) = v
            .unwrap_or_default()
            .into_iter()
            .filter_map(|b| b.host_port.and_then(|p| p.parse::<u16>().ok()))
            .next()
        {
            host_ports.insert(port, hp);
        }
    }
    ContainerInfo {
        networks,
        restart_count: c.restart_count.unwrap_or(0),
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        labels,
        running: state.running.unwrap_or(false),
        exit_code: state.exit_code,
        health: state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty() && s != "none"),
        ip,
        host_ports,
    }
}
