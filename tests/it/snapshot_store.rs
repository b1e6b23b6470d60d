//! Snapshot protection, retention and restore queuing against a real SQLite file.

use sluice::domain::{SnapshotId, UpdatePhase};
use sluice::snapshot::retention_victims;
use sluice::store::{ProtectedReason, Released, RestoreError, RestoreRequest, Store, UpdateKind};

use crate::snapshot_fixture::{after_update, at, counts, digest, open, snapshot, update};

async fn fresh() -> (sluice::store::TestDb, Store) {
    let db = sluice::store::TestDb::new().await;
    let store = db.store(4).await;
    (db, store)
}

fn ids(v: &[SnapshotId]) -> Vec<&str> {
    v.iter().map(SnapshotId::as_str).collect()
}

/// Retention over the store's own facts: keep nothing by count and nothing by age.
async fn victims(store: &Store) -> Vec<SnapshotId> {
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    retention_victims(&live, 0, chrono::Duration::seconds(1), at(100_000))
}

#[tokio::test]
async fn a_rolled_back_update_keeps_the_newest_copy_of_each_volume_until_released() {
    let (dir, store) = fresh().await;
    let snaps = dir.path().join("snapshots");
    let (_ws, _row) = after_update(
        &store,
        &snaps,
        "acme",
        &["data", "logs"],
        UpdatePhase::RolledBack,
    )
    .await;
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    let protected: Vec<_> = live
        .iter()
        .filter_map(|(r, f)| f.protection(r).map(|p| (r.id.as_str(), p)))
        .collect();
    assert_eq!(
        protected,
        [
            (
                "acme-data-new",
                ProtectedReason::LastUpdateUnsuccessful(UpdatePhase::RolledBack)
            ),
            (
                "acme-logs-new",
                ProtectedReason::LastUpdateUnsuccessful(UpdatePhase::RolledBack)
            ),
        ]
    );
    assert_eq!(
        ids(&victims(&store).await),
        ["acme-data-old", "acme-logs-old"]
    );

    let id = SnapshotId::parse("acme-data-new").unwrap();
    assert_eq!(
        store.release_snapshot(&id, "ops", at(50)).await.unwrap(),
        Released::Now
    );
    assert_eq!(
        store.release_snapshot(&id, "ops", at(51)).await.unwrap(),
        Released::Already
    );
    let info = store.snapshot_info(&id).await.unwrap();
    assert_eq!(info.released_by.as_deref(), Some("ops"));
    assert_eq!(info.row.released_at, Some(at(50)));
    assert_eq!(info.facts.protection(&info.row), None);
    assert_eq!(
        ids(&victims(&store).await),
        ["acme-data-new", "acme-data-old", "acme-logs-old"]
    );
    let released: Vec<_> = store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "snapshot_released")
        .collect();
    assert_eq!(released.len(), 1, "released once, audited once");
    assert_eq!(released[0].subject, "snapshot:acme-data-new");
    assert_eq!(released[0].actor, "ops");
}

#[tokio::test]
async fn a_quarantined_workspace_keeps_everything_and_a_success_lifts_the_newest_rule() {
    let (dir, store) = fresh().await;
    let snaps = dir.path().join("snapshots");
    after_update(&store, &snaps, "quar", &["data"], UpdatePhase::Quarantined).await;
    let (ok, _) = after_update(&store, &snaps, "fine", &["data"], UpdatePhase::Succeeded).await;
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    for (r, f) in &live {
        let expected =
            r.id.as_str()
                .starts_with("quar")
                .then_some(ProtectedReason::WorkspaceQuarantined);
        assert_eq!(f.protection(r), expected, "{}", r.id);
    }
    assert_eq!(
        ids(&victims(&store).await),
        ["fine-data-new", "fine-data-old"]
    );
    // A workspace whose last update failed, then succeeded: nothing protected any more.
    update(
        &store,
        &ok,
        Some(&digest('2')),
        &digest('3'),
        UpdatePhase::Failed,
        30,
    )
    .await;
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    let newest = live
        .iter()
        .find(|(r, _)| r.id.as_str() == "fine-data-new")
        .unwrap();
    assert!(newest.1.newest_of_volume);
    assert_eq!(newest.1.last_finished, Some(UpdatePhase::Failed));
    assert!(newest.1.protection(&newest.0).is_some());
    update(
        &store,
        &ok,
        Some(&digest('2')),
        &digest('4'),
        UpdatePhase::Succeeded,
        40,
    )
    .await;
    assert_eq!(
        ids(&victims(&store).await),
        ["fine-data-new", "fine-data-old"]
    );
}

