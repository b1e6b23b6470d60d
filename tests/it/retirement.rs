//! Deleting a workspace is finished by the reconciler, not by the API: a deletion marked
//! while no reconciler runs is retired by the next start (container and, with purge,
//! the workspace's own volume), and the marked workspace is never converged again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use sluice::domain::WorkspaceName;
use sluice::startup::Application;
use sluice::store::{RetireResult, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{ADMIN_TOKEN, fixture_image, settings};
use crate::support::{DockerCleanup, unique};

/// A daemon on `dir`, served from this process until `stop`.
struct Daemon {
    addr: std::net::SocketAddr,
    store: Store,
    stop: CancellationToken,
    done: JoinHandle<()>,
}

async fn start(dir: &Path) -> Daemon {
    let app = Application::build(settings(dir))
        .await
        .expect("daemon builds");
    let addr = app.local_addr();
    let store = app.state().store.clone();
    let stop = CancellationToken::new();
    let run = app.run_until_stopped(stop.clone());
    let done = tokio::spawn(async move {
        run.await.expect("daemon stops cleanly");
    });
    Daemon {
        addr,
        store,
        stop,
        done,
    }
}

impl Daemon {
    async fn stop(self) {
        self.stop.cancel();
        self.done.await.expect("daemon task ends");
    }
}

fn container_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["container", "inspect", name])
        .output()
        .expect("docker runs")
        .status
        .success()
}

fn volume_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .expect("docker runs")
        .status
        .success()
}

async fn wait_converged(store: &Store, name: &WorkspaceName) -> i64 {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let w = store.workspace(name).await.expect("workspace row");
        if w.actual_digest.is_some() && w.state.as_str() == "running" {
            return w.id;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("workspace {name} did not converge within 90 s");
}

async fn wait_retired(store: &Store, id: i64) -> RetireResult {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(r) = store.retirement(id).await.expect("store answers") {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("workspace {id} was not retired within a minute");
}

#[tokio::test]
async fn a_deletion_marked_while_the_daemon_is_down_is_retired_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("retire-restart");
    let container = format!("sluice-{name}");
    let volume = format!("{name}-data");
    let _cleanup = DockerCleanup {
        containers: vec![container.clone(), format!("{container}.next")],
        volumes: vec![volume.clone()],
        images: Vec::new(),
    };
    let wname = WorkspaceName::parse(&name).unwrap();

    let first = start(dir.path()).await;
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/workspaces", first.addr))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({ "name": name, "image": fixture_image(), "update_tier": "canary",
            "volumes": [{"name": volume, "mount": "/data"}],
            "health": {"http": {"port": 8080, "path": "/health"}} }),
        )
        .send()
        .await
        .expect("request sent");
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = wait_converged(&first.store, &wname).await;
    assert!(container_exists(&container) && volume_exists(&volume));
    // A start-first update's new container, left under its staging name on the volume.
    let staged = format!("{container}.next");
    let image = crate::support::run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.Image}}",
        &container,
    ]));
    crate::support::run(Command::new("docker").args([
        "create",
        "--name",
        &staged,
        "--label",
        "sluice.managed=true",
        "--label",
        &format!("sluice.workspace={name}"),
        "--label",
        &format!("sluice.workspace_id={id}"),
        "--label",
        "sluice.test=1",
        "-v",
        &format!("{volume}:/data"),
        image.trim(),
    ]));
    first.stop().await;

    // What DELETE ?purge=true writes, with no reconciler to retire it.
    let url = format!("sqlite://{}/sluice.db", dir.path().display());
    let store = Store::open(&url, 2, Duration::from_secs(5)).await.unwrap();
    assert!(
        store
            .delete_workspace_audited(&wname, true, "ops-alice", Utc::now())
            .await
            .unwrap()
    );
    assert_eq!(store.retirement(id).await.unwrap(), None);
    let pending = store
        .pending_retirements(&sluice::domain::HostName::local())
        .await
        .unwrap();
    assert!(
        pending
            .iter()
            .any(|p| p.id == id && p.purge && p.name == wname)
    );
    store.close().await;
    assert!(
        container_exists(&container),
        "nothing retires while stopped"
    );

    let second = start(dir.path()).await;
    let done = wait_retired(&second.store, id).await;
    assert_eq!(
        done,
        RetireResult {
            container_removed: true,
            volumes_removed: vec![volume.clone()],
            volumes_kept: Vec::new(),
            error: None,
        }
    );
    assert!(!container_exists(&container));
    assert!(!container_exists(&staged), "the staging container goes too");
    assert!(!volume_exists(&volume));
    // Marked means gone for every loop: a few more passes create nothing again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!container_exists(&container));
    assert!(
        second
            .store
            .pending_retirements(&sluice::domain::HostName::local())
            .await
            .unwrap()
            .is_empty()
    );
    second.stop().await;
}
