//! Rollback with `restore_data` on the in-memory runtime and real SQLite, driven by the
//! real controller operations: the restore itself, the refusal when a snapshot is gone
//! (nothing touched), the fallback when one turns out corrupt mid-saga (the just-taken
//! snapshots come back), and retention keeping what a pending restore needs.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{T, digest, pinned, setup};
use crate::clock::{Clock, SystemClock};
use crate::config::{RolloutSettings, Settings};
use crate::domain::{ApplyTier, RolloutState, Tier, UpdatePhase};
use crate::rollout::controller::Controller;
use crate::rollout::metrics::RolloutMetrics;
use crate::rollout::ops::Ops;
use crate::runtime::ContainerRuntime;
use crate::snapshot::Snapshots;
use crate::wake::Wakers;

struct R {
    t: T,
    ops: Ops,
    rollout: i64,
    /// The volume as it was right before the update to v2.
    before: String,
    /// The update to v2 whose snapshots a restore brings back.
    update: i64,
}

/// acme (canary tier) on v1 → rollout of v2 to the canary, soaking; then the tenant
/// writes more data under v2.
async fn updated_to_v2() -> R {
    updated_to_v2_with(true).await
}

async fn updated_to_v2_with(volumes: bool) -> R {
    let t = setup(0).await;
    if !volumes {
        let patch = crate::store::WorkspacePatch {
            spec: Some(crate::domain::spec::WorkspaceSpec::default()),
            ..Default::default()
        };
        t.store
            .patch_workspace(&t.ws.name, &patch, "ops", SystemClock.now())
            .await
            .unwrap();
    }
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    let version = t.ws().await.version;
    t.store
        .set_workspace_tier(&t.ws.name, Tier::Canary, version, SystemClock.now())
        .await
        .unwrap();
    t.desire(1).await;
    let before = if volumes { t.data() } else { String::new() };
    let now = SystemClock.now();
    let release = t
        .store
        .record_probe_success(&crate::store::ProbeSuccess {
            image: "127.0.0.1:5000/fx/app:stable",
            digest: &digest(2),
            changelog: None,
            next_probe_at: now,
            now,
        })
        .await
        .unwrap()
        .release_id
        .expect("v2 is a new release");
    let ops = Ops::new(crate::rollout::deps::RolloutDeps {
        store: t.store.clone(),
        settings: Arc::new(RolloutSettings::default()),
        wakers: Wakers::new(),
        clock: Arc::new(SystemClock),
        metrics: RolloutMetrics::unregistered(),
    });
    let ctl = Controller::new(ops.deps().clone(), Duration::from_secs(5));
    let out = ops
        .apply(release, ApplyTier::Canary, false, "ops")
        .await
        .unwrap();
    ctl.tick().await.unwrap();
    t.rec.converge_all().await.unwrap();
    ctl.tick().await.unwrap();
    let rollout = out.rollout.id;
    let r = ops.rollout(rollout).await.unwrap();
    assert_eq!(r.status.state, RolloutState::Soaking);
    let u = t.latest().await;
    assert_eq!(
        (u.phase, u.to_digest.clone()),
        (UpdatePhase::Succeeded, digest(2))
    );
    if volumes {
        t.rt.write_volume(
            "acme-data",
            format!("{}written under v2\n", t.data()).as_bytes(),
        );
    }
    R {
        t,
        ops,
        rollout,
        before,
        update: u.id,
    }
}

impl R {
    async fn rollback_with_restore(&self) {
        self.ops.rollback(self.rollout, true, "ops").await.unwrap();
        self.t.rec.converge_all().await.unwrap();
    }
    async fn restore_done(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.t
            .store
            .restore_done_at(self.rollout, self.t.ws.id)
            .await
            .unwrap()
    }
    fn snapshot_file(&self, id: &crate::domain::SnapshotId) -> std::path::PathBuf {
        self.t
            ._dir
            .path()
            .join("snapshots")
            .join(format!("{id}.tar"))
    }
    async fn source_snapshot(&self) -> crate::domain::SnapshotId {
        let s = self.t.store.snapshots_of_update(self.update).await.unwrap();
        assert_eq!(s.len(), 1);
        s[0].id.clone()
    }
}

#[tokio::test]
async fn rollback_with_restore_data_brings_back_the_pre_update_volume() {
    let r = updated_to_v2().await;
    r.rollback_with_restore().await;
    let u = r.t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    assert_eq!(u.to_digest, digest(1));
    assert_eq!(u.rollout_id, Some(r.rollout));
    // The state of v2's volume was snapshotted first (the restore can be undone).
    assert_eq!(u.snapshot_ids.len(), 1);
    assert_eq!(r.t.ws().await.actual_digest, Some(digest(1)));
    // Exactly the pre-update volume, plus v1's boot after the restore.
    assert_eq!(r.t.data(), format!("{}boot {}\n", r.before, pinned(1)));
    assert!(r.restore_done().await.is_some());
    let events = r.t.store.events(0, 100).await.unwrap();
    assert!(!events.iter().any(|e| e.action == "drift_detected"));
    // Done once: nothing happens on later passes.
    r.t.rec.converge_all().await.unwrap();
    assert_eq!(r.t.latest().await.id, u.id);
}

