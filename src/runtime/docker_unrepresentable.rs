//! What a container's `docker inspect` shows that a workspace spec cannot carry: each
//! setting away from Docker's default (`--privileged`, `-t`, devices, a PID mode, ...)
//! named as `Docker field: value`, so adoption can refuse it or list what `force` gives
//! up. Read by `docker_config`.

use std::collections::HashMap;

use bollard::models::{ContainerConfig, HostConfig, ImageConfig};

use super::docker_config::{nonempty, nonzero};

pub(super) fn config_oddities(
    cfg: &ContainerConfig,
    img: &ImageConfig,
    host: &HostConfig,
    odd: &mut Vec<String>,
) {
    let flag = |on: Option<bool>, what: &str, odd: &mut Vec<String>| {
        if on == Some(true) {
            odd.push(what.to_owned());
        }
    };
    flag(cfg.tty, "Config.Tty: true (docker run -t)", odd);
    flag(
        cfg.open_stdin,
        "Config.OpenStdin: true (docker run -i)",
        odd,
    );
    if let Some(d) = nonempty(cfg.domainname.clone()) {
        odd.push(format!("Config.Domainname: {d}"));
    }
    if cfg.healthcheck.is_some() && cfg.healthcheck != img.healthcheck {
        odd.push("Config.Healthcheck: a HEALTHCHECK set on docker run (--health-cmd)".to_owned());
    }
    let bound: Vec<&String> = host.port_bindings.iter().flat_map(HashMap::keys).collect();
    let from_image = img.exposed_ports.clone().unwrap_or_default();
    for p in cfg.exposed_ports.iter().flatten() {
        if !bound.contains(&p) && !from_image.contains(p) {
            odd.push(format!("Config.ExposedPorts: {p} (docker run --expose)"));
        }
    }
}

pub(super) fn host_oddities(h: &HostConfig, odd: &mut Vec<String>) {
    let mut named = |set: bool, what: String| {
        if set {
            odd.push(what);
        }
    };
    named(
        h.privileged == Some(true),
        "HostConfig.Privileged: true".into(),
    );
    named(
        h.auto_remove == Some(true),
        "HostConfig.AutoRemove: true (docker run --rm)".into(),
    );
    named(h.init == Some(true), "HostConfig.Init: true".into());
    named(
        h.oom_kill_disable == Some(true),
        "HostConfig.OomKillDisable: true".into(),
    );
    named(
        h.publish_all_ports == Some(true),
        "HostConfig.PublishAllPorts: true (-P)".into(),
    );
    for (field, list) in [
        ("Devices", h.devices.as_ref().map_or(0, Vec::len)),
        (
            "DeviceRequests",
            h.device_requests.as_ref().map_or(0, Vec::len),
        ),
        (
            "DeviceCgroupRules",
            h.device_cgroup_rules.as_ref().map_or(0, Vec::len),
        ),
        ("GroupAdd", h.group_add.as_ref().map_or(0, Vec::len)),
        ("VolumesFrom", h.volumes_from.as_ref().map_or(0, Vec::len)),
        ("Links", h.links.as_ref().map_or(0, Vec::len)),
        ("DnsOptions", h.dns_options.as_ref().map_or(0, Vec::len)),
        ("DnsSearch", h.dns_search.as_ref().map_or(0, Vec::len)),
        (
            "BlkioWeightDevice",
            h.blkio_weight_device.as_ref().map_or(0, Vec::len),
        ),
        (
            "BlkioDeviceReadBps",
            h.blkio_device_read_bps.as_ref().map_or(0, Vec::len),
        ),
        (
            "BlkioDeviceWriteBps",
            h.blkio_device_write_bps.as_ref().map_or(0, Vec::len),
        ),
        ("StorageOpt", h.storage_opt.as_ref().map_or(0, HashMap::len)),
    ] {
        named(list > 0, format!("HostConfig.{field}: set"));
    }
    for (field, v) in [
        ("PidMode", &h.pid_mode),
        ("UTSMode", &h.uts_mode),
        ("UsernsMode", &h.userns_mode),
        ("CgroupParent", &h.cgroup_parent),
        ("Cgroup", &h.cgroup),
        ("CpusetMems", &h.cpuset_mems),
        ("VolumeDriver", &h.volume_driver),
    ] {
        if let Some(v) = nonempty(v.clone()) {
            odd.push(format!("HostConfig.{field}: {v}"));
        }
    }
    if let Some(m) = nonempty(h.ipc_mode.clone()).filter(|m| m != "private" && m != "shareable") {
        odd.push(format!("HostConfig.IpcMode: {m}"));
    }
    if let Some(r) = nonempty(h.runtime.clone()).filter(|r| r != "runc") {
        odd.push(format!("HostConfig.Runtime: {r}"));
    }
    if let Some(s) = nonzero(h.shm_size).filter(|s| *s != 64 * 1024 * 1024) {
        odd.push(format!("HostConfig.ShmSize: {s}"));
    }
    for (field, v) in [
        ("OomScoreAdj", h.oom_score_adj),
        ("MemoryReservation", h.memory_reservation),
        ("CpuRealtimePeriod", h.cpu_realtime_period),
        ("CpuRealtimeRuntime", h.cpu_realtime_runtime),
        ("CpuCount", h.cpu_count),
        ("CpuPercent", h.cpu_percent),
        ("BlkioWeight", h.blkio_weight.map(i64::from)),
        ("MemorySwappiness", h.memory_swappiness.filter(|s| *s != -1)),
    ] {
        if let Some(v) = nonzero(v) {
            odd.push(format!("HostConfig.{field}: {v}"));
        }
    }
}
