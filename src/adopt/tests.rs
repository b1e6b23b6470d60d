use super::*;
use crate::domain::{Health, HostName, Tier, UpdateMode, WorkspaceState};
use crate::reconciler::container::container_spec;
use crate::runtime::LABEL_WORKSPACE;
use crate::store::Workspace;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn full_spec() -> WorkspaceSpec {
    serde_json::from_value(serde_json::json!({
        "env": {"GREETING": "hello", "EMPTY": "", "EQ": "a=b"},
        "volumes": [{"name": "acme-data", "mount": "/data", "adopt": true},
                    {"name": "acme-ro", "mount": "/ro", "adopt": true, "read_only": true}],
        "ports": [{"container": 8080, "host": 18080, "host_ip": "127.0.0.1"},
                  {"container": 5353, "protocol": "udp", "host_ip": ""}],
        "command": ["serve", "--port", "8080"],
        "restart": "on-failure:3",
        "networks": [{"name": "front", "aliases": ["web"]}, {"name": "back"}],
        "container_name": "acme-web",
        "labels": {"team": "a", "com.docker.compose.project": "shop"},
        "entrypoint": ["/bin/app"],
        "user": "1000:1000",
        "working_dir": "/srv",
        "hostname": "acme",
        "stop_signal": "SIGINT",
        "stop_timeout": 4,
        "read_only_rootfs": true,
        "resources": {"memory": 67_108_864, "memory_swap": 134_217_728, "cpu_shares": 512,
                      "cpuset_cpus": "0", "pids_limit": 64, "nano_cpus": 500_000_000},
        "tmpfs": {"/run": "size=16m"},
        "extra_hosts": ["db:10.0.0.5"],
        "dns": ["10.0.0.53"],
        "ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}],
        "sysctls": {"net.core.somaxconn": "1024"},
        "log": {"driver": "json-file", "options": {"max-size": "1m"}},
        "binds": [{"source": "/srv/shared", "target": "/shared", "read_only": true}],
        "cap_add": ["NET_ADMIN"],
        "cap_drop": ["MKNOD"],
        "security_opt": ["no-new-privileges"]
    }))
    .unwrap()
}

fn workspace(spec: WorkspaceSpec) -> Workspace {
    let now = chrono::DateTime::from_timestamp(0, 0).unwrap();
    Workspace {
        id: 7,
        name: WorkspaceName::parse("acme").unwrap(),
        image: ImageRef::parse_tracked("127.0.0.1:5000/shop/app:v1").unwrap(),
        update_tier: Tier::Canary,
        update_mode: UpdateMode::Auto,
        maintenance_window: None,
        spec,
        host: HostName::parse("local").unwrap(),
        pinned_digest: None,
        desired_digest: None,
        actual_digest: None,
        container_id: None,
        state: WorkspaceState::Running,
        health: Health::Unknown,
        created_at: now,
        updated_at: now,
        version: 1,
        drift: Vec::new(),
    }
}

fn running(spec: ContainerSpec) -> RunningConfig {
    RunningConfig {
        id: "f".repeat(64),
        running: true,
        repo_digests: vec![format!("127.0.0.1:5000/shop/app@{DIGEST}")],
        spec,
        image_defaults: crate::runtime::ImageDefaults::default(),
        unrepresentable: Vec::new(),
    }
}

#[test]
fn a_spec_mapped_to_a_container_plans_back_to_itself() {
    let spec = full_spec();
    spec.validate().unwrap();
    let digest = Digest::parse(DIGEST).unwrap();
    let w = workspace(spec.clone());
    let mut c = container_spec(&w, &digest);
    // Docker shows the reference the container was started from.
    c.image = "127.0.0.1:5000/shop/app:v1".to_owned();
    let plan = plan(&running(c), &w.name, None).unwrap();
    assert_eq!(plan.spec, spec);
    assert_eq!(plan.digest, digest);
    assert_eq!(plan.image, w.image);
    assert!(plan.unrepresentable.is_empty());
    // A lone network without aliases is the plain `network` field.
    let mut one = full_spec();
    one.networks = vec![NetworkSpec {
        name: "front".into(),
        aliases: Vec::new(),
    }];
    let planned = spec_of(&container_spec(&workspace(one), &digest), &w.name);
    assert_eq!(planned.network.as_deref(), Some("front"));
    assert!(planned.networks.is_empty());
}

#[test]
fn the_default_container_name_is_not_stored() {
    let w = workspace(WorkspaceSpec::default());
    let c = container_spec(&w, &Digest::parse(DIGEST).unwrap());
    assert_eq!(c.name, "sluice-acme");
    assert_eq!(spec_of(&c, &w.name).container_name, None);
}

#[test]
fn an_image_without_a_tag_needs_one_named() {
    let w = workspace(WorkspaceSpec::default());
    let mut c = container_spec(&w, &Digest::parse(DIGEST).unwrap());
    for started_from in [
        "sha256:2222222222222222222222222222222222222222222222222222222222222222",
        &format!("127.0.0.1:5000/shop/app@{DIGEST}"),
    ] {
        c.image = started_from.to_owned();
        let e = plan(&running(c.clone()), &w.name, None).unwrap_err();
        assert!(matches!(e, AdoptError::NoTag(_)), "{e}");
        assert!(e.to_string().starts_with("image: "), "{e}");
        let named = ImageRef::parse_tracked("127.0.0.1:5000/shop/app:v1").unwrap();
        let p = plan(&running(c.clone()), &w.name, Some(&named)).unwrap();
        assert_eq!(p.digest.as_str(), DIGEST);
    }
    // `docker run repo` means `repo:latest`.
    c.image = "127.0.0.1:5000/shop/app".to_owned();
    let p = plan(&running(c), &w.name, None).unwrap();
    assert_eq!(p.image.tag(), Some("latest"));
}

#[test]
fn an_image_unknown_to_the_registry_is_refused() {
    let w = workspace(WorkspaceSpec::default());
    let mut c = running(container_spec(&w, &Digest::parse(DIGEST).unwrap()));
    c.spec.image = "127.0.0.1:5000/other/app:v1".to_owned();
    let e = plan(&c, &w.name, None).unwrap_err();
    assert!(matches!(e, AdoptError::NoDigest { .. }), "{e}");
    c.repo_digests.clear();
    assert!(
        plan(&c, &w.name, None)
            .unwrap_err()
            .to_string()
            .contains("no registry")
    );
}

#[test]
fn sluice_labels_and_invalid_values_are_not_carried() {
    let w = workspace(WorkspaceSpec::default());
    let mut c = container_spec(&w, &Digest::parse(DIGEST).unwrap());
    c.image = "127.0.0.1:5000/shop/app:v1".to_owned();
    assert_eq!(managed_by(&c.labels), Some("acme"));
    c.labels.insert(LABEL_WORKSPACE.into(), "x".into());
    let p = plan(&running(c.clone()), &w.name, None).unwrap();
    assert!(p.spec.labels.is_empty(), "{:?}", p.spec.labels);
    c.limits.pids_limit = Some(-1);
    let Err(AdoptError::Invalid(e)) = plan(&running(c), &w.name, None) else {
        panic!("a pids limit of -1 is refused");
    };
    assert!(e.reason.starts_with("resources.pids_limit"), "{e}");
}
