//! Exact recreate: the container sluice creates for a new digest — on an update and on
//! the rollback of a failed one — is configured exactly like the one it replaces,
//! compared field by field in `docker inspect`. Only the documented differences (id,
//! image, created time, state, Docker's per-container paths and addresses, the
//! `sluice.digest` label) may differ.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::TestApi;
use crate::support::{DockerCleanup, build_fixture, registry, run, unique};

pub(crate) fn inspect(container: &str) -> Value {
    let out = run(Command::new("docker").args(["inspect", container]));
    let all: Value = serde_json::from_str(&out).expect("docker inspect prints JSON");
    all[0].clone()
}

/// What must be equal between a container and its replacement: its configuration less
/// what its image supplies (a new image may bring new labels, env or defaults; that is
/// the image's to change, not the recreate's).
pub(crate) fn configuration(c: &Value) -> Value {
    let image = {
        let id = c["Image"].as_str().unwrap();
        let out = run(Command::new("docker").args(["image", "inspect", id]));
        let all: Value = serde_json::from_str(&out).unwrap();
        all[0]["Config"].clone()
    };
    let mut config = c["Config"].clone();
    config.as_object_mut().unwrap().remove("Image");
    // Docker's own hostname is the container id's prefix; one the spec sets must stay.
    let hostname = config["Hostname"].as_str().unwrap_or_default().to_owned();
    if c["Id"].as_str().unwrap_or_default().starts_with(&hostname) {
        config.as_object_mut().unwrap().remove("Hostname");
    }
    let labels = config["Labels"].as_object_mut().unwrap();
    labels.remove("sluice.digest");
    labels.retain(|k, v| image["Labels"].get(k) != Some(v));
    let from_image: Vec<Value> = image["Env"].as_array().cloned().unwrap_or_default();
    if let Some(env) = config["Env"].as_array_mut() {
        env.retain(|e| !from_image.contains(e));
    }
    for field in [
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Healthcheck",
        "StopSignal",
    ] {
        if config.get(field).is_some() && config[field] == image[field] {
            config[field] = json!("<from the image>");
        }
    }
    // Docker lists mounts in no stable order: compare them sorted by destination.
    let mut mounts: Vec<Value> = c["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            json!([
                m["Type"],
                m["Name"],
                m["Source"],
                m["Destination"],
                m["RW"],
                m["Mode"]
            ])
        })
        .collect();
    mounts.sort_by_key(|m| m[3].to_string());
    let networks: Value = c["NetworkSettings"]["Networks"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, n)| {
            let mut aliases: Vec<String> = n["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                // Docker adds the container's short id as an alias on user networks.
                .filter(|a| !c["Id"].as_str().unwrap_or_default().starts_with(a.as_str()))
                .collect();
            aliases.sort();
            (name.clone(), json!(aliases))
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    // Binds are a set to Docker; the docker CLI writes them in no stable order.
    let mut host = c["HostConfig"].clone();
    if let Some(binds) = host["Binds"].as_array_mut() {
        binds.sort_by_key(Value::to_string);
    }
    json!({
        "Name": c["Name"],
        "Config": config,
        "HostConfig": host,
        "Mounts": mounts,
        "Networks": networks,
    })
}

/// Every differing field, as `path: old != new`.
pub(crate) fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

pub(crate) async fn wait_for_digest(api: &TestApi, name: &str, digest: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, w) = api
            .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{w}");
        if w["actual_digest"] == digest && w["state"] == state {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not reach {digest} / {state}: {w}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn an_update_and_a_rollback_recreate_the_container_exactly() {
    let repo = format!("{}/{}/app", registry(), unique("fx-fidelity"));
    let v1 = build_fixture("good", "v1", &format!("{repo}:v1")).to_string();
    let v2 = build_fixture("good", "v2", &format!("{repo}:v2")).to_string();
    let bad = build_fixture("bad-health", "v3", &format!("{repo}:v3")).to_string();
    let name = unique("fidelity");
    let network = unique("sluice-fid-net");
    let back = unique("sluice-fid-back");
    for n in [&network, &back] {
        run(Command::new("docker").args(["network", "create", "--label", "sluice.test=1", n]));
    }
    let _networks = (NetworkGuard(network.clone()), NetworkGuard(back.clone()));
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup.volumes.push(format!("{name}-data"));
    cleanup.volumes.push(format!("{name}-ro"));
    for v in ["v1", "v2", "v3"] {
        cleanup.images.push(format!("{repo}:{v}"));
    }
    let host_dir = tempfile::tempdir().unwrap();
    let shared = host_dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let prefix = host_dir.path().to_owned();
    let api = TestApi::start_with(move |s| {
        s.workspaces.allowed_bind_prefixes = vec![prefix];
        s.update.min_healthy_time = Duration::from_millis(500);
        s.update.healthy_deadline = Duration::from_secs(8);
    })
    .await;
    api.track_workspace(&name);
    let body = json!({
        "name": name, "image": format!("{repo}:v1"), "update_mode": "manual",
        "env": {"GREETING": "hello", "EMPTY": ""},
        "volumes": [{"name": format!("{name}-data"), "mount": "/data"},
                    {"name": format!("{name}-ro"), "mount": "/ro", "read_only": true}],
        "ports": [{"container": 8080, "host_ip": "127.0.0.1"},
                  {"container": 5353, "protocol": "udp", "host_ip": "127.0.0.1"}],
        "command": ["/fixture/entrypoint.sh"],
        "restart": "on-failure:3",
        "tmpfs": {"/run": "size=16m"},
        "extra_hosts": ["db.internal:10.0.0.5"],
        "dns": ["10.0.0.53"],
        "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
        "sysctls": {"net.core.somaxconn": "1024"},
        "log": {"driver": "json-file", "options": {"max-size": "1m"}},
        "binds": [{"source": shared.to_string_lossy(), "target": "/shared", "read_only": true}],
        "cap_add": ["NET_ADMIN"],
        "cap_drop": ["CAP_MKNOD"],
        "security_opt": ["no-new-privileges"],
        "networks": [{"name": network, "aliases": ["web", "tenant-web"]},
                     {"name": back, "aliases": ["api"]}],
        "labels": {"team": "fidelity", "tier-note": "a b"},
        "health": {"http": {"port": 8080, "path": "/health"}},
        "entrypoint": ["/bin/sh"],
        "user": "1000:1000",
        "working_dir": "/fixture",
        "hostname": "tenant-fidelity",
        "stop_signal": "SIGINT",
        "stop_timeout": 4,
        "read_only_rootfs": true,
        "resources": {"memory": 67_108_864, "memory_swap": 134_217_728, "cpu_quota": 50_000,
                      "cpu_period": 100_000, "cpu_shares": 512, "cpuset_cpus": "0",
                      "pids_limit": 64}
    });
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    wait_for_digest(&api, &name, &v1, "running").await;
    let container = format!("sluice-{name}");
    let first = inspect(&container);
    // What the spec asked for is what Docker runs.
    let (config, host) = (&first["Config"], &first["HostConfig"]);
    assert_eq!(config["Entrypoint"], json!(["/bin/sh"]));
    assert_eq!(config["Cmd"], json!(["/fixture/entrypoint.sh"]));
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(config["WorkingDir"], "/fixture");
    assert_eq!(config["Hostname"], "tenant-fidelity");
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(config["StopTimeout"], 4);
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["NetworkMode"], network.as_str());
    let nets = &first["NetworkSettings"]["Networks"];
    for (net, alias) in [(&network, "web"), (&network, "tenant-web"), (&back, "api")] {
        assert!(
            nets[net.as_str()]["Aliases"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(alias))),
            "{alias} on {net}: {nets}"
        );
    }
    assert_eq!(host["Memory"], 67_108_864);
    assert_eq!(host["CpuQuota"], 50_000);
    assert_eq!(host["CpuPeriod"], 100_000);
    assert_eq!(host["CpuShares"], 512);
    assert_eq!(host["CpusetCpus"], "0");
    assert_eq!(host["PidsLimit"], 64);
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    assert!(host["PortBindings"]["8080/tcp"].is_array(), "{host}");
    assert!(host["PortBindings"]["5353/udp"].is_array(), "{host}");
    assert!(
        host["Binds"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{name}-ro:/ro:ro"))),
        "{host}"
    );
    assert_eq!(host["Tmpfs"], json!({"/run": "size=16m"}));
    assert!(
        host["Binds"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{}:/shared:ro", shared.display()))),
        "{host}"
    );
    assert_eq!(host["CapAdd"], json!(["NET_ADMIN"]));
    assert_eq!(host["CapDrop"], json!(["CAP_MKNOD"]));
    assert_eq!(host["SecurityOpt"], json!(["no-new-privileges"]));
    assert_eq!(host["ExtraHosts"], json!(["db.internal:10.0.0.5"]));
    assert_eq!(host["Dns"], json!(["10.0.0.53"]));
    assert_eq!(
        host["Ulimits"],
        json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
    );
    assert_eq!(host["Sysctls"], json!({"net.core.somaxconn": "1024"}));
    // The engine may add its own defaults (log-opts in daemon.json) beside ours.
    assert_eq!(host["LogConfig"]["Type"], "json-file");
    assert_eq!(host["LogConfig"]["Config"]["max-size"], "1m");

    // An update to v2: a new container, configured as the first.
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{name}/update"),
            Some(json!({ "digest": v2 })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_for_digest(&api, &name, &v2, "running").await;
    let second = inspect(&container);
    assert_ne!(
        first["Id"], second["Id"],
        "the update recreated the container"
    );
    let mut diff = Vec::new();
    differences(
        "",
        &configuration(&first),
        &configuration(&second),
        &mut diff,
    );
    assert!(diff.is_empty(), "the update changed:\n{}", diff.join("\n"));

    // An update to an image that fails its health gate: rolled back to v2, recreated.
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{name}/update"),
            Some(json!({ "digest": bad })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let third = loop {
        let (_, w) = api
            .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
            .await;
        if w["last_update"]["to_digest"] == bad
            && w["last_update"]["result"] != "running"
            && w["actual_digest"] == v2
            && w["state"] != "updating"
            && w["state"] != "rolling_back"
        {
            break inspect(&container);
        }
        assert!(Instant::now() < deadline, "no rollback: {w}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(
        second["Id"], third["Id"],
        "the rollback recreated the container"
    );
    let mut diff = Vec::new();
    differences(
        "",
        &configuration(&second),
        &configuration(&third),
        &mut diff,
    );
    assert!(
        diff.is_empty(),
        "the rollback changed:\n{}",
        diff.join("\n")
    );
}

/// Removes the test's network last, after the containers on it.
pub(crate) struct NetworkGuard(pub(crate) String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}
