//! The saga's logic on the in-memory runtime (which passes the same contract suite as
//! Docker) and a real SQLite store. Docker-backed behaviour is in tests/it/reconciler.rs.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::spec::{VolumeMount, WorkspaceSpec};
use crate::domain::{Digest, WorkspaceName, WorkspaceState};
use crate::domain::{ImageRef, Tier, UpdateMode, UpdatePhase};
use crate::runtime::FakeRuntime;
use crate::snapshot::Snapshots;
use crate::store::Store;
use crate::store::{NewWorkspace, Workspace};
use crate::wake::Wakers;

pub(super) struct T {
    pub(super) _dir: tempfile::TempDir,
    pub(super) store: Store,
    pub(super) rt: FakeRuntime,
    pub(super) rec: Reconciler<FakeRuntime>,
    pub(super) ws: Workspace,
}

pub(super) fn digest(n: u8) -> Digest {
    Digest::of_bytes(&[n])
}

pub(super) fn pinned(n: u8) -> String {
    format!("127.0.0.1:5000/fx/app@{}", digest(n))
}

pub(super) async fn setup(min_free: u64) -> T {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    // The in-memory runtime has no volume directory and runs no helper container:
    // its snapshots stream through its archive API.
    s.snapshots.access = crate::config::SnapshotAccess::Archive;
    s.data.dir = dir.path().to_path_buf();
    s.snapshots.min_free_bytes = min_free;
    s.update.min_healthy_time = Duration::ZERO;
    s.update.healthy_deadline = Duration::from_secs(2);
    let store = crate::startup::open_store(&s).await.unwrap();
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                host: crate::domain::HostName::local(),
                name: WorkspaceName::parse("acme").unwrap(),
                image: ImageRef::parse("127.0.0.1:5000/fx/app:stable").unwrap(),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: WorkspaceSpec {
                    volumes: vec![VolumeMount::new("acme-data", "/data")],
                    ..Default::default()
                },
            },
            SystemClock.now(),
        )
        .await
        .unwrap();
    let rt = FakeRuntime::new();
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.health_poll = Duration::from_millis(10);
    cfg.retry_backoff = Duration::from_millis(10);
    let rec = Reconciler::new(
        rt.clone(),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        Wakers::new(),
    );
    T {
        _dir: dir,
        store,
        rt,
        rec,
        ws,
    }
}

impl T {
    pub(super) async fn desire(&self, n: u8) {
        self.store
            .set_desired_digest(self.ws.id, Some(&digest(n)), None, SystemClock.now())
            .await
            .unwrap();
        self.rec.converge_all().await.unwrap();
    }
    pub(super) async fn latest(&self) -> crate::store::UpdateRow {
        self.store.latest_update(self.ws.id).await.unwrap().unwrap()
    }
    pub(super) async fn ws(&self) -> Workspace {
        self.store.workspace(&self.ws.name).await.unwrap()
    }
    pub(super) fn data(&self) -> String {
        String::from_utf8(self.rt.volume_bytes("acme-data").unwrap()).unwrap()
    }
}

#[tokio::test]
async fn creates_then_updates_keeping_volume_data() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    t.desire(1).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Succeeded);
    assert_eq!(t.ws().await.actual_digest, Some(digest(1)));
    t.desire(2).await;
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Succeeded);
    assert_eq!(u.from_digest, Some(digest(1)));
    assert_eq!(u.snapshot_ids.len(), 1);
    // The audit event names the snapshot the update took (operators restore by it).
    let events = t.store.events(0, 100).await.unwrap();
    let done = events
        .iter()
        .rev()
        .find(|e| e.action == "update_succeeded")
        .expect("an update_succeeded event");
    assert_eq!(done.detail["snapshots"][0], u.snapshot_ids[0].as_str());
    assert_eq!(
        t.data(),
        format!("boot {}\nboot {}\n", pinned(1), pinned(2))
    );
    let c = t.rt.inspect("sluice-acme").await.unwrap().unwrap();
    assert!(c.running);
    assert_eq!(c.digest_label(), Some(digest(2).as_str()));
    let spec = t.rt.spec_of("sluice-acme").unwrap();
    assert_eq!(spec.labels[crate::runtime::LABEL_WORKSPACE], "acme");
    // The volume it created names its owner by id.
    let labels = t.rt.volume_inspect("acme-data").await.unwrap().unwrap();
    assert_eq!(labels, container::volume_labels(t.ws.id, "acme"));
}

