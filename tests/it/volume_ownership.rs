//! One tenant never reaches another's volume: on the real engine, volumes sluice creates
//! carry their workspace's id, and purge removes only what the workspace owns.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::domain::WorkspaceName;
use sluice::domain::spec::VolumeMount;
use sluice::store::WorkspacePatch;

use crate::api::{TestApi, fixture_image};
use crate::support::{DockerCleanup, run, unique};

fn body(name: &str, volumes: Value) -> Value {
    json!({ "name": name, "image": fixture_image(), "update_tier": "canary",
            "volumes": volumes, "health": {"http": {"port": 8080, "path": "/health"}} })
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// The volume's labels, `None` when Docker has no such volume.
fn volume_labels(volume: &str) -> Option<BTreeMap<String, String>> {
    let out = Command::new("docker")
        .args(["volume", "inspect", "--format", "{{json .Labels}}", volume])
        .output()
        .expect("docker runs");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let labels: Option<BTreeMap<String, String>> =
        serde_json::from_str(text.trim()).expect("labels are JSON");
    Some(labels.unwrap_or_default())
}

/// Creates a volume by hand, labelled as a test's (and with `extra` labels).
fn make_volume(volume: &str, extra: &[(&str, &str)]) {
    let mut cmd = Command::new("docker");
    cmd.args(["volume", "create", "--label", "sluice.test=1"]);
    for (k, v) in extra {
        cmd.args(["--label", &format!("{k}={v}")]);
    }
    run(cmd.arg(volume));
}

async fn wait_for_volume(volume: &str) -> BTreeMap<String, String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(l) = volume_labels(volume) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the reconciler did not create volume {volume} within a minute");
}

async fn id_of(api: &TestApi, name: &str) -> i64 {
    api.store
        .workspace(&WorkspaceName::parse(name).unwrap())
        .await
        .expect("workspace row")
        .id
}

/// DELETE with `?purge=true`, retrying while the reconciler is still busy with it.
async fn purge(api: &TestApi, name: &str) -> Value {
    for _ in 0..240 {
        let path = format!("/api/v1/workspaces/{name}?purge=true");
        let (s, v) = api.admin(Method::DELETE, &path, None).await;
        if s == StatusCode::CONFLICT && code(&v) == "update_in_progress" {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(s, StatusCode::OK, "{v}");
        return v;
    }
    panic!("workspace {name} stayed busy for a minute");
}

#[tokio::test]
async fn purge_removes_only_volumes_labelled_for_the_workspace() {
    let mut cleanup = DockerCleanup::default();
    let api = TestApi::start().await;
    let name = unique("own-purge");
    let own = format!("{name}-data");
    let theirs = unique("own-theirs");
    let stray = unique("own-stray");
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup
        .volumes
        .extend([own.clone(), theirs.clone(), stray.clone()]);

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&name, json!([{"name": own, "mount": "/data"}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = id_of(&api, &name).await;
    wait_for_volume(&own).await;
    // Another workspace id's volume, and an unowned one, in this workspace's stored spec
    // — as a store written before ownership checks could hold them.
    make_volume(
        &theirs,
        &[
            ("sluice.managed", "true"),
            ("sluice.workspace", "neighbour"),
            ("sluice.workspace_id", &(id + 1000).to_string()),
        ],
    );
    make_volume(&stray, &[]);
    let mut spec = api
        .store
        .workspace(&WorkspaceName::parse(&name).unwrap())
        .await
        .unwrap()
        .spec;
    spec.volumes
        .push(VolumeMount::new(theirs.clone(), "/theirs"));
    spec.volumes.push(VolumeMount::new(stray.clone(), "/stray"));
    api.store
        .patch_workspace(
            &WorkspaceName::parse(&name).unwrap(),
            &WorkspacePatch {
                spec: Some(spec),
                ..Default::default()
            },
            "test",
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let v = purge(&api, &name).await;
    assert_eq!(v["volumes_removed"], json!([own]), "{v}");
    let kept = v["volumes_kept"].as_array().expect("volumes_kept");
    assert_eq!(kept.len(), 2, "{v}");
    assert_eq!(kept[0]["name"], theirs.as_str());
    assert_eq!(kept[0]["reason"], "other_workspace");
    assert_eq!(kept[0]["owner_id"], id + 1000);
    assert_eq!(kept[1]["name"], stray.as_str());
    assert_eq!(kept[1]["reason"], "not_owned");
    assert!(volume_labels(&own).is_none(), "its own volume is gone");
    assert!(
        volume_labels(&theirs).is_some(),
        "never removes a volume labelled for another workspace id"
    );
    assert!(volume_labels(&stray).is_some());
}
