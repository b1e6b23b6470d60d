//! The snapshot API as a black box: an in-process daemon with a fresh database whose
//! workspaces and snapshots are written by the fixtures. Docker is pointed at a socket
//! that does not exist, so no reconciler runs: a queued restore stays queued, and the
//! tests read the journal row it left (running it is the reconciler's suite).

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::domain::UpdatePhase;

use crate::api::{READ_TOKEN, TestApi};
use crate::snapshot_fixture::{after_update, counts, digest, open, snapshot};

/// A daemon without Docker whose snapshot directory is `dir`.
async fn start(dir: &tempfile::TempDir) -> (TestApi, PathBuf) {
    let snaps = dir.path().join("snapshots");
    let s = snaps.clone();
    let api = TestApi::start_with(move |settings| {
        settings.docker.host = Some("unix:///nonexistent/sluice-test/docker.sock".into());
        settings.snapshots.dir = Some(s);
    })
    .await;
    (api, snaps)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

/// `GET path` written byte for byte (no path normalisation), with the admin token;
/// returns the status and the body.
async fn raw_get(api: &TestApi, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        api.addr,
        crate::api::ADMIN_TOKEN
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

async fn actions(api: &TestApi) -> Vec<(String, String, String)> {
    api.store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.subject, e.action))
        .collect()
}