#[tokio::test]
async fn a_crashing_version_is_rolled_back_and_the_volume_restored() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_crashing_image(&pinned(2));
    t.desire(1).await;
    let before = t.data();
    t.desire(2).await;
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    let w = t.ws().await;
    assert_eq!(w.actual_digest, Some(digest(1)));
    assert_eq!(w.desired_digest, Some(digest(1)));
    assert_eq!(
        t.store.failed_digests(t.ws.id).await.unwrap(),
        [digest(2).to_string()]
    );
    // v2's boot line is gone; v1 booted once more after the restore.
    assert_eq!(t.data(), format!("{before}boot {}\n", pinned(1)));
    let events = t.store.events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.action == "update_rolled_back"));
}

#[tokio::test]
async fn a_failed_rollback_quarantines_the_workspace() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_crashing_image(&pinned(2));
    t.desire(1).await;
    // The old version now crashes too: the rollback cannot verify.
    t.rt.add_crashing_image(&pinned(1));
    t.desire(2).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Quarantined);
    assert_eq!(t.ws().await.state, WorkspaceState::Quarantined);
    // Nothing more happens to it automatically.
    t.rt.add_image(&pinned(3));
    t.desire(3).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Quarantined);
}

#[tokio::test]
async fn a_docker_restart_during_an_update_is_waited_out() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    t.desire(1).await;
    // dockerd restarts as the update pulls: the pull and the next pings are refused.
    t.rt.go_down_at("ensure image", 6);
    t.desire(2).await;
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    assert_eq!(t.ws().await.actual_digest, Some(digest(2)));
}

#[tokio::test]
async fn a_hiccup_in_a_rollback_step_is_retried_not_quarantined() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_crashing_image(&pinned(2));
    t.desire(1).await;
    let before = t.data();
    // Restoring removes the volume to refill it: the first two tries fail.
    t.rt.fail_next("volume remove", 2);
    t.desire(2).await;
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    assert_eq!(t.ws().await.state, WorkspaceState::Running);
    assert!(t.data().starts_with(&before), "volume restored");
    // A rollback step that keeps failing still quarantines, after its attempts.
    t.rt.add_crashing_image(&pinned(3));
    t.rt.fail_next("volume remove", 10);
    t.desire(3).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Quarantined);
}

#[tokio::test]
async fn a_missing_digest_fails_without_touching_the_running_container() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.desire(1).await;
    let before = t.data();
    t.desire(9).await;
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Failed);
    assert!(u.error.unwrap().starts_with("pull:"));
    assert!(t.rt.inspect("sluice-acme").await.unwrap().unwrap().running);
    assert_eq!(t.data(), before, "container was restarted");
    assert_eq!(t.ws().await.desired_digest, Some(digest(1)));
}

#[tokio::test]
async fn no_room_for_a_snapshot_means_the_update_does_not_start() {
    let t = setup(u64::MAX).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    // `require_snapshot` (the default) and no room: refused before anything is created.
    t.desire(1).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Failed);
    let u = t.latest().await;
    assert!(u.error.unwrap().contains("min_free_bytes"));
    assert!(t.rt.inspect("sluice-acme").await.unwrap().is_none());
}

