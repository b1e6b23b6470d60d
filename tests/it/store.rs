//! The SQLite store against real database files.

use chrono::Utc;
use sluice::domain::{FleetMode, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::store::{NewEvent, NewWorkspace, Store, StoreError};
use std::time::Duration;

async fn fresh() -> (sluice::store::TestDb, Store) {
    let db = sluice::store::TestDb::new().await;
    let store = db.store(4).await;
    (db, store)
}

fn new_ws(name: &str) -> NewWorkspace {
    NewWorkspace {
        host: sluice::domain::HostName::local(),
        name: WorkspaceName::parse(name).unwrap(),
        image: ImageRef::parse("127.0.0.1:5000/app:stable").unwrap(),
        update_tier: Tier::default(),
        update_mode: UpdateMode::Auto,
        maintenance_window: None,
        spec: Default::default(),
    }
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_again_as_a_no_op() {
    let (db, store) = fresh().await;
    let first = store.applied_migrations().await.unwrap();
    assert!(!first.is_empty());
    store.migrate().await.expect("second migrate is a no-op");
    assert_eq!(store.applied_migrations().await.unwrap(), first);
    store.close().await;
    // A second process opening the same database sees the same schema.
    let again = Store::open(db.url(), 1, Duration::from_secs(5))
        .await
        .unwrap();
    again.migrate().await.unwrap();
    assert_eq!(again.applied_migrations().await.unwrap(), first);
}

#[tokio::test]
async fn the_database_itself_rejects_an_unknown_tier_and_defaults_to_production() {
    let (_dir, store) = fresh().await;
    let bad = sqlx::query(
        "INSERT INTO workspaces (name, image, update_tier, created_at, updated_at) VALUES ('a', 'x', 'canery', 0, 0)",
    )
    .execute(store.raw_pool())
    .await;
    let e = bad
        .expect_err("CHECK constraint must refuse canery")
        .to_string();
    assert!(e.to_lowercase().contains("check"), "{e}");

    sqlx::query(
        "INSERT INTO workspaces (name, image, created_at, updated_at) VALUES ('b', 'x', 0, 0)",
    )
    .execute(store.raw_pool())
    .await
    .unwrap();
    let tier: String = sqlx::query_scalar("SELECT update_tier FROM workspaces WHERE name = 'b'")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(tier, "production");

    let ws = store
        .insert_workspace(&new_ws("acme"), Utc::now())
        .await
        .unwrap();
    assert_eq!(ws.update_tier, Tier::Production);
    let canaries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE update_tier = 'canary'")
            .fetch_one(store.raw_pool())
            .await
            .unwrap();
    assert_eq!(canaries, 0);
}

/// Each closed set of states is a CHECK of the database on either engine, so a writer
/// that bypasses the typed store (or a bug in it) cannot store a state nothing reads.
#[tokio::test]
async fn the_database_refuses_states_outside_their_closed_sets() {
    let (_db, store) = fresh().await;
    let pool = store.raw_pool();
    let run = |sql: &'static str| async move { sqlx::query(sql).execute(pool).await };
    run("INSERT INTO workspaces (id, name, image, created_at, updated_at) VALUES (1, 'w', 'x', 0, 0)")
        .await
        .unwrap();
    run("INSERT INTO releases (id, image, digest, detected_at, updated_at) VALUES (1, 'x', 'd', 0, 0)")
        .await
        .unwrap();
    run(
        "INSERT INTO rollouts (id, release_id, state, started_by, created_at, updated_at) \
         VALUES (1, 1, 'pending', 'ops', 0, 0)",
    )
    .await
    .unwrap();
    let refused = [
        (
            "workspaces.state",
            "UPDATE workspaces SET state = 'sleeping' WHERE id = 1",
        ),
        (
            "workspaces.health",
            "UPDATE workspaces SET health = 'fine' WHERE id = 1",
        ),
        (
            "workspaces.update_mode",
            "UPDATE workspaces SET update_mode = 'later' WHERE id = 1",
        ),
        (
            "releases.status",
            "UPDATE releases SET status = 'shipped' WHERE id = 1",
        ),
        (
            "rollouts.state",
            "UPDATE rollouts SET state = 'done' WHERE id = 1",
        ),
        (
            "rollout_targets.status",
            "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, status, to_digest, updated_at) \
             VALUES (1, 1, 'canary', 'halfway', 'd', 0)",
        ),
        (
            "rollout_targets.tier",
            "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, to_digest, updated_at) \
             VALUES (1, 1, 'beta', 'd', 0)",
        ),
        (
            "workspace_updates.phase",
            "INSERT INTO workspace_updates (workspace_id, to_digest, phase, started_at, updated_at) \
             VALUES (1, 'd', 'dancing', 0, 0)",
        ),
        (
            "workspace_updates.kind",
            "INSERT INTO workspace_updates (workspace_id, to_digest, phase, kind, started_at, updated_at) \
             VALUES (1, 'd', 'pulling', 'upgrade', 0, 0)",
        ),
        (
            "snapshots.state",
            "INSERT INTO snapshots (id, workspace_id, volume, path, state, created_at) \
             VALUES ('s1', 1, 'v', 'p', 'halfway', 0)",
        ),
    ];
    for (rule, sql) in refused {
        let e = run(sql).await.expect_err(rule).to_string();
        assert!(e.to_lowercase().contains("check"), "{rule}: {e}");
    }
    // The partial index behind the controller's canary lookup exists on both engines.
    let index_sql = match store.engine() {
        sluice::store::Engine::Sqlite => {
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'workspaces_canary'"
        }
        sluice::store::Engine::Postgres => {
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'workspaces_canary'"
        }
    };
    let def: String = sqlx::query_scalar(index_sql).fetch_one(pool).await.unwrap();
    assert!(def.contains("WHERE") && def.contains("canary"), "{def}");
}

#[tokio::test]
async fn duplicate_names_and_stale_versions_are_refused() {
    let (_dir, store) = fresh().await;
    let ws = store
        .insert_workspace(&new_ws("acme"), Utc::now())
        .await
        .unwrap();
    assert!(matches!(
        store.insert_workspace(&new_ws("acme"), Utc::now()).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    store
        .set_workspace_tier(&ws.name, Tier::Canary, ws.version, Utc::now())
        .await
        .unwrap();
    // The same expected version again lost the race.
    let e = store
        .set_workspace_tier(&ws.name, Tier::Production, ws.version, Utc::now())
        .await;
    assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
    let now = store.workspace(&ws.name).await.unwrap();
    assert_eq!(now.update_tier, Tier::Canary);
    assert_eq!(now.version, ws.version + 1);
}

#[tokio::test]
async fn events_are_append_only_and_fleet_mode_changes_are_audited() {
    let (_dir, store) = fresh().await;
    assert_eq!(store.fleet_mode().await.unwrap(), FleetMode::Manual);
    store
        .set_fleet_mode(FleetMode::Paused, "ops", Utc::now())
        .await
        .unwrap();
    assert_eq!(store.fleet_mode().await.unwrap(), FleetMode::Paused);
    let id = store
        .append_event(
            &NewEvent {
                actor: "system".into(),
                subject: "workspace:acme".into(),
                action: "test".into(),
                detail: serde_json::json!({"k": 1}),
                rollout_id: None,
                workspace: Some("acme".into()),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let events = store.events(0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].actor, "ops");
    assert_eq!(events[0].detail["after"], "paused");
    assert_eq!(events[1].id, id);
    for sql in ["UPDATE events SET actor = 'x'", "DELETE FROM events"] {
        let e = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.raw_pool())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
    assert_eq!(store.events(id - 1, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_deleted_workspace_gives_its_name_up_and_keeps_its_history() {
    let (_dir, store) = fresh().await;
    let first = store
        .insert_workspace(&new_ws("acme"), Utc::now())
        .await
        .unwrap();
    assert!(
        store
            .delete_workspace_audited(&first.name, false, "ops", Utc::now())
            .await
            .unwrap()
    );
    assert!(matches!(
        store.workspace(&first.name).await,
        Err(StoreError::NotFound { .. })
    ));
    let again = store
        .insert_workspace(&new_ws("acme"), Utc::now())
        .await
        .expect("the name is free again");
    assert_ne!(again.id, first.id);
    assert_eq!(store.workspace(&first.name).await.unwrap().id, again.id);
    let names: Vec<String> = store
        .workspaces()
        .await
        .unwrap()
        .iter()
        .map(|w| w.name.to_string())
        .collect();
    assert_eq!(names, ["acme"], "the deleted row is not listed");
    // The old row and its audit trail stay.
    let old: (String, Option<i64>) =
        sqlx::query_as("SELECT name, deleted_at FROM workspaces WHERE id = $1")
            .bind(first.id)
            .fetch_one(store.raw_pool())
            .await
            .unwrap();
    assert_eq!(old.0, format!("acme~deleted-{}", first.id));
    assert!(old.1.is_some());
    let events = store.events(0, 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "workspace.deleted" && e.subject == "workspace:acme"),
        "{events:?}"
    );
}

#[tokio::test]
async fn journal_writes_are_compare_and_set_on_the_phase_they_leave() {
    use sluice::domain::{Digest, Health, UpdatePhase, WorkspaceState};
    use sluice::store::Outcome;

    let (_dir, store) = fresh().await;
    let now = Utc::now();
    let w = store.insert_workspace(&new_ws("cas"), now).await.unwrap();
    let to = Digest::of_bytes(b"to");
    let row = store.open_update(w.id, None, None, &to, now).await.unwrap();
    store
        .advance_update(row.id, UpdatePhase::Pulling, UpdatePhase::Stopping, now)
        .await
        .unwrap();
    // A second driver that still believes the row is in `pulling` is refused.
    let stale = store
        .advance_update(row.id, UpdatePhase::Pulling, UpdatePhase::Stopping, now)
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Conflict { .. }), "{stale}");
    assert!(
        stale.to_string().contains("no longer in phase pulling"),
        "{stale}"
    );
    let event = |action: &str| NewEvent {
        actor: "system".into(),
        subject: "workspace:cas".into(),
        action: action.into(),
        detail: serde_json::json!({}),
        rollout_id: None,
        workspace: Some("cas".into()),
    };
    let before = store.events(0, 100).await.unwrap().len();
    let e = store
        .begin_rollback(&row, UpdatePhase::Starting, "boom", &event("x"), now)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict { .. }));
    assert_eq!(
        store.events(0, 100).await.unwrap().len(),
        before,
        "a refused rollback writes no event"
    );
    // The terminal write checks the phase too, and a refusal changes nothing.
    let outcome = Outcome {
        from_phase: UpdatePhase::HealthChecking,
        phase: UpdatePhase::Succeeded,
        error: None,
        actual_digest: Some(to.clone()),
        container_id: None,
        state: WorkspaceState::Running,
        health: Health::Healthy,
        remember_failure: false,
        reset_desired: false,
        restored_from_update: None,
        event: event("update_succeeded"),
    };
    assert!(matches!(
        store.finish_update(&row, &outcome, now).await,
        Err(StoreError::Conflict { .. })
    ));
    let w2 = store.workspace(&w.name).await.unwrap();
    assert_eq!(w2.actual_digest, None, "the workspace row is untouched");
    assert_eq!(store.events(0, 100).await.unwrap().len(), before);
    let right = Outcome {
        from_phase: UpdatePhase::Stopping,
        ..outcome
    };
    store.finish_update(&row, &right, now).await.unwrap();
    assert_eq!(
        store.latest_update(w.id).await.unwrap().unwrap().phase,
        UpdatePhase::Succeeded
    );
}

/// What one host's reconciler reads: its own workspaces, journal rows, retirements and
/// snapshots, never another host's (an agent must not converge, resume, retire or
/// expire what another host holds).
#[tokio::test]
async fn a_host_reads_only_its_own_workspaces_journal_retirements_and_snapshots() {
    use sluice::domain::{Digest, HostName, SnapshotId};
    let (_db, store) = fresh().await;
    let now = Utc::now();
    let (a, b) = (HostName::parse("a").unwrap(), HostName::parse("b").unwrap());
    let d1 = Digest::parse(&format!("sha256:{}", "11".repeat(32))).unwrap();
    let d2 = Digest::parse(&format!("sha256:{}", "22".repeat(32))).unwrap();
    let mut ids = Vec::new();
    for (name, host) in [("on-a", &a), ("on-b", &b), ("on-b2", &b)] {
        let mut w = new_ws(name);
        w.host = host.clone();
        let w = store.insert_workspace(&w, now).await.unwrap();
        assert_eq!(&w.host, host, "the row keeps its host");
        store
            .set_desired_digest(w.id, Some(&d1), None, now)
            .await
            .unwrap();
        ids.push(w.id);
    }
    let names = |v: Vec<sluice::store::Workspace>| -> Vec<String> {
        v.into_iter().map(|w| w.name.to_string()).collect()
    };
    assert_eq!(names(store.workspaces_on(&a).await.unwrap()), ["on-a"]);
    assert_eq!(
        names(store.workspaces_on(&b).await.unwrap()),
        ["on-b", "on-b2"]
    );
    let targets = |t: Vec<sluice::store::ConvergeTarget>| -> Vec<String> {
        t.into_iter().map(|t| t.name).collect()
    };
    assert_eq!(targets(store.converge_targets(&a).await.unwrap()), ["on-a"]);
    assert_eq!(
        targets(store.converge_targets(&b).await.unwrap()),
        ["on-b", "on-b2"]
    );
    // An open journal row on b is b's to resume.
    let row = store
        .open_update(ids[1], None, None, &d2, now)
        .await
        .unwrap();
    assert!(store.open_updates(&a).await.unwrap().is_empty());
    let open: Vec<i64> = store
        .open_updates(&b)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, [row.id]);
    // A snapshot is recorded on its workspace's host, and expired only by that host.
    let sid = SnapshotId::parse("snap-b").unwrap();
    store
        .insert_snapshot(
            &sid,
            ids[2],
            None,
            "on-b2-data",
            "/data",
            "/snaps/snap-b.tar",
            now,
        )
        .await
        .unwrap();
    let host: String = sqlx::query_scalar("SELECT host FROM snapshots WHERE id = 'snap-b'")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(host, "b");
    assert!(store.live_snapshots(&a).await.unwrap().is_empty());
    assert_eq!(store.live_snapshots(&b).await.unwrap().len(), 1);
    // A deleted workspace is retired by its own host.
    let gone = WorkspaceName::parse("on-b2").unwrap();
    assert!(
        store
            .delete_workspace_audited(&gone, false, "ops", now)
            .await
            .unwrap()
    );
    assert!(store.pending_retirements(&a).await.unwrap().is_empty());
    assert_eq!(store.pending_retirements(&b).await.unwrap().len(), 1);
}

/// Every phase change of a journal row is logged with it: opening, advancing, the
/// rollback and the terminal write; a refused compare-and-set logs nothing; each phase
/// lasts until the next began, an open attempt's last one until the caller's now.
#[tokio::test]
async fn every_phase_change_is_logged_with_its_time() {
    use chrono::Duration;
    use sluice::domain::{Digest, Health, UpdatePhase as P, WorkspaceState};
    use sluice::store::Outcome;

    let (_db, store) = fresh().await;
    let t0 = Utc::now();
    let at = |s: i64| t0 + Duration::seconds(s);
    let w = store.insert_workspace(&new_ws("log"), t0).await.unwrap();
    let to = Digest::of_bytes(b"to");
    let row = store
        .open_update(w.id, None, None, &to, at(0))
        .await
        .unwrap();
    let seen = |spans: Vec<sluice::store::PhaseSpan>| {
        spans
            .iter()
            .map(|s| (s.seq, s.phase, s.duration.num_seconds()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen(store.update_phases(row.id, at(4)).await.unwrap()),
        vec![(1, P::Pulling, 4)],
        "an open attempt's phase runs until now"
    );
    store
        .advance_update(row.id, P::Pulling, P::Stopping, at(2))
        .await
        .unwrap();
    assert!(
        store
            .advance_update(row.id, P::Pulling, P::Stopping, at(3))
            .await
            .is_err()
    );
    store
        .advance_update(row.id, P::Stopping, P::Snapshotting, at(5))
        .await
        .unwrap();
    let event = NewEvent {
        actor: "system".into(),
        subject: "workspace:log".into(),
        action: "update_failed".into(),
        detail: serde_json::json!({}),
        rollout_id: None,
        workspace: Some("log".into()),
    };
    store
        .begin_rollback(&row, P::Snapshotting, "boom", &event, at(9))
        .await
        .unwrap();
    store
        .advance_update(row.id, P::RollingBack, P::Reverting, at(10))
        .await
        .unwrap();
    let outcome = Outcome {
        from_phase: P::Reverting,
        phase: P::RolledBack,
        error: None,
        actual_digest: None,
        container_id: None,
        state: WorkspaceState::Running,
        health: Health::Healthy,
        remember_failure: false,
        reset_desired: false,
        restored_from_update: None,
        event,
    };
    store.finish_update(&row, &outcome, at(13)).await.unwrap();
    let spans = store.update_phases(row.id, at(100)).await.unwrap();
    assert_eq!(
        spans[0].entered_at.timestamp_millis(),
        at(0).timestamp_millis()
    );
    assert_eq!(
        seen(spans),
        vec![
            (1, P::Pulling, 2),
            (2, P::Stopping, 3),
            (3, P::Snapshotting, 4),
            (4, P::RollingBack, 1),
            (5, P::Reverting, 3),
            (6, P::RolledBack, 0),
        ]
    );
    // Another update's log is its own.
    let other = store
        .open_update(w.id, None, None, &to, at(20))
        .await
        .unwrap();
    assert_eq!(
        store.update_phases(other.id, at(21)).await.unwrap().len(),
        1
    );
}
