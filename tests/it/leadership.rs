//! Leadership on a real PostgreSQL database (these tests always use PostgreSQL, whatever
//! the run's engine): one session holds the leader lock, each claim raises the epoch, the
//! database refuses the loop writes of an old epoch, and a session that holds the lock
//! past its lease is ended by the next candidate. The failover of real daemons in the
//! middle of a rollout is in `leadership_failover.rs`.

use std::time::Duration;

use sluice::clock::{Clock, SystemClock};
use sluice::domain::{ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::store::{Engine, NewEvent, NewWorkspace, Store, TestDb};

use crate::support::unique;

async fn pg() -> (TestDb, Store) {
    let db = TestDb::on(Engine::Postgres).await;
    let store = db.store(4).await;
    (db, store)
}

fn event(action: &str) -> NewEvent {
    NewEvent {
        actor: "system".to_owned(),
        subject: "fleet".to_owned(),
        action: action.to_owned(),
        detail: serde_json::json!({}),
        rollout_id: None,
        workspace: None,
    }
}

fn workspace(name: &str) -> NewWorkspace {
    NewWorkspace {
        host: sluice::domain::HostName::local(),
        name: WorkspaceName::parse(name).unwrap(),
        image: ImageRef::parse("127.0.0.1:5000/app:stable").unwrap(),
        update_tier: Tier::Production,
        update_mode: UpdateMode::Auto,
        maintenance_window: None,
        spec: Default::default(),
    }
}

/// Takes the lock, which a session that just ended frees once its backend has exited
/// (asynchronously, a few milliseconds later).
async fn lock_once_free(s: &mut sluice::store::LeaseSession) {
    for _ in 0..250 {
        if s.try_lock().await.unwrap() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the lock was not freed within 5 s of its session ending");
}

async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.raw_pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn one_session_holds_the_lock_and_every_claim_raises_the_epoch() {
    let (_db, store) = pg().await;
    let ttl = Duration::from_secs(5);
    let mut a = store.lease_session().await.unwrap();
    let mut b = store.lease_session().await.unwrap();
    assert!(
        a.try_lock().await.unwrap(),
        "the first candidate gets the lock"
    );
    assert!(!b.try_lock().await.unwrap(), "a second one does not");
    let first = a.claim("inst-a", ttl).await.unwrap();
    assert_eq!(first.epoch, 1);
    assert_eq!(first.previous, None);
    assert!(a.renew(1, ttl).await.unwrap(), "the holder renews");
    assert!(
        !b.renew(1, ttl).await.unwrap(),
        "another session cannot renew it"
    );
    let lease = store.lease().await.unwrap().expect("a lease row");
    assert_eq!((lease.holder.as_str(), lease.epoch), ("inst-a", 1));
    assert!(!lease.expired());

    // The holder's session ends (its process died): the lock is free as soon as the
    // server has ended that backend, and the next claim names the previous holder and
    // when its lease runs out.
    a.close().await;
    lock_once_free(&mut b).await;
    let second = b.claim("inst-b", ttl).await.unwrap();
    assert_eq!(second.epoch, 2);
    let (previous, ends) = second.previous.expect("the previous holder");
    assert_eq!(previous, "inst-a");
    assert_eq!(ends, lease.expires_at, "the old lease keeps its end");
    assert!(
        ends > second.now,
        "a new leader waits for the old lease to run out"
    );

    // A clean hand-back ends the lease now and frees the lock.
    b.release(2).await.unwrap();
    let lease = store.lease().await.unwrap().unwrap();
    assert!(lease.expired(), "{lease:?}");
    let mut c = store.lease_session().await.unwrap();
    assert!(c.try_lock().await.unwrap());
    assert_eq!(c.claim("inst-c", ttl).await.unwrap().epoch, 3);
}

#[tokio::test]
async fn an_old_epoch_cannot_write_after_a_new_leader_claims() {
    let (_db, store) = pg().await;
    let ttl = Duration::from_secs(30);
    let now = SystemClock.now();
    let mut a = store.lease_session().await.unwrap();
    assert!(a.try_lock().await.unwrap());
    let epoch = a.claim("inst-a", ttl).await.unwrap().epoch;
    let old = store.fenced(epoch, 2).await.unwrap();
    old.append_event(&event("test.by_old_leader"), now)
        .await
        .expect("the leader writes while its epoch holds the lease");
    old.insert_workspace(&workspace(&unique("fence-a")), now)
        .await
        .expect("the leader writes workspaces too");

    // A new leader claims (the old one's session was ended, as after a freeze).
    a.close().await;
    let mut b = store.lease_session().await.unwrap();
    lock_once_free(&mut b).await;
    let new_epoch = b.claim("inst-b", ttl).await.unwrap().epoch;
    assert_eq!(new_epoch, epoch + 1);
    let (events, workspaces) = (
        count(&store, "events").await,
        count(&store, "workspaces").await,
    );

    // Every loop table refuses the old epoch, whatever the statement.
    let e = old
        .append_event(&event("test.late_write"), now)
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "led at epoch {epoch}, the lease is at epoch {new_epoch}"
        )),
        "the refusal says why: {e}"
    );
    let e = old
        .insert_workspace(&workspace(&unique("fence-b")), now)
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    for table in [
        "workspaces",
        "workspace_updates",
        "failed_digests",
        "rollouts",
        "rollout_targets",
        "releases",
        "tracked_images",
        "snapshots",
        "settings",
    ] {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(old.raw_pool())
            .await;
        let err = r.expect_err(table).to_string();
        assert!(err.contains("write fenced"), "{table}: {err}");
    }
    assert_eq!(
        count(&store, "events").await,
        events,
        "no late event landed"
    );
    assert_eq!(
        count(&store, "workspaces").await,
        workspaces,
        "no late workspace landed"
    );

    // The new leader's pool and any unfenced connection (the API of every instance) write.
    let new = store.fenced(new_epoch, 2).await.unwrap();
    new.append_event(&event("test.by_new_leader"), now)
        .await
        .expect("the new leader writes");
    store
        .append_event(&event("test.by_the_api"), now)
        .await
        .expect("the API writes through any instance");
    assert_eq!(count(&store, "events").await, events + 2);
}

