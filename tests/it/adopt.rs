//! Adopting a running container (real Docker): a container started by `docker run` with
//! many flags is planned (`--dry-run`), adopted without a restart, updated to a new
//! digest — the new container configured field by field as the old one, its data intact
//! — and the refusals: already managed, a volume another workspace owns, a setting the
//! spec cannot carry, no such container, an image with no tag.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::{ADMIN_TOKEN, TestApi};
use crate::recreate_fidelity::{
    NetworkGuard, configuration, differences, inspect, wait_for_digest,
};
use crate::support::{DockerCleanup, build_fixture, registry, run, sluice_bin, unique};

fn adopt_body(container: &str, name: &str) -> Value {
    json!({ "container": container, "name": name, "update_mode": "manual",
            "health": {"http": {"port": 8080, "path": "/health"}} })
}

/// Asks to adopt with `body` and asserts the refusal: its status, its code and the field
/// its message leads with; returns the error body for further checks.
async fn refused(api: &TestApi, body: Value, status: StatusCode, code: &str, field: &str) -> Value {
    let (s, e) = api
        .admin(Method::POST, "/api/v1/workspaces/adopt", Some(body))
        .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (status, Some(code)),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(field), "{e}");
    e
}

/// Runs the CLI against the test daemon with the admin token; its stdout, after
/// asserting it succeeded.
fn cli(api: &TestApi, args: &[&str]) -> String {
    let out = Command::new(sluice_bin())
        .args(["--server", &api.url("")])
        .args(args)
        .env("SLUICE_TOKEN", ADMIN_TOKEN)
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// What `configuration` compares, less the labels sluice adds to every container it
/// creates (the documented difference between an adopted container and its successor).
fn without_ownership(mut c: Value) -> Value {
    if let Some(labels) = c["Config"]["Labels"].as_object_mut() {
        labels.retain(|k, _| !k.starts_with("sluice.") || k == "sluice.test");
    }
    c
}

// Multi-threaded: the CLI child is waited for while the in-process API answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_run_container_is_adopted_in_place_and_updated_exactly() {
    let repo = format!("{}/{}/app", registry(), unique("fx-adopt"));
    let v1 = build_fixture("good", "v1", &format!("{repo}:v1")).to_string();
    let v2 = build_fixture("good", "v2", &format!("{repo}:v2")).to_string();
    let name = unique("adopt");
    let container = format!("{name}-web");
    let (data, ro) = (format!("{name}-data"), format!("{name}-ro"));
    let network = unique("sluice-adopt-net");
    let other_net = unique("sluice-adopt-back");
    for n in [&network, &other_net] {
        run(Command::new("docker").args(["network", "create", "--label", "sluice.test=1", n]));
    }
    let _nets = (
        NetworkGuard(network.clone()),
        NetworkGuard(other_net.clone()),
    );
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(container.clone());
    cleanup.volumes.extend([data.clone(), ro.clone()]);
    for v in ["v1", "v2"] {
        cleanup.images.push(format!("{repo}:{v}"));
    }
    let host_dir = tempfile::tempdir().unwrap();
    let shared = host_dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let prefix = host_dir.path().to_owned();
    let api = TestApi::start_with(move |s| {
        s.workspaces.allowed_bind_prefixes = vec![prefix];
        s.update.min_healthy_time = std::time::Duration::from_millis(500);
    })
    .await;
    // 26 flags of `docker run`.
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        &network,
        "--network-alias",
        "web",
        "-e",
        "GREETING=hello",
        "-v",
        &format!("{data}:/data"),
        "-v",
        &format!("{ro}:/ro:ro"),
        "-v",
        &format!("{}:/shared:ro", shared.display()),
        "-p",
        "127.0.0.1::8080",
        "-p",
        "127.0.0.1::5353/udp",
        "--restart",
        "on-failure:3",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "64",
        "--user",
        "0:0",
        "--workdir",
        "/fixture",
        "--hostname",
        "tenant",
        "--stop-signal",
        "SIGINT",
        "--stop-timeout",
        "4",
        "--read-only",
        "--tmpfs",
        "/run:size=16m",
        "--add-host",
        "db.internal:10.0.0.5",
        "--dns",
        "10.0.0.53",
        "--ulimit",
        "nofile=1024:2048",
        "--sysctl",
        "net.core.somaxconn=1024",
        "--log-opt",
        "max-size=1m",
        "--cap-add",
        "NET_ADMIN",
        "--cap-drop",
        "MKNOD",
        "--security-opt",
        "no-new-privileges",
        "-l",
        "team=adopters",
        "--entrypoint",
        "/bin/sh",
        &format!("{repo}:v1"),
        "/fixture/entrypoint.sh",
    ]));
    run(Command::new("docker").args([
        "network", "connect", "--alias", "api", &other_net, &container,
    ]));
    run(Command::new("docker").args([
        "exec",
        &container,
        "sh",
        "-c",
        "echo tenant-data > /data/tenant.txt",
    ]));
    let before = inspect(&container);

    // The dry run, through the CLI: the spec and nothing it could not represent.
    let text = cli(
        &api,
        &[
            "workspace",
            "adopt",
            &container,
            "--name",
            &name,
            "--dry-run",
        ],
    );
    assert!(
        text.contains(&format!("would become workspace {name}")),
        "{text}"
    );
    assert!(text.contains("every setting is represented"), "{text}");
    let mut dry = adopt_body(&container, &name);
    dry["dry_run"] = json!(true);
    let (s, plan) = api
        .admin(Method::POST, "/api/v1/workspaces/adopt", Some(dry))
        .await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    assert_eq!(plan["digest"], v1);
    assert_eq!(plan["image"], format!("{repo}:v1"));
    let spec = &plan["spec"];
    assert_eq!(spec["container_name"], container.as_str());
    assert_eq!(
        spec["env"],
        json!({"GREETING": "hello"}),
        "the image's own env stays the image's"
    );
    assert_eq!(spec["command"], json!(["/fixture/entrypoint.sh"]));
    assert_eq!(spec["entrypoint"], json!(["/bin/sh"]));
    assert_eq!(spec["restart"], "on-failure:3");
    assert_eq!(
        spec["networks"],
        json!([{"name": network, "aliases": ["web"]}, {"name": other_net, "aliases": ["api"]}])
    );
    assert_eq!(spec["resources"]["nano_cpus"], 500_000_000);
    assert_eq!(spec["labels"], json!({"team": "adopters"}));
    assert_eq!(
        spec["volumes"][0],
        json!({"name": data, "mount": "/data", "adopt": true})
    );
    assert_eq!(spec["binds"][0]["source"], shared.display().to_string());
    assert_eq!(plan["unrepresentable"], json!([]));
    let (s, _) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a dry run stores nothing");

    // Adopt: the same container keeps running, not restarted.
    let (s, adopted) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces/adopt",
            Some(adopt_body(&container, &name)),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{adopted}");
    let w = wait_for_digest(&api, &name, &v1, "running").await;
    assert_eq!(w["container_id"], before["Id"]);
    assert_eq!(w["desired_digest"], v1);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let still = inspect(&container);
    assert_eq!(
        still["Id"], before["Id"],
        "adoption recreated the container"
    );
    assert_eq!(
        still["State"]["StartedAt"], before["State"]["StartedAt"],
        "adoption restarted it"
    );

    // Adopting it again, or a second container using its volume, is refused.
    refused(
        &api,
        adopt_body(&container, "adopt-again"),
        StatusCode::CONFLICT,
        "already_managed",
        "container: ",
    )
    .await;
    let thief = format!("{name}-thief");
    cleanup.containers.push(thief.clone());
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &thief,
        "-v",
        &format!("{data}:/data"),
        "-l",
        "sluice.test=1",
        &format!("{repo}:v1"),
    ]));
    refused(
        &api,
        adopt_body(&thief, &format!("{name}-t")),
        StatusCode::CONFLICT,
        "volume_in_use",
        "volumes[0].name",
    )
    .await;

    // An update to v2 recreates it exactly as it was, under the same name.
    let (s, u) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{name}/update"),
            Some(json!({"digest": v2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    wait_for_digest(&api, &name, &v2, "running").await;
    let after = inspect(&container);
    assert_ne!(after["Id"], before["Id"]);
    let mut diff = Vec::new();
    differences(
        "",
        &without_ownership(configuration(&before)),
        &without_ownership(configuration(&after)),
        &mut diff,
    );
    // The docker CLI sends an empty list where the API leaves a field out: the same
    // setting (no devices, no DNS options), shown two ways.
    diff.retain(|d| !d.ends_with(": [] != null") && !d.ends_with(": null != []"));
    assert!(diff.is_empty(), "the update changed:\n{}", diff.join("\n"));
    let data_now =
        run(Command::new("docker").args(["exec", &container, "cat", "/data/tenant.txt"]));
    assert_eq!(data_now.trim(), "tenant-data");
    api.track_workspace(&name);
}

#[tokio::test]
async fn what_adoption_cannot_carry_or_find_is_refused() {
    let repo = format!("{}/{}/app", registry(), unique("fx-adopt-no"));
    let v1 = build_fixture("good", "v1", &format!("{repo}:v1")).to_string();
    let name = unique("adopt-no");
    let (tty, by_id) = (format!("{name}-tty"), format!("{name}-byid"));
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.extend([tty.clone(), by_id.clone()]);
    cleanup.images.push(format!("{repo}:v1"));
    // This host runs at most one workspace: the second adoption finds it full.
    let api = TestApi::start_with(|s| s.agent.capacity = 1).await;
    run(Command::new("docker").args([
        "run",
        "-d",
        "-t",
        "--name",
        &tty,
        "-l",
        "sluice.test=1",
        &format!("{repo}:v1"),
    ]));
    let e = refused(
        &api,
        adopt_body(&tty, &name),
        StatusCode::BAD_REQUEST,
        "unrepresentable",
        "container: ",
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Config.Tty"),
        "{e}"
    );
    let (s, _) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a refusal stores nothing");
    // With force it is adopted, and the audit event names what was forced past.
    let mut forced = adopt_body(&tty, &name);
    forced["force"] = json!(true);
    let (s, a) = api
        .admin(Method::POST, "/api/v1/workspaces/adopt", Some(forced))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    api.track_workspace(&name);
    let (_, events) = api
        .admin(Method::GET, "/api/v1/events?limit=1000", None)
        .await;
    let ev = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "workspace.adopted" && e["subject"] == format!("workspace:{name}"))
        .unwrap_or_else(|| panic!("no workspace.adopted event: {events}"));
    assert!(
        ev["detail"]["forced"].to_string().contains("Config.Tty"),
        "{ev}"
    );

    // Started from an image id: no tag to follow, until one is named.
    let id = run(Command::new("docker").args([
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        &format!("{repo}:v1"),
    ]));
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &by_id,
        "-l",
        "sluice.test=1",
        id.trim(),
    ]));
    refused(
        &api,
        adopt_body(&by_id, &format!("{name}-b")),
        StatusCode::BAD_REQUEST,
        "image_has_no_tag",
        "image: ",
    )
    .await;
    let mut named = adopt_body(&by_id, &format!("{name}-b"));
    named["image"] = json!(format!("{repo}:v1"));
    named["dry_run"] = json!(true);
    let (s, p) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces/adopt",
            Some(named.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["digest"], v1);
    named["dry_run"] = json!(false);
    refused(&api, named, StatusCode::CONFLICT, "host_full", "host: ").await;

    refused(
        &api,
        adopt_body(&format!("{name}-nothing"), &format!("{name}-n")),
        StatusCode::NOT_FOUND,
        "not_found",
        "container: ",
    )
    .await;
}

