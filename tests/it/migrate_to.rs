//! `sluice migrate --to postgres://…` through the real binary: a SQLite database with
//! history in every table is copied into an empty PostgreSQL database, and a daemon
//! started on PostgreSQL serves the same workspaces, rollout and audit trail with the
//! same ids, leads, and inserts new rows after the copied ones. A target holding data is
//! refused with one line and left unchanged. Needs the PostgreSQL test cluster
//! (`SLUICE_TEST_PG`); no Docker (the daemons here never reach an engine).

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sluice::config::Secret;
use sluice::domain::{FleetMode, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::store::{COPY_PLAN, Engine, NewEvent, NewWorkspace, Store, TestDb};

use crate::api::TestApi;
use crate::database_input::{
    PASSWORD, contents, refused_with_one_line, run_bounded, sluice, with_password,
};

const LIMIT: Duration = Duration::from_secs(60);
/// An image at a port nothing listens on: the daemon's watcher finds nothing there.
const IMAGE: &str = "127.0.0.1:1/sluice-migrate/app:stable";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn new_ws(name: &str, tier: Tier) -> NewWorkspace {
    NewWorkspace {
        host: sluice::domain::HostName::local(),
        name: WorkspaceName::parse(name).unwrap(),
        image: ImageRef::parse(IMAGE).unwrap(),
        update_tier: tier,
        update_mode: UpdateMode::Auto,
        maintenance_window: None,
        spec: Default::default(),
    }
}

/// History in every table but `leases`' successor: two workspaces updated by a completed
/// rollout (journal, snapshot, targets), a failed digest, a tracked image, a superseded
/// release, the fleet mode changed, the notifier's cursor, an old lease, audit events.
async fn build_history(store: &Store) -> i64 {
    let now = Utc::now();
    let pool = store.raw_pool();
    let canary = store
        .create_workspace_audited(
            &new_ws("mig-canary", Tier::Canary),
            None,
            &[],
            "ops-alice",
            now,
        )
        .await
        .unwrap();
    let prod = store
        .create_workspace_audited(
            &new_ws("mig-prod", Tier::Production),
            None,
            &[],
            "ops-alice",
            now,
        )
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO tracked_images (image, latest_digest, last_probe_at, last_success_at, \
         next_probe_at) VALUES ($1, $2, 1000, 1000, 9000000000000)",
    )
    .bind(IMAGE)
    .bind(digest('b'))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO releases (image, digest, detected_at, status, status_reason, updated_at) \
         VALUES ($1, $2, 500, 'superseded', 'newer digest', 600)",
    )
    .bind(IMAGE)
    .bind(digest('a'))
    .execute(pool)
    .await
    .unwrap();
    let release: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, changelog, status, updated_at) \
         VALUES ($1, $2, 1000, 'ünïcødé ✓', 'completed', 5000) RETURNING id",
    )
    .bind(IMAGE)
    .bind(digest('b'))
    .fetch_one(pool)
    .await
    .unwrap();
    let strategy = sluice::rollout::strategy::Strategy::for_image(
        &sluice::config::RolloutSettings::default(),
        IMAGE,
    );
    let rollout: i64 = sqlx::query_scalar(
        "INSERT INTO rollouts (release_id, state, strategy, started_by, created_at, updated_at, \
         finished_at) VALUES ($1, 'completed', $2, 'ops-alice', 1000, 5000, 5000) RETURNING id",
    )
    .bind(release)
    .bind(serde_json::to_string(&strategy).unwrap())
    .fetch_one(pool)
    .await
    .unwrap();
    for (ws, tier, wave) in [(&canary, "canary", 0_i64), (&prod, "production", 1)] {
        let update: i64 = sqlx::query_scalar(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, \
             phase, snapshot_ids, started_at, updated_at, finished_at) \
             VALUES ($1, $2, $3, $4, 'succeeded', $5, 2000, 3000, 3000) RETURNING id",
        )
        .bind(ws.id)
        .bind(rollout)
        .bind(digest('a'))
        .bind(digest('b'))
        .bind(format!("[\"snap-{}\"]", ws.id))
        .fetch_one(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, wave, status, \
             from_digest, to_digest, attempts, update_id, updated_at) \
             VALUES ($1, $2, $3, $4, 'updated', $5, $6, 1, $7, 3000)",
        )
        .bind(rollout)
        .bind(ws.id)
        .bind(tier)
        .bind(wave)
        .bind(digest('a'))
        .bind(digest('b'))
        .bind(update)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO snapshots (id, workspace_id, update_id, volume, mount_path, path, \
             size_bytes, sha256, state, created_at, method, entries) \
             VALUES ($1, $2, $3, 'data', '/data', '/tmp/none.tar', 10, $4, 'complete', 2500, \
             'host', 3)",
        )
        .bind(format!("snap-{}", ws.id))
        .bind(ws.id)
        .bind(update)
        .bind("0".repeat(64))
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE workspaces SET desired_digest = $1, actual_digest = $1, desired_rollout_id = $2, \
             state = 'running', health = 'healthy' WHERE id = $3",
        )
        .bind(digest('b'))
        .bind(rollout)
        .bind(ws.id)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO failed_digests (workspace_id, digest, failed_at, reason) \
         VALUES ($1, $2, 4000, 'health check failed')",
    )
    .bind(prod.id)
    .bind(digest('c'))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO leases (name, holder, expires_at) VALUES ('leader', 'old-host', 0)")
        .execute(pool)
        .await
        .unwrap();
    let last = store
        .append_event(
            &NewEvent {
                actor: "system".into(),
                subject: format!("rollout:{rollout}"),
                action: "rollout.completed".into(),
                detail: json!({"note": "ünïcødé ✓", "targets": 2}),
                rollout_id: Some(rollout),
                workspace: None,
            },
            now,
        )
        .await
        .unwrap();
    store
        .set_fleet_mode(FleetMode::Paused, "ops-alice", now)
        .await
        .unwrap();
    store.set_notify_cursor(last, now).await.unwrap();
    rollout
}

