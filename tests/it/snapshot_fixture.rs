//! Workspaces with an update history and snapshot files, written straight into a store:
//! the snapshot API, CLI and store tests start from the states an operator meets (a
//! rolled-back update, a quarantined workspace) without driving Docker into them.

#![allow(dead_code)] // reason: each test module uses a different subset

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest as _, Sha256};
use sluice::domain::spec::VolumeMount;
use sluice::domain::{
    Digest, Health, ImageRef, SnapshotId, Tier, UpdateMode, UpdatePhase, WorkspaceName,
    WorkspaceState,
};
use sluice::store::{NewEvent, NewWorkspace, Outcome, SnapshotDone, Store, UpdateRow, Workspace};

/// `sha256:` followed by 64 copies of `c` (a hex digit).
pub fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

/// A fixed clock for fixtures: `base() + n seconds` orders what a test writes.
pub fn at(n: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::seconds(n)
}

/// A workspace mounting `volumes` (each at `/<volume>`); no container behind it.
pub async fn workspace(store: &Store, name: &str, volumes: &[&str]) -> Workspace {
    let spec = sluice::domain::spec::WorkspaceSpec {
        volumes: volumes
            .iter()
            .map(|v| VolumeMount::new(*v, format!("/{v}")))
            .collect(),
        ..Default::default()
    };
    let new = NewWorkspace {
        host: sluice::domain::HostName::local(),
        name: WorkspaceName::parse(name).unwrap(),
        image: ImageRef::parse("127.0.0.1:5000/app:stable").unwrap(),
        update_tier: Tier::Canary,
        update_mode: UpdateMode::Manual,
        maintenance_window: None,
        spec,
    };
    store.insert_workspace(&new, at(0)).await.unwrap()
}

/// Opens a journal row from `from` to `to` (left open: phase `pulling`).
pub async fn open(
    store: &Store,
    ws: &Workspace,
    from: Option<&Digest>,
    to: &Digest,
    t: i64,
) -> UpdateRow {
    store
        .open_update(ws.id, None, from, to, at(t))
        .await
        .unwrap()
}

/// Ends `row` in `phase`, leaving the workspace as the reconciler would.
pub async fn finish(store: &Store, ws: &Workspace, row: &UpdateRow, phase: UpdatePhase, t: i64) {
    let (actual, state, failed) = match phase {
        UpdatePhase::Succeeded => (Some(row.to_digest.clone()), WorkspaceState::Running, false),
        UpdatePhase::Quarantined => (None, WorkspaceState::Quarantined, true),
        _ => (row.from_digest.clone(), WorkspaceState::Running, true),
    };
    let outcome = Outcome {
        from_phase: row.phase,
        phase,
        error: failed.then(|| "health check failed".to_owned()),
        actual_digest: actual,
        container_id: None,
        state,
        health: Health::Unknown,
        remember_failure: failed,
        reset_desired: failed && phase != UpdatePhase::Quarantined,
        restored_from_update: None,
        event: NewEvent {
            actor: "system".into(),
            subject: format!("workspace:{}", ws.name),
            action: format!("update_{phase}"),
            detail: serde_json::json!({ "update_id": row.id }),
            rollout_id: None,
            workspace: Some(ws.name.to_string()),
        },
    };
    store.finish_update(row, &outcome, at(t)).await.unwrap();
}

/// One update attempt from `from` to `to` that ends in `phase`.
pub async fn update(
    store: &Store,
    ws: &Workspace,
    from: Option<&Digest>,
    to: &Digest,
    phase: UpdatePhase,
    t: i64,
) -> UpdateRow {
    let row = open(store, ws, from, to, t).await;
    finish(store, ws, &row, phase, t + 1).await;
    row
}

/// A complete snapshot `id` of `volume` taken by `update_id` at `at(t)`, its file in `dir`.
pub async fn snapshot(
    store: &Store,
    dir: &Path,
    ws: &Workspace,
    update_id: Option<i64>,
    volume: &str,
    id: &str,
    t: i64,
) -> SnapshotId {
    let id = SnapshotId::parse(id).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{id}.tar"));
    let content = format!("tar of {volume} at {t}");
    std::fs::write(&path, &content).unwrap();
    store
        .insert_snapshot(
            &id,
            ws.id,
            update_id,
            volume,
            &format!("/{volume}"),
            &path.display().to_string(),
            at(t),
        )
        .await
        .unwrap();
    let done = SnapshotDone {
        size: content.len() as u64,
        sha256: hex::encode(Sha256::digest(content.as_bytes())),
        manifest_sha256: Some(hex::encode(Sha256::digest(id.as_str().as_bytes()))),
        entries: Some(3),
        method: "archive",
    };
    store.complete_snapshot(&id, &done).await.unwrap();
    id
}

/// A workspace on `d1` whose update to `d2` (row returned) ended in `phase`, with a
/// pre-update snapshot of each volume taken by it (`<name>-<volume>-new`) and an older
/// one from the first update (`<name>-<volume>-old`).
pub async fn after_update(
    store: &Store,
    dir: &Path,
    name: &str,
    volumes: &[&str],
    phase: UpdatePhase,
) -> (Workspace, UpdateRow) {
    let ws = workspace(store, name, volumes).await;
    let first = update(store, &ws, None, &digest('1'), UpdatePhase::Succeeded, 10).await;
    for v in volumes {
        snapshot(
            store,
            dir,
            &ws,
            Some(first.id),
            v,
            &format!("{name}-{v}-old"),
            11,
        )
        .await;
    }
    let second = open(store, &ws, Some(&digest('1')), &digest('2'), 20).await;
    for v in volumes {
        snapshot(
            store,
            dir,
            &ws,
            Some(second.id),
            v,
            &format!("{name}-{v}-new"),
            21,
        )
        .await;
    }
    finish(store, &ws, &second, phase, 22).await;
    let ws = store.workspace(&ws.name).await.unwrap();
    (ws, second)
}

/// Rows in the journal and the audit trail, to prove a refusal wrote nothing.
pub async fn counts(store: &Store) -> (i64, i64) {
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace_updates")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    (rows, events)
}