#[tokio::test]
async fn an_interrupted_update_is_resumed_at_its_phase() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    t.rt.add_image(&pinned(2));
    t.desire(1).await;
    let now = SystemClock.now();
    // As if the daemon died right after journaling `snapshotting` (old container
    // stopped, snapshot not taken yet): the resume takes it and carries on.
    let row = t
        .store
        .open_update(t.ws.id, None, Some(&digest(1)), &digest(2), now)
        .await
        .unwrap();
    t.rt.stop("sluice-acme", Duration::ZERO).await.unwrap();
    t.store
        .advance_update(row.id, row.phase, UpdatePhase::Snapshotting, now)
        .await
        .unwrap();
    assert_eq!(t.rec.resume_all().await.unwrap(), 1);
    let u = t.latest().await;
    assert_eq!((u.id, u.phase), (row.id, UpdatePhase::Succeeded));
    assert_eq!(u.snapshot_ids.len(), 1);
    assert!(
        t.store
            .open_updates(&crate::domain::HostName::local())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn retention_keeps_the_newest_and_what_an_open_update_needs() {
    let t = setup(0).await;
    for n in 1..=3 {
        t.rt.add_image(&pinned(n));
        t.desire(n).await;
        assert_eq!(t.latest().await.phase, UpdatePhase::Succeeded);
    }
    // An unfinished attempt whose snapshot must survive retention.
    let row = t
        .store
        .open_update(
            t.ws.id,
            None,
            Some(&digest(3)),
            &digest(4),
            SystemClock.now(),
        )
        .await
        .unwrap();
    t.rt.stop("sluice-acme", Duration::ZERO).await.unwrap();
    let dir = t._dir.path().join("snapshots");
    let mut s = Settings::default();
    // The in-memory runtime has no volume directory and runs no helper container:
    // its snapshots stream through its archive API.
    s.snapshots.access = crate::config::SnapshotAccess::Archive;
    s.snapshots.keep_last = 1;
    s.snapshots.min_free_bytes = 0;
    let snaps = Snapshots::new(dir.clone(), s.snapshots.clone(), t.store.clone());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let needed = snaps
        .take(
            &t.rt,
            "sluice-acme",
            t.ws.id,
            &t.ws.name,
            row.id,
            0,
            "acme-data",
            "/data",
            SystemClock.now(),
        )
        .await
        .unwrap();
    // keep_last = 1: the newest complete one stays, plus the one the open row needs.
    assert_eq!(snaps.cleanup(SystemClock.now()).await.unwrap(), 2);
    assert_eq!(
        t.store
            .live_snapshots(&crate::domain::HostName::local())
            .await
            .unwrap()
            .len(),
        2
    );
    // Past max_age everything goes, except what the unfinished update needs.
    let later = SystemClock.now() + chrono::Duration::days(30);
    assert_eq!(snaps.cleanup(later).await.unwrap(), 1);
    let live = t
        .store
        .live_snapshots(&crate::domain::HostName::local())
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].0.id, needed.id);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        [std::ffi::OsString::from(format!("{}.tar", needed.id))]
    );
}

#[tokio::test]
async fn a_journal_row_this_version_cannot_read_quarantines_only_its_workspace() {
    let t = setup(0).await;
    t.rt.add_image(&pinned(1));
    let now = SystemClock.now();
    let row = t
        .store
        .open_update(t.ws.id, None, None, &digest(1), now)
        .await
        .unwrap();
    // Edited by hand (or written by another version): a phase this one does not know.
    t.store
        .write_foreign_phase(row.id, "levitating")
        .await
        .unwrap();

    t.rec.resume_all().await.expect("resume goes on");
    let u = t.latest().await;
    assert_eq!(u.phase, UpdatePhase::Quarantined);
    let why = u.error.unwrap();
    assert!(
        why.contains(&format!("journal row {}", row.id)) && why.contains("levitating"),
        "{why}"
    );
    assert_eq!(t.ws().await.state, WorkspaceState::Quarantined);
    assert!(
        t.rt.inspect("sluice-acme").await.unwrap().is_none(),
        "nothing in Docker was touched"
    );
    let events = t.store.events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.action == "update_quarantined"));
}

#[tokio::test]
async fn an_update_stops_the_old_container_with_the_workspaces_own_grace() {
    let t = setup(0).await;
    for n in 1..=3 {
        t.rt.add_image(&pinned(n));
    }
    t.desire(1).await;
    t.desire(2).await;
    let default = Settings::default().update.stop_timeout;
    assert_eq!(
        t.rt.stops().last(),
        Some(&("sluice-acme".to_owned(), default)),
        "[update] stop_timeout when the spec says nothing"
    );
    let mut spec = t.ws().await.spec;
    spec.stop_timeout = Some(7);
    let patch = crate::store::WorkspacePatch {
        spec: Some(spec),
        ..Default::default()
    };
    t.store
        .patch_workspace(&t.ws.name, &patch, "test", SystemClock.now())
        .await
        .unwrap();
    t.desire(3).await;
    assert_eq!(t.latest().await.phase, UpdatePhase::Succeeded);
    assert_eq!(
        t.rt.stops().last(),
        Some(&("sluice-acme".to_owned(), Duration::from_secs(7))),
        "the workspace's stop_timeout"
    );
}
