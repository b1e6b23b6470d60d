//! Configuration drift, pure: which settings of a running container differ from the
//! container its workspace's spec asks for. Both sides are compared as `docker run`
//! would say them (the image's own defaults taken out), and what Docker fills in by
//! itself is not a difference: a swap limit it derived from the memory limit, log
//! options of the daemon's, `CAP_` prefixes, list order, the image reference (the
//! digest is compared apart).

use crate::runtime::{ContainerSpec, RunningConfig};

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn caps(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v
        .iter()
        .map(|c| c.to_ascii_uppercase().trim_start_matches("CAP_").to_owned())
        .collect();
    v.sort();
    v
}

fn restart(r: Option<&str>) -> Option<&str> {
    r.filter(|r| *r != "no")
}

/// The spec fields (`env`, `resources`, `networks`, ...) in which `running` differs from
/// `wanted`; empty when it runs as asked.
pub fn differences(running: &RunningConfig, wanted: &ContainerSpec) -> Vec<&'static str> {
    let w = wanted.clone().less_image(&running.image_defaults);
    let r = &running.spec;
    let mut out = Vec::new();
    let mut check = |field: &'static str, same: bool| {
        if !same && !out.contains(&field) {
            out.push(field);
        }
    };
    check("container_name", r.name == w.name);
    check("env", r.env == w.env);
    check("labels", r.labels == w.labels);
    check("command", r.cmd == w.cmd);
    check("entrypoint", r.entrypoint == w.entrypoint);
    check("user", r.user == w.user);
    check("working_dir", r.working_dir == w.working_dir);
    check("hostname", w.hostname.is_none() || r.hostname == w.hostname);
    check("stop_signal", r.stop_signal == w.stop_signal);
    check("stop_timeout", r.stop_timeout == w.stop_timeout);
    check("read_only_rootfs", r.read_only_rootfs == w.read_only_rootfs);
    let key =
        |p: &crate::runtime::PortSpec| (p.container, p.protocol.clone(), p.host, p.host_ip.clone());
    let ports = |s: &ContainerSpec| sorted(&s.ports.iter().map(key).collect::<Vec<_>>());
    check("ports", ports(r) == ports(&w));
    check(
        "volumes",
        sorted(&r.volumes) == sorted(&w.volumes)
            && sorted(&r.read_only_mounts) == sorted(&w.read_only_mounts),
    );
    check("binds", sorted(&r.binds) == sorted(&w.binds));
    check(
        "restart",
        restart(r.restart.as_deref()) == restart(w.restart.as_deref())
            && r.restart_retries == w.restart_retries,
    );
    let nets = |s: &ContainerSpec| {
        let mut n: Vec<(String, Vec<String>)> = s
            .networks
            .iter()
            .map(|a| (a.network.clone(), sorted(&a.aliases)))
            .collect();
        n.sort();
        n
    };
    let default_bridge = |s: &ContainerSpec| {
        s.networks.is_empty()
            || (s.networks.len() == 1
                && s.networks[0].network == "bridge"
                && s.networks[0].aliases.is_empty())
    };
    check(
        "networks",
        nets(r) == nets(&w) || (default_bridge(r) && default_bridge(&w)),
    );
    let (mut rl, mut wl) = (r.limits.clone(), w.limits.clone());
    if wl.memory_swap.is_none() {
        rl.memory_swap = None;
    }
    if wl.cpu_period.is_none() && wl.nano_cpus.is_some() {
        rl.cpu_period = None;
    }
    wl.pids_limit = wl.pids_limit.filter(|p| *p > 0);
    check("resources", rl == wl);
    check("tmpfs", r.tmpfs == w.tmpfs);
    check(
        "extra_hosts",
        sorted(&r.extra_hosts) == sorted(&w.extra_hosts),
    );
    check("dns", r.dns == w.dns);
    check("ulimits", sorted(&r.ulimits) == sorted(&w.ulimits));
    check("sysctls", r.sysctls == w.sysctls);
    let log_same = match (&w.log, &r.log) {
        (None, _) => true,
        (Some((wd, wo)), Some((rd, ro))) => {
            wd == rd && wo.iter().all(|(k, v)| ro.get(k) == Some(v))
        }
        (Some(_), None) => false,
    };
    check("log", log_same);
    check("cap_add", caps(&r.cap_add) == caps(&w.cap_add));
    check("cap_drop", caps(&r.cap_drop) == caps(&w.cap_drop));
    check(
        "security_opt",
        sorted(&r.security_opt) == sorted(&w.security_opt),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Attachment, ImageDefaults};

    fn base() -> ContainerSpec {
        let mut s = crate::runtime::contract::spec("acme", "127.0.0.1:5000/app@sha256:1");
        s.cap_add = vec!["NET_ADMIN".into()];
        s.limits.memory = Some(64 << 20);
        s.networks = vec![Attachment {
            network: "front".into(),
            aliases: vec!["web".into()],
        }];
        s
    }

    fn running(spec: ContainerSpec) -> RunningConfig {
        RunningConfig {
            id: "f".repeat(64),
            running: true,
            spec,
            image_defaults: ImageDefaults {
                env: vec!["PATH=/bin".into()],
                ..ImageDefaults::default()
            },
            repo_digests: Vec::new(),
            unrepresentable: Vec::new(),
        }
    }

    #[test]
    fn what_docker_fills_in_is_no_drift() {
        let wanted = base();
        let mut seen = wanted.clone();
        seen.cap_add = vec!["CAP_NET_ADMIN".into()];
        seen.limits.memory_swap = Some(128 << 20);
        seen.log = Some((
            "json-file".into(),
            [("max-file".to_owned(), "3".to_owned())].into(),
        ));
        seen.env.push("PATH=/bin".into());
        let seen = seen.less_image(&ImageDefaults {
            env: vec!["PATH=/bin".into()],
            ..ImageDefaults::default()
        });
        assert_eq!(differences(&running(seen), &wanted), Vec::<&str>::new());
    }

    #[test]
    fn a_container_recreated_with_other_flags_names_each_field() {
        let wanted = base();
        let mut seen = wanted.clone();
        seen.env.push("DEBUG=1".into());
        seen.limits.memory = Some(128 << 20);
        seen.networks[0].aliases.clear();
        seen.cap_add.clear();
        assert_eq!(
            differences(&running(seen), &wanted),
            vec!["env", "networks", "resources", "cap_add"]
        );
    }
}