/// Migrates `source` into `target_url` with the real binary.
fn migrate(source: &TestDb, target_url: &str) -> std::process::Output {
    let mut cmd = sluice(
        &["migrate", "--to", target_url],
        source.path(),
        source.url(),
    );
    run_bounded(&mut cmd, LIMIT).0
}

#[tokio::test]
async fn the_copy_plan_names_every_table_of_both_schemas() {
    let mut plan: Vec<String> = COPY_PLAN.iter().map(|(t, _)| (*t).to_owned()).collect();
    plan.sort();
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let db = TestDb::on(engine).await;
        let store = db.store(1).await;
        assert_eq!(
            store.table_names().await.unwrap(),
            plan,
            "{engine:?}: a table added to the schema must be added to the copy plan \
             (src/store/copy.rs) in dependency order"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_migrated_database_serves_the_same_history_on_postgresql() {
    let source = TestDb::on(Engine::Sqlite).await;
    let store = source.store(2).await;
    let rollout = build_history(&store).await;
    // Enough audit entries for several INSERTs per table.
    sqlx::query(
        "INSERT INTO events (at, actor, subject, action, detail) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         SELECT 7000 + i, 'system', 'fleet', 'test.bulk', '{\"i\": ' || i || '}' FROM n",
    )
    .execute(store.raw_pool())
    .await
    .unwrap();
    let workspaces = store.workspaces().await.unwrap();
    let last_event = store.last_event_id().await.unwrap();
    let mut events = store.events(0, 1000).await.unwrap();
    events.extend(store.events(last_event - 5, 1000).await.unwrap());
    let before = contents(&store).await;
    store.close().await;

    let target = TestDb::on(Engine::Postgres).await;
    let out = migrate(&source, &with_password(target.url()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("postgres://sluice:***@"), "{stdout}");
    let n = 2500 + 4; // the bulk, 2 creations, a completion, a fleet mode change
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["events", &n.to_string(), &n.to_string()]),
        "{stdout}"
    );
    // The source is left as it was, but for the fleet id its first open stored.
    let store = source.store(1).await;
    let fleet = store.stored_fleet().await.unwrap().expect("a fleet id");
    let mut after = contents(&store).await;
    after.retain(|l| !l.contains("fleet_id"));
    let mut expected = before.clone();
    for l in expected.iter_mut().chain(after.iter_mut()) {
        if l.starts_with("settings:") {
            *l = "settings".into();
        }
    }
    assert_eq!(after, expected);
    store.close().await;

    let api = TestApi::start_with(|s| {
        s.database.url = Some(Secret::new(target.url()));
        s.docker.host = Some("unix:///nonexistent/sluice-migrate-test.sock".into());
    })
    .await;
    assert_eq!(api.store.stored_fleet().await.unwrap(), Some(fleet));
    assert_eq!(
        api.store.workspaces().await.unwrap(),
        workspaces,
        "same rows, same ids"
    );
    let (s, listed) = api.admin(Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(s, StatusCode::OK, "{listed}");
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["mig-canary", "mig-prod"]);
    let (s, shown) = api
        .admin(Method::GET, &format!("/api/v1/rollouts/{rollout}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{shown}");
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["workspaces"].as_array().unwrap().len(), 2, "{shown}");
    let (_, fleet_view) = api.admin(Method::GET, "/api/v1/fleet", None).await;
    assert_eq!(fleet_view["mode"], "paused", "{fleet_view}");
    let mut served = Vec::new();
    for since in [0, last_event - 5] {
        let (s, page) = api
            .admin(
                Method::GET,
                &format!("/api/v1/events?since={since}&limit=1000"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        served.extend(page.as_array().unwrap().iter().cloned());
    }
    for e in &events {
        let copy = served.iter().find(|v| v["id"] == e.id);
        assert_eq!(
            copy,
            Some(&serde_json::to_value(e).unwrap()),
            "event {}",
            e.id
        );
    }
    // The lease started afresh: this daemon won it, and its audit entry (like every new
    // row) comes after the copied ids.
    assert!(
        served
            .iter()
            .any(|v| v["action"] == "leader.acquired" && v["id"].as_i64() > Some(last_event)),
        "{served:?}"
    );
    let added = api
        .store
        .create_workspace_audited(
            &new_ws("mig-new", Tier::Canary),
            None,
            &[],
            "ops-alice",
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(added.id > workspaces.iter().map(|w| w.id).max().unwrap());
}

#[tokio::test]
async fn a_target_holding_data_is_refused_and_left_unchanged() {
    let source = TestDb::on(Engine::Sqlite).await;
    let store = source.store(1).await;
    build_history(&store).await;
    store.close().await;

    // A target with one audit entry, and one where a daemon already started (its fleet id).
    let with_event = TestDb::on(Engine::Postgres).await;
    let target = with_event.store(1).await;
    target
        .append_event(
            &NewEvent {
                actor: "system".into(),
                subject: "fleet".into(),
                action: "test.marker".into(),
                detail: json!({}),
                rollout_id: None,
                workspace: None,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let started = TestDb::on(Engine::Postgres).await;
    let other = started.store(1).await;
    other.claim_fleet("blue", Utc::now()).await.unwrap();
    for (db, store, table) in [
        (&with_event, &target, "events"),
        (&started, &other, "settings"),
    ] {
        let before = contents(store).await;
        let line = refused_with_one_error_line(&migrate(&source, &with_password(db.url())));
        assert!(
            line.contains("not empty") && line.contains(&format!("table `{table}`")),
            "{line}"
        );
        assert_eq!(
            contents(store).await,
            before,
            "nothing written to the target"
        );
        store.close().await;
    }

    // A target that is not PostgreSQL, a source that is, and no source: refused too.
    let scratch = TestDb::on(Engine::Sqlite).await;
    let line = refused_with_one_error_line(&migrate(&source, scratch.url()));
    assert!(line.contains("must be a PostgreSQL database"), "{line}");
    let mut cmd = sluice(
        &["migrate", "--to", &with_password(started.url())],
        scratch.path(),
        &with_password(with_event.url()),
    );
    let line = refused_with_one_line(&run_bounded(&mut cmd, LIMIT).0);
    assert!(line.contains("is already PostgreSQL"), "{line}");
    let empty = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/none.db", empty.path().display());
    let mut cmd = sluice(
        &["migrate", "--to", &with_password(with_event.url())],
        empty.path(),
        &missing,
    );
    let line = refused_with_one_line(&run_bounded(&mut cmd, LIMIT).0);
    assert!(line.contains("does not exist"), "{line}");
    assert!(!empty.path().join("none.db").exists());
}

#[tokio::test]
async fn a_table_or_column_the_copy_does_not_know_stops_it_before_writing() {
    for (change, named) in [
        (
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
            "table `notes` of the source database is not in the copy plan",
        ),
        (
            "ALTER TABLE workspaces ADD COLUMN owner TEXT",
            "column `workspaces.owner` is missing from the target database",
        ),
    ] {
        let source = TestDb::on(Engine::Sqlite).await;
        let store = source.store(1).await;
        build_history(&store).await;
        sqlx::query(change).execute(store.raw_pool()).await.unwrap();
        store.close().await;
        let db = TestDb::on(Engine::Postgres).await;
        let target = db.store(1).await;
        let before = contents(&target).await;
        let line = refused_with_one_error_line(&migrate(&source, &with_password(db.url())));
        assert!(line.contains(named), "{line}");
        assert_eq!(contents(&target).await, before, "nothing copied");
        target.close().await;
    }
}

/// Like [`refused_with_one_line`], for commands that log before they refuse (opening the
/// source logs its fleet): exactly one error line, no password.
fn refused_with_one_error_line(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "should have failed: {stdout}{stderr}"
    );
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "{stdout}{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sluice: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    errors[0].to_owned()
}
