//! Start-first updates on the real Docker engine: the new container starts beside the
//! old one, takes over only once healthy, and a new version that fails its gate is
//! removed while the old container — never stopped, never recreated — keeps serving.

use std::process::Command;

use sluice::domain::UpdatePhase;
use sluice::domain::spec::{NetworkSpec, UpdateOrder};

use crate::reconciler::env_in_repo;
use crate::recreate_fidelity::NetworkGuard;
use crate::support::{run, unique};

/// `docker inspect` fields of `container`: id and when it last started.
fn identity(container: &str) -> (String, String) {
    let out = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.Id}} {{.State.StartedAt}}",
        container,
    ]));
    let (id, started) = out.trim().split_once(' ').unwrap();
    (id.to_owned(), started.to_owned())
}

fn exists(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", container])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn the_new_container_takes_over_only_when_healthy_and_a_bad_one_never_stops_the_old() {
    let net = unique("sluice-sf-net");
    run(Command::new("docker").args(["network", "create", "--label", "sluice.test=1", &net]));
    let _net = NetworkGuard(net.clone());
    let network = net.clone();
    let mut e = env_in_repo(
        "sf",
        None,
        move |s, _| {
            s.update_order = Some(UpdateOrder::StartFirst);
            for v in &mut s.volumes {
                v.shared = true;
            }
            s.networks = vec![NetworkSpec {
                name: network,
                aliases: vec!["app".into()],
            }];
        },
        |_| {},
    )
    .await;
    let staged = format!("{}.next", e.container());
    e.cleanup.containers.push(staged.clone());
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    let bad = e.fixture("bad-health", "v3");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    let (v1_id, _) = identity(&e.container());

    // A good version: journaled start-first, the name ends on the new container, with the
    // network alias, and the data volume is the same one.
    e.desire(&v2).await;
    e.rec.converge_all().await.unwrap();
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(
        (u.phase, u.order),
        (UpdatePhase::Succeeded, UpdateOrder::StartFirst)
    );
    assert_eq!(e.workspace().await.actual_digest, Some(v2.clone()));
    let (v2_id, v2_started) = identity(&e.container());
    assert_ne!(v2_id, v1_id, "a new container");
    assert!(!exists(&staged), "no staging container is left");
    let aliases = run(Command::new("docker").args([
        "inspect",
        "--format",
        &format!("{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}}"),
        &e.container(),
    ]));
    assert!(aliases.contains("\"app\""), "{aliases}");
    let boots =
        run(Command::new("docker").args(["exec", &e.container(), "cat", "/data/boots.log"]));
    assert!(
        boots.contains("version=v1") && boots.contains("version=v2"),
        "one volume, both versions booted on it: {boots}"
    );

    // A version that fails its gate: removed; the running container was never stopped.
    e.desire(&bad).await;
    e.rec.converge_all().await.unwrap();
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    assert_eq!(
        identity(&e.container()),
        (v2_id, v2_started),
        "the same container, started once: never stopped"
    );
    assert!(!exists(&staged), "the failed new container is removed");
    let w = e.workspace().await;
    assert_eq!(w.actual_digest, Some(v2.clone()));
    assert!(
        u.snapshot_ids.is_empty(),
        "nothing to restore, nothing taken"
    );
}

#[tokio::test]
async fn start_first_is_refused_for_data_two_containers_cannot_share() {
    use sluice::domain::spec::{PortMapping, VolumeMount, WorkspaceSpec};
    let mut spec = WorkspaceSpec {
        update_order: Some(UpdateOrder::StartFirst),
        volumes: vec![VolumeMount::new("data", "/data")],
        ..Default::default()
    };
    let e = spec.validate().unwrap_err().to_string();
    assert!(e.contains("volumes[0].shared"), "{e}");
    spec.volumes[0].shared = true;
    spec.ports = vec![PortMapping {
        container: 8080,
        host: Some(18080),
        host_ip: None,
        protocol: None,
    }];
    let e = spec.validate().unwrap_err().to_string();
    assert!(e.contains("ports[0].host"), "{e}");
    spec.ports[0].host = None;
    assert!(spec.validate().is_ok());
    spec.update_order = Some(UpdateOrder::StopFirst);
    spec.snapshot_on_start_first = true;
    let e = spec.validate().unwrap_err().to_string();
    assert!(e.contains("snapshot_on_start_first"), "{e}");
}

