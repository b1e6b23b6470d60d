//! The parts of a workspace's container spec about how it meets its host: the restart
//! policy's retries, tmpfs mounts, extra `/etc/hosts` entries, DNS servers, ulimits,
//! namespaced sysctls and the log driver. Each value is checked here, at the edge, so a
//! refusal names the field and nothing reaches Docker that it would refuse.

use std::collections::BTreeMap;
// `core::net` holds only address values (no sockets): parsing one is pure.
use core::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::spec::WorkspaceSpec;
use super::spec_process::{Refusal, refuse};

/// One `ulimit`: Docker's `--ulimit NAME=SOFT:HARD`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// The container's log driver and its options (`docker run --log-driver --log-opt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The log drivers built into Docker.
pub const LOG_DRIVERS: &[&str] = &[
    "json-file",
    "local",
    "journald",
    "syslog",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "gcplogs",
    "none",
];

/// The resource names Linux (and Docker) know for a ulimit.
pub const ULIMITS: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Sysctls a container may set: those namespaced to it, never the host's.
pub const SYSCTL_PREFIXES: &[&str] = &[
    "net.",
    "kernel.shm",
    "kernel.msg",
    "kernel.sem",
    "fs.mqueue.",
];

/// The restart policy and its retries: `no`, `always`, `unless-stopped`, `on-failure`
/// or `on-failure:N` (N 1–1000).
pub fn parse_restart(r: &str) -> Option<(&str, Option<i64>)> {
    match r.split_once(':') {
        Some(("on-failure", n)) => n
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .map(|n| ("on-failure", Some(n))),
        Some(_) => None,
        None => matches!(r, "no" | "always" | "unless-stopped" | "on-failure").then_some((r, None)),
    }
}

/// Checks the host-facing fields of `spec`.
pub fn check(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    if let Some(r) = &spec.restart
        && parse_restart(r).is_none()
    {
        return Err(refuse(
            "restart",
            r,
            "must be no, always, unless-stopped, on-failure or on-failure:N (N 1-1000)",
        ));
    }
    for (path, options) in &spec.tmpfs {
        let field = format!("tmpfs.{path}");
        // The same rule as a volume's mount: absolute, not `/`, no `.`/`..`, `:` or `,`.
        super::spec::check_mount_path(path).map_err(|r| refuse(&field, path, r))?;
        if spec
            .volumes
            .iter()
            .any(|v| v.mount.trim_end_matches('/') == path.trim_end_matches('/'))
        {
            return Err(refuse(&field, path, "is also a volume's mount"));
        }
        let ok = options
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b',' | b'_' | b'-'));
        if !ok {
            return Err(refuse(
                &field,
                options,
                "options are comma-separated words such as size=64m,mode=1777",
            ));
        }
    }
    for (i, h) in spec.extra_hosts.iter().enumerate() {
        let field = format!("extra_hosts[{i}]");
        let Some((name, ip)) = h.split_once(':') else {
            return Err(refuse(&field, h, "must be HOST:IP"));
        };
        let name_ok = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !name_ok {
            return Err(refuse(
                &field,
                h,
                "the host name may hold letters, digits, `-` and `.`",
            ));
        }
        if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
            return Err(refuse(
                &field,
                h,
                "must end in an IP address or host-gateway",
            ));
        }
    }
    for (i, d) in spec.dns.iter().enumerate() {
        if d.parse::<IpAddr>().is_err() {
            return Err(refuse(&format!("dns[{i}]"), d, "must be an IP address"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, u) in spec.ulimits.iter().enumerate() {
        let field = format!("ulimits[{i}]");
        if !ULIMITS.contains(&u.name.as_str()) {
            return Err(refuse(
                &field,
                &u.name,
                "must name a resource such as nofile, nproc, core, memlock or stack",
            ));
        }
        if !seen.insert(u.name.as_str()) {
            return Err(refuse(&field, &u.name, "is set twice"));
        }
        if u.soft < -1 || u.hard < -1 || (u.hard != -1 && (u.soft == -1 || u.soft > u.hard)) {
            return Err(refuse(
                &field,
                format!("{}:{}", u.soft, u.hard),
                "soft must be at most hard (-1: unlimited)",
            ));
        }
    }
    for (k, v) in &spec.sysctls {
        let field = format!("sysctls.{k}");
        if !SYSCTL_PREFIXES.iter().any(|p| k.starts_with(p))
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(refuse(
                &field,
                k,
                "only the container's own sysctls: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*",
            ));
        }
        if v.is_empty() || v.contains('\0') {
            return Err(refuse(&field, v, "must have a value"));
        }
    }
    if let Some(log) = &spec.log {
        if !LOG_DRIVERS.contains(&log.driver.as_str()) {
            return Err(refuse(
                "log.driver",
                &log.driver,
                "must be a built-in driver: json-file, local, journald, syslog, gelf, fluentd, awslogs, splunk, gcplogs or none",
            ));
        }
        for (k, v) in &log.options {
            if k.is_empty() || k.contains(['\0', '=']) || v.contains('\0') {
                return Err(refuse(
                    &format!("log.options.{k}"),
                    v,
                    "must be a name and a value",
                ));
            }
        }
    }
    Ok(())
}