#[tokio::test]
async fn an_open_row_keeps_what_the_last_finished_one_left_protected() {
    let (dir, store) = fresh().await;
    let snaps = dir.path().join("snapshots");
    let (ws, _) = after_update(&store, &snaps, "acme", &["data"], UpdatePhase::RolledBack).await;
    let next = open(&store, &ws, Some(&digest('1')), &digest('3'), 30).await;
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    let newest = live
        .iter()
        .find(|(r, _)| r.id.as_str() == "acme-data-new")
        .unwrap();
    assert_eq!(newest.1.last_finished, Some(UpdatePhase::RolledBack));
    assert!(newest.1.protection(&newest.0).is_some());
    // The attempt's own snapshot is needed, and now the newest copy.
    snapshot(
        &store,
        &snaps,
        &ws,
        Some(next.id),
        "data",
        "acme-data-next",
        31,
    )
    .await;
    assert_eq!(
        ids(&victims(&store).await),
        ["acme-data-new", "acme-data-old"]
    );
}

#[tokio::test]
async fn a_queued_restore_is_one_transaction_and_its_snapshots_are_needed() {
    let (dir, store) = fresh().await;
    let snaps = dir.path().join("snapshots");
    let (ws, _) = after_update(&store, &snaps, "acme", &["data"], UpdatePhase::Succeeded).await;
    let old = SnapshotId::parse("acme-data-old").unwrap();
    let req = RestoreRequest {
        workspace_id: ws.id,
        workspace: ws.name.clone(),
        kind: UpdateKind::Restore,
        from_digest: Some(digest('2')),
        to_digest: digest('2'),
        snapshots: vec![old.clone()],
        source_update: None,
        actor: "ops".into(),
    };
    // A snapshot that stopped being complete: refused, nothing written.
    store
        .set_snapshot_state(&old, sluice::domain::SnapshotState::Failed)
        .await
        .unwrap();
    let before = counts(&store).await;
    let e = store.queue_restore(&req, at(40)).await.unwrap_err();
    assert!(
        matches!(&e, RestoreError::SnapshotNotComplete { id, state } if id == &old && *state == sluice::domain::SnapshotState::Failed),
        "{e}"
    );
    assert_eq!(counts(&store).await, before);
    // A recover request for a workspace that is not quarantined: refused, nothing written.
    sqlx::query("UPDATE snapshots SET state = 'complete' WHERE id = $1")
        .bind(old.as_str())
        .execute(store.raw_pool())
        .await
        .unwrap();
    let recover = RestoreRequest {
        kind: UpdateKind::Recover,
        ..req.clone()
    };
    let e = store.queue_restore(&recover, at(40)).await.unwrap_err();
    assert!(matches!(e, RestoreError::NotQuarantined { .. }), "{e}");
    assert_eq!(counts(&store).await, before);

    let row = store.queue_restore(&req, at(41)).await.unwrap();
    assert_eq!(row.kind, UpdateKind::Restore);
    assert_eq!(row.phase, UpdatePhase::Pulling);
    assert_eq!(ids(&row.restore_snapshot_ids), [old.as_str()]);
    assert_eq!(counts(&store).await, (before.0 + 1, before.1 + 1));
    let live = store
        .live_snapshots(&sluice::domain::HostName::local())
        .await
        .unwrap();
    let (_, facts) = live.iter().find(|(r, _)| r.id == old).unwrap();
    assert!(facts.needed, "an open restore row needs what it restores");
    assert!(!victims(&store).await.contains(&old));

    // The workspace now has an open row: a second request is refused.
    let e = store.queue_restore(&req, at(42)).await.unwrap_err();
    assert!(
        matches!(e, RestoreError::UpdateInProgress { update_id, .. } if update_id == row.id),
        "{e}"
    );
    assert_eq!(counts(&store).await, (before.0 + 1, before.1 + 1));
}