#[tokio::test]
async fn the_fleet_default_order_applies_to_a_workspace_that_names_none() {
    let mut e = env_in_repo(
        "sfd",
        None,
        |s, _| {
            for v in &mut s.volumes {
                v.shared = true;
            }
        },
        |s| s.update.order = UpdateOrder::StartFirst,
    )
    .await;
    e.cleanup.containers.push(format!("{}.next", e.container()));
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    let first = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(
        first.order,
        UpdateOrder::StopFirst,
        "a first creation has no old container to keep serving"
    );
    e.desire(&v2).await;
    e.rec.converge_all().await.unwrap();
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(
        (u.phase, u.order),
        (UpdatePhase::Succeeded, UpdateOrder::StartFirst)
    );
}

/// Every start-first step that succeeded runs a second time and must change nothing the
/// tenant can see (the reconciler's `repeat_steps`, test build only).
#[tokio::test]
async fn every_start_first_step_run_twice_changes_nothing() {
    use std::sync::Arc;

    use sluice::clock::SystemClock;
    use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
    use sluice::runtime::{DockerRuntime, connect};
    use sluice::snapshot::Snapshots;

    let mut e = env_in_repo(
        "sf-twice",
        None,
        |s, _| {
            s.update_order = Some(UpdateOrder::StartFirst);
            for v in &mut s.volumes {
                v.shared = true;
            }
        },
        |_| {},
    )
    .await;
    e.cleanup.containers.push(format!("{}.next", e.container()));
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    let bad = e.fixture("bad-health", "v3");
    let s = crate::reconciler::settings(e.dir.path());
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.repeat_steps = true;
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        e.store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), e.store.clone()),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    );
    for (d, want) in [
        (&v1, UpdatePhase::Succeeded),
        (&v2, UpdatePhase::Succeeded),
        (&bad, UpdatePhase::RolledBack),
    ] {
        e.desire(d).await;
        rec.converge_all().await.expect("converge");
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        assert_eq!(u.phase, want, "{:?}", u.error);
        assert!(
            !u.error.unwrap_or_default().contains("not idempotent"),
            "a step changed something when run again"
        );
    }
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.order, UpdateOrder::StartFirst);
    assert_eq!(e.workspace().await.actual_digest, Some(v2));
}

/// The webhook router: the hand-over POSTs the new container's route and wants a 2xx; a
/// hook that refuses it rolls the update back to the old container, which never stopped.
#[tokio::test]
async fn the_route_webhook_hears_of_the_new_container_and_a_refusal_rolls_back() {
    use std::sync::{Arc, Mutex};

    use sluice::config::{RouterKind, RouterSettings};

    let heard: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let (heard, refuse) = (heard.clone(), refuse.clone());
        axum::Router::new().route(
            "/routes/secret-path",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let (heard, refuse) = (heard.clone(), refuse.clone());
                async move {
                    heard.lock().unwrap().push(v);
                    if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/routes/secret-path",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let hook = url.clone();
    let mut e = env_in_repo(
        "sfw",
        None,
        |s, _| {
            s.update_order = Some(UpdateOrder::StartFirst);
            for v in &mut s.volumes {
                v.shared = true;
            }
        },
        move |s| {
            s.router = RouterSettings {
                kind: RouterKind::Webhook,
                url: Some(sluice::config::WebhookUrl::parse(&hook).unwrap()),
                ..RouterSettings::default()
            };
        },
    )
    .await;
    e.cleanup.containers.push(format!("{}.next", e.container()));
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    let v3 = e.fixture("good", "v3");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    heard.lock().unwrap().clear();

    e.desire(&v2).await;
    e.rec.converge_all().await.unwrap();
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    let route = heard
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the hook heard the hand-over");
    assert_eq!(route["workspace"], e.ws.name.as_str());
    assert_eq!(route["container"], format!("{}.next", e.container()));
    assert_eq!(route["digest"], v2.as_str());
    assert_eq!(route["port"], 8080);
    let ip = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &e.container(),
    ]));
    assert_eq!(
        route["address"],
        ip.trim(),
        "the address of the container now serving"
    );

    // A hook that refuses: rolled back, the running container untouched, routed back.
    let before = identity(&e.container());
    refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    heard.lock().unwrap().clear();
    e.desire(&v3).await;
    e.rec.converge_all().await.unwrap();
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    assert!(
        u.error
            .as_deref()
            .is_some_and(|m| m.contains("router") && !m.contains("secret-path")),
        "the reason names the router, never the hook's URL: {:?}",
        u.error
    );
    assert_eq!(identity(&e.container()), before, "never stopped");
    assert_eq!(e.workspace().await.actual_digest, Some(v2.clone()));
    let tried: Vec<String> = heard
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        tried[..2],
        [v3.to_string(), v2.to_string()],
        "to the new one, then back"
    );
    assert!(
        tried[2..].iter().all(|d| d == v2.as_str()),
        "a refused route back is tried again, never another: {tried:?}"
    );

    // The hook answers again: the next pass tells it where the workspace is, once.
    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    heard.lock().unwrap().clear();
    e.rec.converge_all().await.unwrap();
    e.rec.converge_all().await.unwrap();
    let told: Vec<serde_json::Value> = heard.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["digest"], v2.as_str());
    assert_eq!(told[0]["container"], e.container());
}