#[tokio::test]
async fn snapshots_are_listed_and_shown_with_their_protection() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (_ws, row) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::RolledBack,
    )
    .await;
    after_update(
        &api.store,
        &snaps,
        "other",
        &["data"],
        UpdatePhase::Succeeded,
    )
    .await;

    let (s, all) = api
        .call(Method::GET, "/api/v1/snapshots", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (s, list) = api
        .call(
            Method::GET,
            "/api/v1/snapshots?workspace=acme",
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["acme-data-new", "acme-data-old"], "newest first");
    assert_eq!(list[0]["protected"], true);
    assert!(
        list[0]["reason"].as_str().unwrap().contains("rolled back"),
        "{list}"
    );
    assert_eq!(list[1]["protected"], false);
    assert!(list[1]["reason"].is_null());

    let (s, v) = api
        .call(
            Method::GET,
            "/api/v1/snapshots/acme-data-new",
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["workspace"], "acme");
    assert_eq!(v["volume"], "data");
    assert_eq!(v["mount_path"], "/data");
    assert_eq!(v["state"], "complete");
    assert_eq!(v["method"], "archive");
    assert_eq!(v["entries"], 3);
    assert!(v["size_bytes"].as_i64().unwrap() > 0);
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["manifest_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(v["update"]["id"], row.id);
    assert_eq!(v["update"]["kind"], "update");
    assert_eq!(v["update"]["phase"], "rolled_back");
    assert_eq!(v["update"]["from_digest"], digest('1').as_str());
    assert_eq!(v["update"]["to_digest"], digest('2').as_str());
    assert_eq!(v["in_use"], false);
    assert!(v["released_at"].is_null());
    assert_eq!(
        v["path"],
        snaps.join("acme-data-new.tar").display().to_string()
    );

    // Bad and unknown workspace filters.
    let (s, v) = api
        .admin(Method::GET, "/api/v1/snapshots?workspace=Not_A_Name", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_name");
    assert!(message(&v).starts_with("workspace:"), "{v}");
    let (s, v) = api
        .admin(Method::GET, "/api/v1/snapshots?workspace=nobody", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api
        .admin(Method::GET, "/api/v1/snapshots?wrokspace=acme", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "unknown_field");
}

#[tokio::test]
async fn malformed_snapshot_ids_are_400_naming_the_field_and_unknown_ones_404() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::Quarantined,
    )
    .await;
    let long = "x".repeat(129);
    let before = counts(&api.store).await;
    for bad in [
        "a%2Fb",
        "..%2Fetc%2Fpasswd",
        "a%20b",
        "%C3%A9",
        long.as_str(),
    ] {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::POST, "/restore"),
            (Method::POST, "/release"),
            (Method::DELETE, ""),
        ] {
            let path = format!("/api/v1/snapshots/{bad}{suffix}");
            let (s, v) = api.admin(method.clone(), &path, None).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {v}");
            assert_eq!(code(&v), "invalid_snapshot_id", "{v}");
            assert!(message(&v).starts_with("id: invalid snapshot id"), "{v}");
        }
    }
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::POST, "/restore"),
        (Method::POST, "/release"),
        (Method::DELETE, ""),
    ] {
        let path = format!("/api/v1/snapshots/no-such-snapshot{suffix}");
        let (s, v) = api.admin(method.clone(), &path, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {v}");
        assert_eq!(code(&v), "not_found");
    }
    // `.` and `..` as whole path segments: HTTP clients fold them away, so send them raw.
    for bad in [".", ".."] {
        let (status, body) = raw_get(&api, &format!("/api/v1/snapshots/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.contains("invalid_snapshot_id"), "{bad}: {body}");
        assert!(body.contains("must not be `.` or `..`"), "{bad}: {body}");
    }
    // The recover body's `snapshot`.
    let recover = "/api/v1/workspaces/acme/recover";
    let (s, v) = api
        .admin(
            Method::POST,
            recover,
            Some(json!({"snapshot": "../acme-data-new"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_snapshot_id");
    assert!(
        message(&v).starts_with("snapshot: invalid snapshot id"),
        "{v}"
    );
    let (s, v) = api
        .admin(Method::POST, recover, Some(json!({"snapshot": 7})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(message(&v).starts_with("snapshot:"), "{v}");
    let (s, v) = api
        .admin(Method::POST, recover, Some(json!({"snapshto": "x"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "unknown_field");
    let (s, v) = api
        .admin(Method::POST, recover, Some(json!({"snapshot": "no-such"})))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces/nobody/recover", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        counts(&api.store).await,
        before,
        "no refusal wrote anything"
    );
}

#[tokio::test]
async fn a_protected_snapshot_is_deleted_only_after_its_release() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::Quarantined,
    )
    .await;
    let file = snaps.join("acme-data-new.tar");
    let path = "/api/v1/snapshots/acme-data-new";
    let before = counts(&api.store).await;

    let (s, v) = api.admin(Method::DELETE, path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "snapshot_protected");
    assert!(message(&v).contains("workspace quarantined"), "{v}");
    assert!(message(&v).contains("release"), "{v}");
    assert!(file.exists());
    assert_eq!(counts(&api.store).await, before);

    let (s, v) = api
        .call(
            Method::POST,
            &format!("{path}/release"),
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api
        .admin(Method::POST, &format!("{path}/release"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["protected"], false);
    assert_eq!(v["released_by"], "ops-alice");
    assert!(v["released_at"].is_string());
    // Releasing again changes nothing and audits nothing.
    let (s, _) = api
        .admin(Method::POST, &format!("{path}/release"), None)
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, v) = api.admin(Method::DELETE, path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "deleted");
    assert!(!file.exists(), "the file is gone");
    assert!(snaps.join("acme-data-old.tar").exists(), "only that file");
    let (s, v) = api.admin(Method::DELETE, path, None).await;
    assert_eq!(s, StatusCode::OK, "deleting twice is a no-op: {v}");
    let (s, v) = api
        .admin(Method::POST, &format!("{path}/release"), None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "snapshot_deleted");
    let (s, list) = api.admin(Method::GET, "/api/v1/snapshots", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != "acme-data-new"),
        "{list}"
    );

    let mine: Vec<_> = actions(&api)
        .await
        .into_iter()
        .filter(|(_, subject, _)| subject == "snapshot:acme-data-new")
        .collect();
    assert_eq!(
        mine,
        [
            (
                "ops-alice".to_owned(),
                "snapshot:acme-data-new".to_owned(),
                "snapshot_released".to_owned()
            ),
            (
                "ops-alice".to_owned(),
                "snapshot:acme-data-new".to_owned(),
                "snapshot_deleted".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn a_snapshot_an_open_update_needs_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (ws, _) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::Succeeded,
    )
    .await;
    let row = open(&api.store, &ws, Some(&digest('2')), &digest('3'), 30).await;
    snapshot(
        &api.store,
        &snaps,
        &ws,
        Some(row.id),
        "data",
        "acme-data-open",
        31,
    )
    .await;
    let (s, v) = api
        .admin(Method::DELETE, "/api/v1/snapshots/acme-data-open", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "snapshot_in_use");
    assert!(snaps.join("acme-data-open.tar").exists());
    // An ordinary old snapshot can go.
    let (s, v) = api
        .admin(Method::DELETE, "/api/v1/snapshots/acme-data-old", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn a_restore_is_queued_as_a_journal_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (ws, _) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::Succeeded,
    )
    .await;
    let before = counts(&api.store).await;
    let path = "/api/v1/snapshots/acme-data-old/restore";
    let (s, v) = api.call(Method::POST, path, Some(READ_TOKEN), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let (s, v) = api.admin(Method::POST, path, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["kind"], "restore");
    assert_eq!(v["phase"], "pulling");
    assert_eq!(v["workspace"], "acme");
    assert_eq!(v["from_digest"], digest('2').as_str());
    assert_eq!(v["to_digest"], digest('2').as_str(), "what runs now");
    assert_eq!(v["snapshots"], json!(["acme-data-old"]));
    assert!(v["warning"].as_str().unwrap().contains("lost"), "{v}");
    let id = v["update_id"].as_i64().unwrap();
    let row = api.store.latest_update(ws.id).await.unwrap().unwrap();
    assert_eq!(row.id, id);
    assert_eq!(row.kind, sluice::store::UpdateKind::Restore);
    assert_eq!(row.phase, UpdatePhase::Pulling);
    assert_eq!(row.from_digest, Some(digest('2')));
    assert_eq!(row.to_digest, digest('2'));
    assert_eq!(row.restore_snapshot_ids.len(), 1);
    assert_eq!(row.restore_snapshot_ids[0].as_str(), "acme-data-old");
    assert_eq!(counts(&api.store).await, (before.0 + 1, before.1 + 1));
    let events = api.store.events(0, 1000).await.unwrap();
    let ev = events.last().unwrap();
    assert_eq!(
        (ev.actor.as_str(), ev.subject.as_str(), ev.action.as_str()),
        ("ops-alice", "workspace:acme", "snapshot_restore_requested")
    );
    assert_eq!(ev.detail["update_id"], id);
    assert_eq!(ev.detail["snapshots"], json!(["acme-data-old"]));

    // One open row per workspace: every further restore is refused, and nothing changes.
    let after = counts(&api.store).await;
    for other in ["acme-data-old", "acme-data-new"] {
        let (s, v) = api
            .admin(
                Method::POST,
                &format!("/api/v1/snapshots/{other}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(code(&v), "update_in_progress");
        assert!(message(&v).contains(&id.to_string()), "{v}");
    }
    assert_eq!(counts(&api.store).await, after);
    // What the open row restores is in use.
    let (s, v) = api
        .admin(Method::GET, "/api/v1/snapshots/acme-data-old", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["in_use"], true, "{v}");
    let (s, v) = api
        .admin(Method::DELETE, "/api/v1/snapshots/acme-data-old", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "snapshot_in_use");
}

#[tokio::test]
async fn restore_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (ws, _) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data"],
        UpdatePhase::Succeeded,
    )
    .await;
    after_update(
        &api.store,
        &snaps,
        "quar",
        &["data"],
        UpdatePhase::Quarantined,
    )
    .await;
    let failed = snapshot(
        &api.store,
        &snaps,
        &ws,
        None,
        "data",
        "acme-data-failed",
        40,
    )
    .await;
    api.store
        .set_snapshot_state(&failed, sluice::domain::SnapshotState::Failed)
        .await
        .unwrap();
    snapshot(&api.store, &snaps, &ws, None, "cache", "acme-cache-1", 41).await;
    let before = counts(&api.store).await;

    let cases = [
        ("acme-data-failed", "snapshot_not_complete", "`failed`"),
        (
            "quar-data-new",
            "quarantined",
            "workspace recover quar --snapshot quar-data-new",
        ),
        ("acme-cache-1", "volume_not_mounted", "`cache`"),
    ];
    for (id, want, text) in cases {
        let (s, v) = api
            .admin(
                Method::POST,
                &format!("/api/v1/snapshots/{id}/restore"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{id}: {v}");
        assert_eq!(code(&v), want, "{id}: {v}");
        assert!(message(&v).contains(text), "{id}: {v}");
    }
    assert_eq!(counts(&api.store).await, before);
}

#[tokio::test]
async fn a_quarantined_workspace_is_recovered_from_the_update_that_quarantined_it() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (ws, quarantining) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data", "logs"],
        UpdatePhase::Quarantined,
    )
    .await;
    let path = "/api/v1/workspaces/acme/recover";
    let (s, v) = api.admin(Method::POST, path, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["kind"], "recover");
    assert_eq!(
        v["to_digest"],
        digest('1').as_str(),
        "the digest that ran before"
    );
    assert!(v["from_digest"].is_null());
    assert_eq!(v["snapshots"], json!(["acme-data-new", "acme-logs-new"]));
    let row = api.store.latest_update(ws.id).await.unwrap().unwrap();
    assert_eq!(row.id, v["update_id"].as_i64().unwrap());
    assert_eq!(row.kind, sluice::store::UpdateKind::Recover);
    assert_eq!(row.phase, UpdatePhase::Pulling);
    let ev = api.store.events(0, 1000).await.unwrap();
    let ev = ev.last().unwrap();
    assert_eq!(ev.action, "workspace_recover_requested");
    assert_eq!(ev.actor, "ops-alice");
    assert_eq!(ev.detail["source_update"], quarantining.id);

    let before = counts(&api.store).await;
    let (s, v) = api.admin(Method::POST, path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "update_in_progress");
    assert_eq!(counts(&api.store).await, before);
}

#[tokio::test]
async fn a_recovery_can_name_the_snapshot_to_start_from() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    let (ws, quarantining) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data", "logs"],
        UpdatePhase::Quarantined,
    )
    .await;
    // The quarantining attempt took `data` twice (a resumed snapshot step): by default
    // the newest copy is restored, unless the operator names the other one.
    snapshot(
        &api.store,
        &snaps,
        &ws,
        Some(quarantining.id),
        "data",
        "acme-data-retaken",
        23,
    )
    .await;
    // An older snapshot: its update (the first one) ran from nothing, so there is no
    // digest to go back to.
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces/acme/recover",
            Some(json!({"snapshot": "acme-data-old"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "no_digest");
    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces/acme/recover",
            Some(json!({"snapshot": "acme-data-new"})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["snapshots"], json!(["acme-data-new", "acme-logs-new"]));
    assert_eq!(v["to_digest"], digest('1').as_str());
}

#[tokio::test]
async fn recover_refusals_name_the_reason_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (api, snaps) = start(&dir).await;
    after_update(
        &api.store,
        &snaps,
        "fine",
        &["data"],
        UpdatePhase::Succeeded,
    )
    .await;
    let (ws, _) = after_update(
        &api.store,
        &snaps,
        "acme",
        &["data", "logs"],
        UpdatePhase::Quarantined,
    )
    .await;
    api.store
        .set_snapshot_state(
            &sluice::domain::SnapshotId::parse("acme-logs-new").unwrap(),
            sluice::domain::SnapshotState::Deleted,
        )
        .await
        .unwrap();
    let before = counts(&api.store).await;

    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces/fine/recover", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "not_quarantined");
    assert!(message(&v).contains("`running`"), "{v}");

    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces/acme/recover", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "no_usable_snapshot");
    assert!(message(&v).contains("volume `logs`"), "{v}");
    assert!(message(&v).contains("`acme-logs-new` is `deleted`"), "{v}");

    let (s, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces/acme/recover",
            Some(json!({"snapshot": "fine-data-new"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_snapshot");
    assert!(message(&v).starts_with("snapshot:"), "{v}");
    assert!(message(&v).contains("`fine`"), "{v}");

    // A volume added since the quarantining update has no snapshot at all.
    sqlx::query("UPDATE snapshots SET state = 'complete' WHERE id = 'acme-logs-new'")
        .execute(api.store.raw_pool())
        .await
        .unwrap();
    let mut spec = ws.spec.clone();
    spec.volumes
        .push(sluice::domain::spec::VolumeMount::new("cache", "/cache"));
    api.store
        .patch_workspace(
            &ws.name,
            &sluice::store::WorkspacePatch {
                spec: Some(spec),
                ..Default::default()
            },
            "ops",
            crate::snapshot_fixture::at(50),
        )
        .await
        .unwrap();
    let before_patch_events = before.1 + 1;
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces/acme/recover", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "no_usable_snapshot");
    assert!(message(&v).contains("volume `cache`"), "{v}");
    assert!(message(&v).contains("none was taken"), "{v}");
    assert_eq!(counts(&api.store).await, (before.0, before_patch_events));
}