#[tokio::test]
async fn a_session_holding_the_lock_past_its_lease_is_ended() {
    let (_db, store) = pg().await;
    let mut frozen = store.lease_session().await.unwrap();
    assert!(frozen.try_lock().await.unwrap());
    frozen
        .claim("inst-frozen", Duration::from_millis(300))
        .await
        .unwrap();
    let mut next = store.lease_session().await.unwrap();
    let grace = Duration::from_millis(200);
    assert_eq!(
        next.end_expired_holder(grace).await.unwrap(),
        0,
        "a live lease's holder is left alone"
    );
    assert!(!next.try_lock().await.unwrap());
    // Nothing renews: the lease runs out, then the grace.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(next.end_expired_holder(grace).await.unwrap(), 1);
    assert!(!frozen.ping().await, "the frozen leader's session is gone");
    lock_once_free(&mut next).await;
    let claim = next
        .claim("inst-next", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(claim.epoch, 2);
}

/// Not leadership, but the other PostgreSQL-only behaviour of the store: a rollout of
/// many workspaces refreshes the planner statistics of its targets at once, so the
/// controller's passes do not wait for autovacuum to learn that the table grew.
#[tokio::test]
async fn a_large_rollout_refreshes_the_statistics_of_its_targets() {
    let (_db, store) = pg().await;
    let pool = store.raw_pool();
    let image = "127.0.0.1:5000/app:stable";
    let (d1, d2) = (
        "sha256:".to_owned() + &"1".repeat(64),
        "sha256:".to_owned() + &"2".repeat(64),
    );
    sqlx::query(
        "INSERT INTO workspaces (name, image, update_tier, desired_digest, actual_digest, state, \
         health, created_at, updated_at) SELECT 'ws' || CAST(i AS TEXT), $1, 'production', $2, $2, \
         'running', 'healthy', 0, 0 FROM generate_series(1, 1200) AS i",
    )
    .bind(image)
    .bind(&d1)
    .execute(pool)
    .await
    .unwrap();
    let release: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, 0, 0) RETURNING id",
    )
    .bind(image)
    .bind(&d2)
    .fetch_one(pool)
    .await
    .unwrap();
    let analyzed = async || -> Option<i64> {
        sqlx::query_scalar(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'rollout_targets'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    };
    let before = analyzed().await.unwrap_or(0);
    let ops = sluice::rollout::ops::Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: std::sync::Arc::new(sluice::config::RolloutSettings::default()),
        wakers: sluice::wake::Wakers::new(),
        clock: std::sync::Arc::new(SystemClock),
        metrics: sluice::rollout::metrics::RolloutMetrics::unregistered(),
    });
    ops.apply(release, sluice::domain::ApplyTier::Production, true, "ops")
        .await
        .expect("apply to 1,200 workspaces");
    // The statistics views are updated a moment after the command.
    for _ in 0..100 {
        if analyzed().await.unwrap_or(0) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("rollout_targets was not analyzed after 1,200 targets were inserted");
}