/// A network of its own with a subnet, so the test can give a container an address.
fn network_with_subnet(prefix: &str) -> (NetworkGuard, String) {
    let net = unique(prefix);
    let pid = std::process::id();
    for i in 0..20u32 {
        let subnet = format!("10.{}.{}", 100 + (pid + i * 7) % 150, (pid / 150 + i) % 250);
        let made = Command::new("docker")
            .args(["network", "create", "--label", "sluice.test=1"])
            .arg(format!("--subnet={subnet}.0/24"))
            .arg(&net)
            .output()
            .expect("docker network create");
        if made.status.success() {
            return (NetworkGuard(net), subnet);
        }
    }
    panic!("no free subnet for {net}");
}

#[tokio::test]
async fn the_route_follows_a_container_whose_address_docker_changed() {
    let (guard, subnet) = network_with_subnet("sluice-sf-addr");
    let net = guard.0.clone();
    let network = net.clone();
    let routes = tempfile::tempdir().unwrap();
    let file = routes.path().join("{workspace}.conf");
    let reloads = routes.path().join("reloads");
    let reload = vec![
        "sh".into(),
        "-c".into(),
        format!("echo reload >> {}", reloads.display()),
    ];
    let mut e = env_in_repo(
        "sf-addr",
        None,
        move |s, _| {
            s.networks = vec![NetworkSpec {
                name: network,
                aliases: vec![],
            }];
        },
        move |s| {
            s.router = sluice::config::RouterSettings {
                kind: sluice::config::RouterKind::File,
                file: Some(file),
                reload,
                ..Default::default()
            };
        },
    )
    .await;
    let upstream = routes.path().join(format!("{}.conf", e.ws.name));
    let count = || {
        std::fs::read_to_string(&reloads)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let v1 = e.fixture("good", "v1");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    let first = std::fs::read_to_string(&upstream).unwrap();
    assert!(first.contains(&format!("server {subnet}.")), "{first}");
    assert_eq!(count(), 1, "routed once when it was created");

    // A pass with nothing changed sends nothing.
    e.rec.converge_all().await.unwrap();
    assert_eq!(count(), 1, "an unchanged route is not sent again");

    // The container gets another address behind sluice's back.
    let moved = format!("{subnet}.200");
    run(Command::new("docker").args(["network", "disconnect", &net, &e.container()]));
    run(Command::new("docker").args(["network", "connect", "--ip", &moved, &net, &e.container()]));
    e.rec.converge_all().await.unwrap();
    let now = std::fs::read_to_string(&upstream).unwrap();
    assert!(
        now.contains(&format!("server {moved}:8080;")),
        "the route follows the new address: {now}"
    );
    assert_eq!(count(), 2, "one reload for the move");
    drop(e);
    drop(guard);
}
