//! `POST /api/v1/registry/events` end to end: a private registry sends its push
//! notifications to an in-process daemon, which probes the pushed repository at once.

use std::time::{Duration, Instant};

use sluice::config::{Secret, Settings};
use sluice::domain::{Digest, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::startup::Application;
use sluice::store::{NewWorkspace, Store};
use tokio_util::sync::CancellationToken;

use crate::registry_proc::{RegistryOpts, RegistryProc};
use crate::support::{build_fixture, unique};

const TOKEN: &str = "registry-hook-token-0123456789";

async fn build(version: &'static str, image: String) -> Digest {
    tokio::task::spawn_blocking(move || build_fixture("good", version, &image))
        .await
        .unwrap()
}

/// Polls `check` for up to 30 s; returns how long it took, `None` if it never held.
async fn wait_for<F, Fut>(mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn add_running(store: &Store, image: &str, digest: &Digest) {
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(&unique("hook")).unwrap(),
                image: ImageRef::parse_tracked(image).unwrap(),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: Default::default(),
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    sqlx::query("UPDATE workspaces SET actual_digest = $1 WHERE id = $2")
        .bind(digest.as_str())
        .bind(ws.id)
        .execute(store.raw_pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_notification_triggers_a_probe_and_a_forged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.data.dir = dir.path().to_owned();
    s.api.listen = "127.0.0.1:0".parse().unwrap();
    // Timer probes are an hour apart: only the notification can explain a second probe.
    s.poll.interval = Duration::from_secs(3600);
    s.poll.jitter = 0.0;
    s.registries.webhook_token = Some(Secret::new(TOKEN));
    let app = Application::build(s).await.unwrap();
    let addr = app.local_addr();
    let store = app.state().store.clone();
    let wakers = app.wakers().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let reg = RegistryProc::start(RegistryOpts {
        notify: Some((
            format!("http://{addr}/api/v1/registry/events"),
            TOKEN.to_owned(),
        )),
        ..RegistryOpts::default()
    });
    let image = format!("{}/app:stable", reg.host());
    let v1 = build("v1", image.clone()).await;
    add_running(&store, &image, &v1).await;
    wakers.watcher.notify_one();
    let first = wait_for(|| async {
        store
            .tracked_image(&image)
            .await
            .is_ok_and(|t| t.latest_digest.as_ref() == Some(&v1))
    })
    .await;
    assert!(
        first.is_some(),
        "no first probe: {:?}",
        store.tracked_image(&image).await
    );

    let v2 = build("v2", image.clone()).await;
    let took = wait_for(|| async {
        store
            .releases_of_image(&image)
            .await
            .is_ok_and(|r| r.iter().any(|r| r.digest == v2))
    })
    .await;
    let took = match took {
        Some(t) => t,
        None => panic!(
            "no release for {v2}; status {:?}; registry log tail:\n{}",
            store.tracked_image(&image).await,
            reg.log_text()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    eprintln!("push notification to release: {took:?}");
    let t = store.tracked_image(&image).await.unwrap();
    assert_eq!(t.latest_digest, Some(v2));

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/registry/events");
    let body = serde_json::json!({"events": [{"action": "push",
        "target": {"repository": "app", "tag": "stable"}}]})
    .to_string();
    for auth in [Some("Bearer not-the-token"), None, Some(TOKEN)] {
        let mut req = http.post(&url).body(body.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?} is refused");
        let json: serde_json::Value = res.json().await.unwrap();
        assert_eq!(json["error"]["code"], "unauthorized");
    }
    let res = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(&url)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["probing"][0],
        "app"
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