#[tokio::test]
async fn a_missing_snapshot_refuses_the_restore_without_touching_the_workspace() {
    let r = updated_to_v2().await;
    let after = r.t.data();
    std::fs::remove_file(r.snapshot_file(&r.source_snapshot().await)).unwrap();
    r.rollback_with_restore().await;
    let u = r.t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Failed);
    let error = u.error.unwrap();
    assert!(
        error.contains("restore_data") && error.contains("refusing"),
        "{error}"
    );
    // Still v2, running, with every write since the update: nothing was stopped.
    let w = r.t.ws().await;
    assert_eq!(w.actual_digest, Some(digest(2)));
    assert_eq!(w.desired_digest, Some(digest(2)));
    assert!(
        r.t.rt
            .inspect("sluice-acme")
            .await
            .unwrap()
            .unwrap()
            .running
    );
    assert_eq!(r.t.data(), after);
    assert!(r.restore_done().await.is_none());
    let events = r.t.store.events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.action == "update_failed"));
}

#[tokio::test]
async fn a_corrupt_snapshot_is_refused_before_anything_stops() {
    let r = updated_to_v2().await;
    let after = r.t.data();
    std::fs::write(r.snapshot_file(&r.source_snapshot().await), b"not the tar").unwrap();
    r.rollback_with_restore().await;
    let u = r.t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Failed);
    let error = u.error.unwrap();
    assert!(
        error.contains("checksum mismatch") && error.contains("refusing"),
        "{error}"
    );
    let w = r.t.ws().await;
    assert_eq!(w.actual_digest, Some(digest(2)));
    // Never half-restored, never even stopped: v2's data exactly as it was.
    assert!(
        r.t.rt
            .inspect("sluice-acme")
            .await
            .unwrap()
            .unwrap()
            .running
    );
    assert_eq!(r.t.data(), after);
    assert!(r.restore_done().await.is_none());
}

#[tokio::test]
async fn retention_keeps_snapshots_a_pending_restore_needs() {
    let r = updated_to_v2().await;
    let source = r.source_snapshot().await;
    r.ops.rollback(r.rollout, true, "ops").await.unwrap();
    let mut s = Settings::default();
    // The in-memory runtime has no volume directory and runs no helper container:
    // its snapshots stream through its archive API.
    s.snapshots.access = crate::config::SnapshotAccess::Archive;
    s.snapshots.keep_last = 0;
    let snaps = Snapshots::new(
        r.t._dir.path().join("snapshots"),
        s.snapshots.clone(),
        r.t.store.clone(),
    );
    let later = SystemClock.now() + chrono::Duration::days(30);
    // keep_last 0 and everything past max_age: only the pending restore's source stays.
    snaps.cleanup(later).await.unwrap();
    let live =
        r.t.store
            .live_snapshots(&crate::domain::HostName::local())
            .await
            .unwrap();
    assert_eq!(
        live.iter().map(|(s, _)| s.id.as_str()).collect::<Vec<_>>(),
        [source.as_str()]
    );
    // Once restored, it is an ordinary snapshot again.
    r.t.rec.converge_all().await.unwrap();
    assert!(r.restore_done().await.is_some());
    snaps.cleanup(later).await.unwrap();
    assert!(
        r.t.store
            .live_snapshots(&crate::domain::HostName::local())
            .await
            .unwrap()
            .iter()
            .all(|(s, _)| s.id != source)
    );
}

#[tokio::test]
async fn an_interrupted_restore_is_resumed_and_still_restores() {
    let r = updated_to_v2().await;
    r.ops.rollback(r.rollout, true, "ops").await.unwrap();
    // As if the daemon died right after journaling `snapshotting` of the restore attempt
    // (v2 stopped, nothing snapshotted yet): the resume snapshots, restores, finishes.
    let now = SystemClock.now();
    let row =
        r.t.store
            .open_update(
                r.t.ws.id,
                Some(r.rollout),
                Some(&digest(2)),
                &digest(1),
                now,
            )
            .await
            .unwrap();
    r.t.rt.stop("sluice-acme", Duration::ZERO).await.unwrap();
    r.t.store
        .advance_update(row.id, row.phase, UpdatePhase::Snapshotting, now)
        .await
        .unwrap();
    assert_eq!(r.t.rec.resume_all().await.unwrap(), 1);
    let u = r.t.latest().await;
    assert_eq!((u.id, u.phase), (row.id, UpdatePhase::Succeeded));
    assert_eq!(r.t.data(), format!("{}boot {}\n", r.before, pinned(1)));
    assert!(r.restore_done().await.is_some());
}

#[tokio::test]
async fn a_restore_without_volumes_still_returns_to_the_old_digest() {
    let r = updated_to_v2_with(false).await;
    r.rollback_with_restore().await;
    let u = r.t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    let c = r.t.rt.inspect("sluice-acme").await.unwrap().unwrap();
    assert!(c.running);
    assert_eq!(c.digest_label(), Some(digest(1).as_str()));
    assert!(r.restore_done().await.is_some());
    // In one attempt (not repaired afterwards as drift).
    let events = r.t.store.events(0, 100).await.unwrap();
    assert!(
        !events.iter().any(|e| e.action == "drift_detected"),
        "{events:?}"
    );
}