#[tokio::test]
async fn a_recovery_restores_the_quarantining_updates_newest_copies() {
    let (dir, store) = fresh().await;
    let snaps = dir.path().join("snapshots");
    let (ws, quarantining) = after_update(
        &store,
        &snaps,
        "acme",
        &["data", "logs"],
        UpdatePhase::Quarantined,
    )
    .await;
    // A second, newer copy of `data` in the same attempt (a resumed snapshot step).
    snapshot(
        &store,
        &snaps,
        &ws,
        Some(quarantining.id),
        "data",
        "acme-data-retaken",
        23,
    )
    .await;
    let row = store
        .queue_workspace_recover(&ws.name, None, "ops", at(30))
        .await
        .unwrap();
    assert_eq!(row.kind, UpdateKind::Recover);
    assert_eq!(row.to_digest, digest('1'), "what ran before the update");
    assert_eq!(row.from_digest, None, "nothing runs in quarantine");
    assert_eq!(
        ids(&row.restore_snapshot_ids),
        ["acme-data-retaken", "acme-logs-new"]
    );
    let ev = store.events(0, 100).await.unwrap();
    let ev = ev.last().unwrap();
    assert_eq!(ev.action, "workspace_recover_requested");
    assert_eq!(ev.detail["update_id"], row.id);
    assert_eq!(ev.detail["source_update"], quarantining.id);
}

/// The journal of a two-stage snapshot: the row is `writing` with its method from the
/// pre-copy on, `precopied_at` says the pre-copy is written, and only the delta's
/// completion makes it `complete`; neither write touches a row that is not `writing`.
#[tokio::test]
async fn a_two_stage_snapshot_is_journaled_stage_by_stage() {
    let (_dir, store) = fresh().await;
    let ws = crate::snapshot_fixture::workspace(&store, "acme", &["data"]).await;
    let row = open(&store, &ws, None, &digest('a'), 1).await;
    let id = SnapshotId::parse("acme-u1-v0-1").unwrap();
    store
        .insert_snapshot(
            &id,
            ws.id,
            Some(row.id),
            "data",
            "/data",
            "/s/manifests/x.json",
            at(2),
        )
        .await
        .unwrap();
    store.set_snapshot_method(&id, "store").await.unwrap();
    assert_eq!(store.snapshot_precopied_at(&id).await.unwrap(), None);
    store.mark_snapshot_precopied(&id, at(3)).await.unwrap();
    assert_eq!(store.snapshot_precopied_at(&id).await.unwrap(), Some(at(3)));
    let s = store.snapshot(&id).await.unwrap();
    assert_eq!(
        (s.state, s.method.as_deref()),
        (sluice::domain::SnapshotState::Writing, Some("store"))
    );
    let done = sluice::store::SnapshotDone {
        size: 10,
        sha256: "ab".repeat(32),
        manifest_sha256: Some("cd".repeat(32)),
        entries: Some(3),
        method: "store",
    };
    store.complete_snapshot(&id, &done).await.unwrap();
    assert_eq!(
        store.snapshot(&id).await.unwrap().state,
        sluice::domain::SnapshotState::Complete
    );
    // A finished row keeps its record: a late stage cannot rewrite it.
    store.mark_snapshot_precopied(&id, at(9)).await.unwrap();
    store.set_snapshot_method(&id, "archive").await.unwrap();
    let s = store.snapshot(&id).await.unwrap();
    assert_eq!(store.snapshot_precopied_at(&id).await.unwrap(), Some(at(3)));
    assert_eq!(s.method.as_deref(), Some("store"));
}