/// Runs `docker-compose` for project `project` with `file`.
fn compose(file: &std::path::Path, project: &str, args: &[&str]) -> String {
    run(Command::new("docker-compose")
        .args(["-f", &file.to_string_lossy(), "-p", project])
        .args(args))
}

/// Takes the project down (containers, its network, its volumes) on drop.
struct ComposeGuard(std::path::PathBuf, String);

impl Drop for ComposeGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker-compose")
            .args(["-f", &self.0.to_string_lossy(), "-p", &self.1, "down", "-v"])
            .output();
    }
}

// Multi-threaded: the CLI child is waited for while the in-process API answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compose_project_is_adopted_whole_and_compose_still_sees_it() {
    let repo = format!("{}/{}/app", registry(), unique("fx-adopt-compose"));
    build_fixture("good", "v1", &format!("{repo}:v1"));
    let v2 = build_fixture("good", "v2", &format!("{repo}:v2")).to_string();
    let project = unique("adoptshop");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(
        &file,
        format!(
            "version: '3'\nservices:\n  web:\n    image: {repo}:v1\n    labels: {{sluice.test: '1'}}\n    \
             environment: {{GREETING: shop}}\n    volumes: ['data:/data']\n  \
             worker:\n    image: {repo}:v1\n    labels: {{sluice.test: '1'}}\nvolumes:\n  data: {{}}\n"
        ),
    )
    .unwrap();
    let _down = ComposeGuard(file.clone(), project.clone());
    let mut cleanup = DockerCleanup::default();
    for v in ["v1", "v2"] {
        cleanup.images.push(format!("{repo}:{v}"));
    }
    compose(&file, &project, &["up", "-d"]);
    let web = format!("{project}_web_1");
    let api = TestApi::start().await;

    let text = cli(
        &api,
        &[
            "workspace",
            "adopt",
            "--all",
            "--compose-project",
            &project,
            "--mode",
            "manual",
        ],
    );
    let web_ws = format!("{project}-web-1");
    for (container, ws) in [
        (&web, &web_ws),
        (
            &format!("{project}_worker_1"),
            &format!("{project}-worker-1"),
        ),
    ] {
        let row = text.lines().find(|l| l.starts_with(container.as_str()));
        assert!(
            row.is_some_and(|r| r.contains(ws.as_str()) && r.contains("adopted")),
            "{container} as {ws}:\n{text}"
        );
        api.track_workspace(ws);
    }
    let (_, events) = api
        .admin(Method::GET, "/api/v1/events?limit=1000", None)
        .await;
    let bulk: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "workspaces.adopted_all")
        .collect();
    assert_eq!(bulk.len(), 1, "one audited operation: {events}");
    assert_eq!(
        bulk[0]["detail"]["adopted"].as_array().map(Vec::len),
        Some(2),
        "{}",
        bulk[0]
    );

    // Updated by sluice, the container is still the project's: Compose lists it, its
    // labels and its service alias kept.
    let before = inspect(&web);
    let (s, u) = api
        .admin(
            Method::POST,
            &format!("/api/v1/workspaces/{web_ws}/update"),
            Some(json!({"digest": v2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    wait_for_digest(&api, &web_ws, &v2, "running").await;
    let after = inspect(&web);
    assert_ne!(after["Id"], before["Id"]);
    for label in [
        "com.docker.compose.project",
        "com.docker.compose.service",
        "com.docker.compose.config-hash",
    ] {
        assert_eq!(
            after["Config"]["Labels"][label], before["Config"]["Labels"][label],
            "{label}"
        );
    }
    let net = format!("{project}_default");
    assert!(
        after["NetworkSettings"]["Networks"][&net]["Aliases"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("web"))),
        "{}",
        after["NetworkSettings"]
    );
    let ps = compose(&file, &project, &["ps"]);
    let line = ps.lines().find(|l| l.starts_with(web.as_str()));
    assert!(
        line.is_some_and(|l| l.contains("Up")),
        "compose ps lost {web}:\n{ps}"
    );
}
