//! The parts of a workspace's container spec about its process and its limits: how it
//! starts (entrypoint, user, working directory, hostname, stop signal), a read-only root
//! filesystem, and the resources Docker enforces. Each value is checked here, at the
//! edge, so a refusal names the field and nothing reaches Docker that it would refuse.

use serde::{Deserialize, Serialize};

use super::spec::WorkspaceSpec;

/// The smallest memory limit Docker accepts.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// Resource limits, each as Docker's `HostConfig` field of the same meaning.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in bytes (at least 6 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Memory plus swap in bytes (at least `memory`), or -1 for unlimited swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// CPU time in microseconds per `cpu_period` (1000 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// The CFS period in microseconds (1000–1000000; Docker's default is 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// Relative CPU weight (2–262144; Docker's default is 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// CPUs the container may run on, e.g. `0-1,3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// Most processes the container may hold (1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// CPUs in billionths of a CPU (`docker run --cpus 0.5` is 500000000); not with
    /// `cpu_quota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
}

/// A refused value: (field, value, reason).
pub type Refusal = (String, String, &'static str);

/// A refusal of `value` in `field`, shared by the spec's checkers.
pub(super) fn refuse(field: &str, value: impl ToString, reason: &'static str) -> Refusal {
    (field.to_owned(), value.to_string(), reason)
}

/// Checks the process and limit fields of `spec`.
pub fn check(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    if let Some(e) = &spec.entrypoint {
        if e.is_empty() {
            return Err(refuse(
                "entrypoint",
                "[]",
                "must name a program (leave it out to keep the image's)",
            ));
        }
        if e.iter().any(|a| a.contains('\0')) {
            return Err(refuse(
                "entrypoint",
                e.join(" "),
                "must not contain NUL bytes",
            ));
        }
    }
    if let Some(u) = &spec.user {
        check_user(u).map_err(|r| refuse("user", u, r))?;
    }
    if let Some(d) = &spec.working_dir
        && (!d.starts_with('/') || d.contains('\0') || d.len() > 4096)
    {
        return Err(refuse(
            "working_dir",
            d,
            "must be an absolute path (start with `/`)",
        ));
    }
    if let Some(h) = &spec.hostname {
        check_hostname(h).map_err(|r| refuse("hostname", h, r))?;
    }
    if let Some(s) = &spec.stop_signal {
        check_signal(s).map_err(|r| refuse("stop_signal", s, r))?;
    }
    if let Some(t) = spec.stop_timeout
        && t > 3600
    {
        return Err(refuse("stop_timeout", t, "must be 0-3600 seconds"));
    }
    if let Some(r) = &spec.resources {
        check_resources(r)?;
    }
    Ok(())
}

/// `NAME`, `UID`, `NAME:GROUP` or `UID:GID`: no spaces, controls or second colon.
fn check_user(u: &str) -> Result<(), &'static str> {
    let ok = !u.is_empty()
        && u.len() <= 256
        && u.matches(':').count() <= 1
        && !u.starts_with(':')
        && !u.ends_with(':')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err("must be NAME, UID, NAME:GROUP or UID:GID (letters, digits, `_`, `-`, `.`)")
    }
}

/// One RFC 1123 label: what Docker accepts as a container's hostname.
fn check_hostname(h: &str) -> Result<(), &'static str> {
    let ok = !h.is_empty()
        && h.len() <= 63
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !h.starts_with('-')
        && !h.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("must be 1-63 letters, digits or `-`, not starting or ending with `-`")
    }
}

/// `SIGTERM`-style names or a number 1–64.
fn check_signal(s: &str) -> Result<(), &'static str> {
    let named = s.len() > 3
        && s.len() <= 16
        && s.starts_with("SIG")
        && s[3..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-'));
    let numbered = s.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n));
    if named || numbered {
        Ok(())
    } else {
        Err("must be a signal name such as SIGTERM or SIGQUIT, or a number 1-64")
    }
}

fn check_resources(r: &Resources) -> Result<(), Refusal> {
    if let Some(m) = r.memory
        && m < MIN_MEMORY
    {
        return Err(refuse(
            "resources.memory",
            m,
            "must be at least 6291456 bytes (6 MiB)",
        ));
    }
    if let Some(s) = r.memory_swap {
        let Some(m) = r.memory else {
            return Err(refuse(
                "resources.memory_swap",
                s,
                "needs resources.memory as well",
            ));
        };
        if s != -1 && s < m {
            return Err(refuse(
                "resources.memory_swap",
                s,
                "must be at least resources.memory (memory plus swap), or -1 for unlimited swap",
            ));
        }
    }
    if let Some(q) = r.cpu_quota
        && q < 1000
    {
        return Err(refuse(
            "resources.cpu_quota",
            q,
            "must be at least 1000 microseconds",
        ));
    }
    if let Some(p) = r.cpu_period
        && !(1000..=1_000_000).contains(&p)
    {
        return Err(refuse(
            "resources.cpu_period",
            p,
            "must be 1000-1000000 microseconds",
        ));
    }
    if let Some(s) = r.cpu_shares
        && !(2..=262_144).contains(&s)
    {
        return Err(refuse("resources.cpu_shares", s, "must be 2-262144"));
    }
    if let Some(c) = &r.cpuset_cpus {
        let ok = !c.is_empty()
            && c.split(',').all(|part| {
                let mut ends = part.splitn(2, '-');
                let lo = ends.next().and_then(|n| n.parse::<u16>().ok());
                match (lo, ends.next()) {
                    (Some(_), None) => true,
                    (Some(lo), Some(hi)) => hi.parse::<u16>().is_ok_and(|hi| hi >= lo),
                    _ => false,
                }
            });
        if !ok {
            return Err(refuse(
                "resources.cpuset_cpus",
                c,
                "must list CPUs as numbers and ranges, e.g. `0-1,3`",
            ));
        }
    }
    if let Some(p) = r.pids_limit
        && p < 1
    {
        return Err(refuse("resources.pids_limit", p, "must be at least 1"));
    }
    if let Some(n) = r.nano_cpus {
        if n < 10_000_000 {
            return Err(refuse(
                "resources.nano_cpus",
                n,
                "must be at least 10000000 (0.01 CPU)",
            ));
        }
        if r.cpu_quota.is_some() || r.cpu_period.is_some() {
            return Err(refuse(
                "resources.nano_cpus",
                n,
                "conflicts with resources.cpu_quota and cpu_period: name one",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "spec_process_tests.rs"]
mod tests;
