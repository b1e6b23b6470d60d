//! Rollback with `restore_data` on the real Docker engine: v1 with data → a rollout
//! moves the (canary) workspace to v2 → the tenant writes more → `rollback` with
//! `restore_data` → v1 runs again on exactly the pre-update volume tree; the writes
//! made since are gone.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sluice::clock::{Clock, SystemClock};
use sluice::config::RolloutSettings;
use sluice::domain::{ApplyTier, RolloutState, UpdatePhase};
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::wake::Wakers;

use sluice::domain::Digest;

use crate::reconciler::{Env, env, kill_at};
use crate::support::run;

/// A workspace moved v1 → v2 by a (soaking canary) rollout, with writes made under v2,
/// and that rollout rolled back with `restore_data` (not yet converged).
struct Case {
    e: Env,
    img: String,
    d1: Digest,
    rollout: i64,
    /// Tree and boot log right before v1 was stopped for the update.
    before: String,
    boots_before: String,
}

async fn rolled_back_with_restore(tag: &str) -> Case {
    let mut e = env(tag).await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let img = e.local_image(&d1);
    e.seed(&img);
    sqlx::query("UPDATE workspaces SET update_tier = 'canary' WHERE id = $1")
        .bind(e.ws.id)
        .execute(e.store.raw_pool())
        .await
        .unwrap();
    e.desire(&d1).await;
    e.rec.converge_all().await.unwrap();
    assert_eq!(e.http("/version"), "v1");

    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: e.store.clone(),
        settings: Arc::new(RolloutSettings::default()),
        wakers: Wakers::new(),
        clock: Arc::new(SystemClock),
        metrics: RolloutMetrics::unregistered(),
    });
    let ctl = Controller::new(ops.deps().clone(), Duration::from_secs(5));
    let image = format!("{}:stable", e.repo);
    let release: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, updated_at) \
         VALUES ($1, $2, $3, $3) RETURNING id",
    )
    .bind(&image)
    .bind(d2.as_str())
    .bind(sluice::clock::to_millis(SystemClock.now()))
    .fetch_one(e.store.raw_pool())
    .await
    .unwrap();
    let rollout = ops
        .apply(release, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    ctl.tick().await.unwrap();
    let before = e.tree(&img);
    let boots_before = e.boots(&img);
    e.rec.converge_all().await.unwrap();
    ctl.tick().await.unwrap();
    assert_eq!(
        ops.rollout(rollout).await.unwrap().status.state,
        RolloutState::Soaking
    );
    assert_eq!(e.http("/version"), "v2");

    // Writes made under v2: a new file, a rewritten one, a removed one.
    run(Command::new("docker").args([
        "exec",
        &e.container(),
        "sh",
        "-c",
        "echo new > /data/after && echo 'schema v2' > /data/app.db && rm /data/link",
    ]));
    assert_ne!(e.tree(&img), before);

    let out = ops.rollback(rollout, true, "ops").await.unwrap();
    assert!(
        out.warning.is_some(),
        "restore_data warns about lost writes"
    );
    Case {
        e,
        img,
        d1,
        rollout,
        before,
        boots_before,
    }
}

impl Case {
    /// v1 runs on exactly the pre-update tree; the restore is recorded as done.
    async fn assert_restored(&self) {
        let e = &self.e;
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        assert_eq!(u.phase, UpdatePhase::Succeeded, "error: {:?}", u.error);
        assert_eq!(u.to_digest, self.d1);
        assert_eq!(u.snapshot_ids.len(), 1, "v2's volume was snapshotted first");
        assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&self.d1));
        assert_eq!(e.http("/version"), "v1");
        assert_eq!(
            e.tree(&self.img),
            self.before,
            "volume tree differs from before the update"
        );
        assert_eq!(
            e.boots(&self.img),
            format!("{}boot version=v1 mode=good\n", self.boots_before),
            "v2's boot is gone; v1 booted once on the restored volume"
        );
        let done: Option<i64> =
            sqlx::query_scalar("SELECT restore_done_at FROM rollout_targets WHERE rollout_id = $1")
                .bind(self.rollout)
                .fetch_one(e.store.raw_pool())
                .await
                .unwrap();
        assert!(done.is_some());
    }
}

#[tokio::test]
async fn rollback_with_restore_data_returns_the_pre_update_volume_tree() {
    let c = rolled_back_with_restore("rr-rest").await;
    c.e.rec.converge_all().await.unwrap();
    c.assert_restored().await;
    // Done once: later passes leave it alone.
    let last =
        c.e.store
            .latest_update(c.e.ws.id)
            .await
            .unwrap()
            .unwrap()
            .id;
    c.e.rec.converge_all().await.unwrap();
    assert_eq!(
        c.e.store
            .latest_update(c.e.ws.id)
            .await
            .unwrap()
            .unwrap()
            .id,
        last
    );
}

#[tokio::test]
async fn a_restore_killed_at_recreating_is_resumed_by_the_next_daemon() {
    let c = rolled_back_with_restore("rr-kill").await;
    // Paused right after journaling `recreating` (v2 stopped and snapshotted, nothing
    // restored yet), SIGKILLed, restarted: the restore is finished by the resume.
    let (phase, _daemon) = kill_at(&c.e, "recreating").await;
    assert_eq!(phase, UpdatePhase::Succeeded);
    c.assert_restored().await;
}
