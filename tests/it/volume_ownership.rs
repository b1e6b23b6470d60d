//! One tenant never reaches another's volume: on the real engine, volumes sluice creates
//! carry their workspace's id; creating or patching a workspace onto another's volume is
//! refused (409) without a trace; a volume that predates sluice needs `adopt`; purge
//! removes only what the workspace owns.

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

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
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

async fn exists(api: &TestApi, name: &str) -> bool {
    api.store
        .workspace(&WorkspaceName::parse(name).unwrap())
        .await
        .is_ok()
}

/// Operator events about `name`.
async fn events_of(api: &TestApi, name: &str) -> Vec<sluice::store::Event> {
    api.store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == format!("workspace:{name}") && e.actor != "system")
        .collect()
}

/// Waits until the reconciler has the workspace running: a delete that races the start
/// of its first update lets that update create the container and volume again.
async fn wait_converged(api: &TestApi, name: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(90) {
        let w = api
            .store
            .workspace(&WorkspaceName::parse(name).unwrap())
            .await
            .expect("workspace row");
        if w.actual_digest.is_some() && w.state.as_str() == "running" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("workspace {name} did not converge within 90 s");
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
async fn a_workspace_volume_is_labelled_with_its_id_and_never_given_to_another() {
    let mut cleanup = DockerCleanup::default();
    let api = TestApi::start().await;
    let a = unique("own-a");
    let b = unique("own-b");
    let c = unique("own-c");
    let vol = format!("{a}-data");
    let spare = unique("own-spare");
    for n in [&a, &b, &c] {
        cleanup.containers.push(format!("sluice-{n}"));
        cleanup.volumes.push(format!("{n}-data"));
    }
    cleanup.volumes.push(spare.clone());

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&a, json!([{"name": vol, "mount": "/data"}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let a_id = id_of(&api, &a).await;
    let labels = wait_for_volume(&vol).await;
    assert_eq!(
        labels.get("sluice.managed").map(String::as_str),
        Some("true")
    );
    assert_eq!(labels.get("sluice.workspace"), Some(&a));
    assert_eq!(
        labels.get("sluice.workspace_id"),
        Some(&a_id.to_string()),
        "{labels:?}"
    );

    // Another workspace asks for A's volume: refused, naming the entry, nothing stored.
    for (volumes, field) in [
        (json!([{"name": vol, "mount": "/data"}]), "volumes[0].name"),
        (
            json!([{"name": spare, "mount": "/spare"}, {"name": vol, "mount": "/data"}]),
            "volumes[1].name",
        ),
        // Adopting a volume labelled for another workspace is refused all the same.
        (
            json!([{"name": vol, "mount": "/data", "adopt": true}]),
            "volumes[0].name",
        ),
    ] {
        let (s, v) = api
            .admin(Method::POST, "/api/v1/workspaces", Some(body(&b, volumes)))
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::CONFLICT, "volume_in_use"),
            "{v}"
        );
        assert!(message(&v).starts_with(field), "{v}");
        assert!(
            message(&v).contains(&vol) && message(&v).contains(&a),
            "{v}"
        );
        assert!(!exists(&api, &b).await, "no row for the refused workspace");
        assert!(
            events_of(&api, &b).await.is_empty(),
            "no audit event either"
        );
    }
    assert!(
        volume_labels(&spare).is_none(),
        "a refused creation leaves nothing in Docker"
    );

    // An existing workspace patched onto A's volume: refused, spec unchanged.
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(
                &c,
                json!([{"name": format!("{c}-data"), "mount": "/data"}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let before = api
        .store
        .workspace(&WorkspaceName::parse(&c).unwrap())
        .await
        .unwrap();
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{c}"),
            Some(json!({"env": {"K": "changed"}, "volumes": [
                {"name": format!("{c}-data"), "mount": "/data"},
                {"name": vol, "mount": "/other"}]})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "volume_in_use"),
        "{v}"
    );
    assert!(message(&v).starts_with("volumes[1].name"), "{v}");
    let after = api
        .store
        .workspace(&WorkspaceName::parse(&c).unwrap())
        .await
        .unwrap();
    assert_eq!(after.spec, before.spec, "the patch left no partial change");
    assert!(
        events_of(&api, &c)
            .await
            .iter()
            .all(|e| e.action != "workspace.changed"),
        "a refused patch is not audited as a change"
    );
    // Patches that do not touch its volumes still work.
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{c}"),
            Some(json!({"env": {"K": "changed"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_volume_named_by_another_live_spec_is_refused_before_docker_has_it() {
    let api = TestApi::start().await;
    let owner = unique("own-spec");
    let vol = unique("own-planned");
    let mut cleanup = DockerCleanup::default();
    cleanup.volumes.push(vol.clone());
    // A workspace whose volume the reconciler has not created (no desired digest yet).
    api.store
        .insert_workspace(
            &sluice::store::NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(&owner).unwrap(),
                image: sluice::domain::ImageRef::parse(&fixture_image()).unwrap(),
                update_tier: sluice::domain::Tier::Production,
                update_mode: sluice::domain::UpdateMode::Manual,
                maintenance_window: None,
                spec: sluice::domain::spec::WorkspaceSpec {
                    volumes: vec![VolumeMount::new(vol.clone(), "/data")],
                    ..Default::default()
                },
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    assert!(volume_labels(&vol).is_none());
    let other = unique("own-late");
    for adopt in [false, true] {
        let (s, v) = api
            .admin(
                Method::POST,
                "/api/v1/workspaces",
                Some(body(
                    &other,
                    json!([{"name": vol, "mount": "/data", "adopt": adopt}]),
                )),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::CONFLICT, "volume_in_use"),
            "{v}"
        );
        assert!(message(&v).starts_with("volumes[0].name"), "{v}");
        assert!(message(&v).contains(&owner), "{v}");
        assert!(!exists(&api, &other).await);
        assert!(events_of(&api, &other).await.is_empty());
    }
}

#[tokio::test]
async fn a_pre_existing_volume_is_taken_only_with_adopt() {
    let mut cleanup = DockerCleanup::default();
    let api = TestApi::start().await;
    let name = unique("own-adopt");
    let pre = unique("own-pre");
    let foreign = unique("own-foreign");
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup.volumes.extend([pre.clone(), foreign.clone()]);
    make_volume(&pre, &[]);
    // Labelled by another sluice installation (an id this store never issued).
    make_volume(
        &foreign,
        &[
            ("sluice.managed", "true"),
            ("sluice.workspace", "elsewhere"),
            ("sluice.workspace_id", "987654321"),
        ],
    );

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&name, json!([{"name": pre, "mount": "/data"}]))),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "volume_exists"),
        "{v}"
    );
    assert!(message(&v).starts_with("volumes[0].name"), "{v}");
    assert!(message(&v).contains("\"adopt\": true"), "{v}");
    assert!(!exists(&api, &name).await);
    assert!(events_of(&api, &name).await.is_empty());

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(
                &name,
                json!([{"name": foreign, "mount": "/data", "adopt": true}]),
            )),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "volume_in_use"),
        "{v}"
    );
    assert!(message(&v).contains("987654321"), "{v}");
    assert!(!exists(&api, &name).await);

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(
                &name,
                json!([{"name": pre, "mount": "/data", "adopt": true}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["volumes"][0]["adopt"], true, "{v}");
    let events = events_of(&api, &name).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["workspace.created", "volume_adopted"]);
    assert_eq!(events[1].actor, "ops-alice");
    assert_eq!(events[1].detail["volume"], pre.as_str());
    assert!(events[1].detail["previous_owner_id"].is_null());
    assert_eq!(
        volume_labels(&pre).unwrap().get("sluice.workspace_id"),
        None,
        "Docker cannot relabel: the store is the record"
    );
    // Adopted, so the workspace owns it: purge removes it; the foreign one is untouched.
    wait_converged(&api, &name).await;
    let v = purge(&api, &name).await;
    assert_eq!(v["volumes_removed"], json!([pre]), "{v}");
    assert!(volume_labels(&pre).is_none());
    assert!(volume_labels(&foreign).is_some());
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
    wait_converged(&api, &name).await;
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

#[tokio::test]
async fn a_patch_adds_a_pre_existing_volume_only_with_adopt() {
    let mut cleanup = DockerCleanup::default();
    let api = TestApi::start().await;
    let name = unique("own-patch");
    let pre = unique("own-pre-patch");
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup.volumes.push(pre.clone());
    make_volume(&pre, &[]);
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&name, json!([]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let path = format!("/api/v1/workspaces/{name}");
    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"volumes": [{"name": pre, "mount": "/data"}]})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "volume_exists"),
        "{v}"
    );
    assert!(message(&v).starts_with("volumes[0].name"), "{v}");
    let w = api
        .store
        .workspace(&WorkspaceName::parse(&name).unwrap())
        .await
        .unwrap();
    assert!(w.spec.volumes.is_empty(), "spec unchanged");
    assert_eq!(
        events_of(&api, &name).await.len(),
        1,
        "only the creation is audited"
    );

    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"volumes": [{"name": pre, "mount": "/data", "adopt": true}]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let actions: Vec<String> = events_of(&api, &name)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["workspace.created", "workspace.changed", "volume_adopted"]
    );
    // Later patches of other fields do not re-check (or re-adopt) the volume.
    let (s, v) = api
        .admin(Method::PATCH, &path, Some(json!({"env": {"K": "V2"}})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(events_of(&api, &name).await.len(), 4);
}

#[tokio::test]
async fn a_deleted_workspaces_volume_is_kept_from_others_unless_adopted() {
    let mut cleanup = DockerCleanup::default();
    let api = TestApi::start().await;
    let first = unique("own-gone");
    let next = unique("own-next");
    let vol = format!("{first}-data");
    for n in [&first, &next] {
        cleanup.containers.push(format!("sluice-{n}"));
        cleanup.volumes.push(format!("{n}-data"));
    }
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&first, json!([{"name": vol, "mount": "/data"}]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let first_id = id_of(&api, &first).await;
    wait_for_volume(&vol).await;
    wait_converged(&api, &first).await;
    // Deleted without purge: the volume stays, labelled for the deleted workspace.
    for _ in 0..240 {
        let (s, v) = api
            .admin(Method::DELETE, &format!("/api/v1/workspaces/{first}"), None)
            .await;
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(code(&v), "update_in_progress", "{v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!exists(&api, &first).await);
    assert!(volume_labels(&vol).is_some());

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(&next, json!([{"name": vol, "mount": "/data"}]))),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "volume_in_use"),
        "{v}"
    );
    assert!(message(&v).starts_with("volumes[0].name"), "{v}");
    assert!(
        message(&v).contains("deleted") && message(&v).contains("\"adopt\": true"),
        "{v}"
    );
    assert!(!exists(&api, &next).await);

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(body(
                &next,
                json!([{"name": vol, "mount": "/data", "adopt": true}]),
            )),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let adopted = events_of(&api, &next)
        .await
        .into_iter()
        .find(|e| e.action == "volume_adopted")
        .expect("a volume_adopted event");
    assert_eq!(adopted.detail["volume"], vol.as_str());
    assert_eq!(adopted.detail["previous_owner_id"], first_id);
}
