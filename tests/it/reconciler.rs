//! The workspace reconciler against the real Docker engine and registry: updates keep
//! data and configuration, failed updates roll back with the volume restored exactly,
//! a missing digest never stops the running container, and a daemon SIGKILLed at any
//! saga phase converges after restart with its data intact.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sluice::clock::{Clock, SystemClock};
use sluice::config::Settings;
use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
use sluice::domain::{
    Digest, ImageRef, Tier, UpdateMode, UpdatePhase, WorkspaceName, WorkspaceState,
};
use sluice::reconciler::{Reconciler, ReconcilerConfig, ReconcilerMetrics};
use sluice::runtime::{DockerRuntime, connect};
use sluice::snapshot::Snapshots;
use sluice::store::{NewWorkspace, Store, Workspace};

use crate::support::{Daemon, DockerCleanup, build_fixture, registry, run, unique};

/// Health timings short enough for tests, long enough to prove "keeps passing".
pub const TEST_ENV: &[(&str, &str)] = &[
    ("SLUICE__UPDATE__MIN_HEALTHY_TIME", "1s"),
    ("SLUICE__UPDATE__HEALTHY_DEADLINE", "8s"),
    ("SLUICE__UPDATE__STOP_TIMEOUT", "5s"),
    ("SLUICE__UPDATE__RECONCILE_INTERVAL", "1s"),
    ("SLUICE__SNAPSHOTS__MIN_FREE_BYTES", "0"),
];

pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub rec: Reconciler<DockerRuntime>,
    pub cleanup: DockerCleanup,
    pub repo: String,
    pub ws: Workspace,
    pub volume: String,
}

pub fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.data.dir = dir.to_path_buf();
    s.update.min_healthy_time = Duration::from_secs(1);
    s.update.healthy_deadline = Duration::from_secs(8);
    s.update.stop_timeout = Duration::from_secs(5);
    s.snapshots.min_free_bytes = 0;
    s
}

/// A fresh data dir + store + Docker-backed reconciler, and one workspace (not yet
/// desired anything) with a volume at /data and an HTTP probe on 8080.
pub async fn env(tag: &str) -> Env {
    env_with(tag, |_, _| {}, |_| {}).await
}

/// [`env`] with the workspace spec (given the workspace name) and settings adjusted.
pub async fn env_with(
    tag: &str,
    spec: impl FnOnce(&mut WorkspaceSpec, &str),
    tune: impl FnOnce(&mut Settings),
) -> Env {
    env_in_repo(tag, None, spec, tune).await
}

/// [`env_with`] whose workspace runs images of `repo` (fixtures built once and shared by
/// many workspaces) instead of a repository of its own.
pub async fn env_in_repo(
    tag: &str,
    repo: Option<String>,
    spec: impl FnOnce(&mut WorkspaceSpec, &str),
    tune: impl FnOnce(&mut Settings),
) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(dir.path());
    tune(&mut s);
    let store = sluice::startup::open_store(&s).await.expect("store");
    let name = unique(tag).replace('_', "-");
    let volume = format!("{name}-data");
    let repo = repo.unwrap_or_else(|| format!("{}/{}/app", registry(), unique(tag)));
    let mut ws_spec = WorkspaceSpec {
        env: [("TENANT".to_owned(), name.clone())].into(),
        volumes: vec![VolumeMount::new(volume.clone(), "/data")],
        health: Some(HealthProbe {
            http: Some(HttpProbe {
                port: 8080,
                path: "/health".into(),
                status: Some(200),
            }),
            ..Default::default()
        }),
        labels: [("sluice.test".to_owned(), "1".to_owned())].into(),
        restart: Some("unless-stopped".into()),
        ..Default::default()
    };
    spec(&mut ws_spec, &name);
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup
        .volumes
        .extend(ws_spec.volumes.iter().map(|v| v.name.clone()));
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(&name).expect("name"),
                image: ImageRef::parse(&format!("{repo}:stable")).expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: ws_spec,
            },
            SystemClock.now(),
        )
        .await
        .expect("insert workspace");
    let rec = reconciler(&store, &s).await;
    Env {
        dir,
        store,
        rec,
        cleanup,
        repo,
        ws,
        volume,
    }
}

async fn reconciler(store: &Store, s: &Settings) -> Reconciler<DockerRuntime> {
    let docker = connect(&s.docker).await.expect("docker");
    Reconciler::new(
        DockerRuntime::new(docker),
        store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), store.clone()),
        ReconcilerConfig::from_settings(s),
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    )
}

impl Env {
    /// Builds and pushes a fixture under this env's repository; returns its digest.
    pub fn fixture(&mut self, mode: &str, version: &str) -> Digest {
        let d = build_fixture(mode, version, &format!("{}:{version}", self.repo));
        self.cleanup.images.push(self.pinned(&d));
        d
    }
    pub fn pinned(&self, d: &Digest) -> String {
        format!("{}@{d}", self.repo)
    }
    /// Pulls the pinned fixture so throwaway containers can use its busybox.
    pub fn local_image(&self, d: &Digest) -> String {
        let image = self.pinned(d);
        run(Command::new("docker").args(["pull", "-q", &image]));
        image
    }
    pub fn container(&self) -> String {
        self.ws.name.container_name()
    }
    pub async fn desire(&self, d: &Digest) {
        self.store
            .set_desired_digest(self.ws.id, Some(d), None, SystemClock.now())
            .await
            .expect("set desired");
    }
    pub async fn workspace(&self) -> Workspace {
        self.store
            .workspace(&self.ws.name)
            .await
            .expect("workspace")
    }
    pub async fn latest_phase(&self) -> Option<UpdatePhase> {
        self.store
            .latest_update(self.ws.id)
            .await
            .expect("latest")
            .map(|u| u.phase)
    }
    /// Runs a throwaway container on the workspace volume.
    /// The workspace's volume may not exist yet: it is created as sluice would, labelled
    /// for the workspace, so the data seeded into it is the workspace's own.
    pub fn on_volume(&self, image: &str, script: &str) -> String {
        let mut create = Command::new("docker");
        create.args(["volume", "create"]);
        for (k, v) in
            sluice::reconciler::container::volume_labels(self.ws.id, self.ws.name.as_str())
        {
            create.args(["--label", &format!("{k}={v}")]);
        }
        run(create.arg(&self.volume));
        run(Command::new("docker").args([
            "run",
            "--rm",
            "--label",
            "sluice.test=1",
            "-v",
            &format!("{}:/data", self.volume),
            image,
            "sh",
            "-c",
            script,
        ]))
    }
    /// Seeds files, modes, ownership, a symlink and an empty directory.
    pub fn seed(&self, image: &str) {
        self.on_volume(
            image,
            "mkdir -p /data/empty /data/sub && echo hello > /data/sub/file && \
             chmod 640 /data/sub/file && chown 123:456 /data/sub/file && \
             ln -s sub/file /data/link && echo 'schema v1' > /data/app.db",
        );
    }
    /// Every path with type, mode, owner, link target and content hash, except
    /// `boots.log` (each boot appends to it; see [`Env::boots`]).
    pub fn tree(&self, image: &str) -> String {
        self.on_volume(
            image,
            "cd /data && find . ! -name boots.log | sort | while read -r f; do \
             stat -c '%n %F %a %u:%g' \"$f\"; [ -L \"$f\" ] && readlink \"$f\"; \
             [ -f \"$f\" ] && [ ! -L \"$f\" ] && md5sum \"$f\"; done; true",
        )
    }
    pub fn boots(&self, image: &str) -> String {
        self.on_volume(image, "cat /data/boots.log 2>/dev/null; true")
    }
    pub fn http(&self, path: &str) -> String {
        let ip = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.container(),
        ]));
        run(Command::new("wget").args([
            "-q",
            "-O",
            "-",
            &format!("http://{}:8080{path}", ip.trim()),
        ]))
        .trim()
        .to_owned()
    }
}

pub fn inspect_json(name: &str) -> serde_json::Value {
    let out = run(Command::new("docker").args(["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

/// The inspect output with what legitimately differs between two incarnations removed.
fn comparable(mut v: serde_json::Value) -> serde_json::Value {
    let o = v.as_object_mut().expect("object");
    for k in [
        "Id",
        "Created",
        "Image",
        "State",
        "NetworkSettings",
        "ResolvConfPath",
        "HostnamePath",
        "HostsPath",
        "LogPath",
        "GraphDriver",
        "RestartCount",
    ] {
        o.remove(k);
    }
    let c = o["Config"].as_object_mut().expect("config");
    c.remove("Image");
    c.remove("Hostname");
    let labels = c["Labels"].as_object_mut().expect("labels");
    labels.retain(|k, _| k != "sluice.digest" && !k.starts_with("org.opencontainers.image."));
    v
}

async fn converge(e: &Env) {
    e.rec.converge_all().await.expect("converge");
}

/// The phase log of the workspace's newest update, in the order the phases were entered:
/// every entry numbered in turn, entered no earlier than the one before, lasting no less
/// than zero.
async fn phase_log(e: &Env) -> Vec<String> {
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    let spans = e
        .store
        .update_phases(u.id, chrono::Utc::now())
        .await
        .unwrap();
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.seq, i as i64 + 1, "{spans:?}");
        assert!(s.duration >= chrono::Duration::zero(), "{spans:?}");
        if i > 0 {
            assert!(s.entered_at >= spans[i - 1].entered_at, "{spans:?}");
        }
    }
    spans.iter().map(|s| s.phase.as_str().to_owned()).collect()
}

#[tokio::test]
async fn good_update_keeps_data_and_configuration() {
    let mut e = env("rc-good").await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    converge(&e).await;
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    assert_eq!(e.http("/version"), "v1");
    let before = e.tree(&e.pinned(&d1));
    let old = inspect_json(&e.container());

    e.desire(&d2).await;
    converge(&e).await;
    let w = e.workspace().await;
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    assert_eq!(w.actual_digest.as_ref(), Some(&d2));
    assert_eq!(w.state, WorkspaceState::Running);
    assert_eq!(e.http("/version"), "v2");
    assert_eq!(e.tree(&e.pinned(&d2)), before, "volume data changed");
    assert!(
        e.boots(&e.pinned(&d2))
            .ends_with("boot version=v2 mode=good\n")
    );

    let new = inspect_json(&e.container());
    assert_ne!(old["Id"], new["Id"]);
    assert_eq!(new["Config"]["Image"], e.pinned(&d2).as_str());
    assert_eq!(new["Config"]["Labels"]["sluice.digest"], d2.as_str());
    assert_eq!(
        comparable(old),
        comparable(new),
        "recreated container differs"
    );

    // Every phase of the update was logged, in order, ending in `succeeded`.
    assert_eq!(
        phase_log(&e).await,
        [
            "pulling",
            "stopping",
            "snapshotting",
            "recreating",
            "starting",
            "health_checking",
            "succeeded"
        ]
    );

    // The snapshot of this update is complete, checksummed and on disk.
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.snapshot_ids.len(), 1);
    let snap = e.store.snapshot(&u.snapshot_ids[0]).await.unwrap();
    assert_eq!(snap.state, sluice::domain::SnapshotState::Complete);
    assert!(snap.sha256.is_some());
    assert!(std::path::Path::new(&snap.path).exists());
}

async fn rollback_case(mode: &str) {
    let mut e = env(&format!("rc-{}", &mode[..5])).await;
    let d1 = e.fixture("good", "v1");
    let d3 = e.fixture(mode, "v3");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    converge(&e).await;
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    let before = e.tree(&img);
    let boots_before = e.boots(&img);
    let old = inspect_json(&e.container());

    e.desire(&d3).await;
    converge(&e).await;
    let w = e.workspace().await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "error: {:?}", u.error);
    // The forward phases up to the failure, then the rollback's, ending in `rolled_back`.
    let log = phase_log(&e).await;
    let back = log
        .iter()
        .position(|p| p == "rolling_back")
        .expect("rolling_back logged");
    assert_eq!(log[0], "pulling", "{log:?}");
    assert!(log[..back].iter().all(|p| p != "rolled_back"), "{log:?}");
    assert_eq!(
        log.last().map(String::as_str),
        Some("rolled_back"),
        "{log:?}"
    );
    assert!(log.iter().any(|p| p == "restoring"), "{log:?}");
    assert_eq!(w.actual_digest.as_ref(), Some(&d1));
    assert_eq!(
        w.desired_digest.as_ref(),
        Some(&d1),
        "desired reset to the old digest"
    );
    assert_eq!(w.state, WorkspaceState::Running);
    assert_eq!(
        e.store.failed_digests(e.ws.id).await.unwrap(),
        vec![d3.to_string()]
    );
    assert_eq!(e.http("/health"), "ok");
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(e.tree(&img), before, "volume not restored exactly");
    // The failed version's boot (and rewrite) is gone; only v1's restart was added.
    assert_eq!(
        e.boots(&img),
        format!("{boots_before}boot version=v1 mode=good\n")
    );
    assert_eq!(
        comparable(old),
        comparable(inspect_json(&e.container())),
        "rolled-back container differs"
    );
    // Nothing retries the failed digest by itself.
    converge(&e).await;
    assert_eq!(
        e.store.latest_update(e.ws.id).await.unwrap().unwrap().id,
        u.id
    );
}

#[tokio::test]
async fn bad_health_rolls_back_with_volume_restored() {
    rollback_case("bad-health").await;
}

#[tokio::test]
async fn crash_rolls_back_with_volume_restored() {
    rollback_case("crash").await;
}

#[tokio::test]
async fn migrates_then_fails_rolls_back_with_rewritten_files_restored() {
    rollback_case("migrates-then-fails").await;
}

#[tokio::test]
async fn missing_digest_fails_pull_and_never_stops_the_old_container() {
    let mut e = env("rc-miss").await;
    let d1 = e.fixture("good", "v1");
    e.desire(&d1).await;
    converge(&e).await;
    let started = inspect_json(&e.container())["State"]["StartedAt"].clone();
    let missing = Digest::of_bytes(e.repo.as_bytes());
    e.desire(&missing).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Failed);
    assert!(u.error.unwrap_or_default().contains("pull"));
    let now = inspect_json(&e.container());
    assert_eq!(
        now["State"]["StartedAt"], started,
        "old container was restarted"
    );
    assert_eq!(now["State"]["Running"], true);
    let w = e.workspace().await;
    assert_eq!(w.actual_digest.as_ref(), Some(&d1));
    assert_eq!(w.desired_digest.as_ref(), Some(&d1));
    assert_eq!(
        e.store.failed_digests(e.ws.id).await.unwrap(),
        vec![missing.to_string()]
    );
}

#[tokio::test]
async fn existing_matching_container_is_adopted_without_restart() {
    let mut e = env("rc-adopt").await;
    let d1 = e.fixture("good", "v1");
    e.desire(&d1).await;
    converge(&e).await;
    let started = inspect_json(&e.container())["State"]["StartedAt"].clone();
    // Forget what sluice knew, as after restoring an old database.
    let obs = sluice::store::Observed {
        actual_digest: None,
        container_id: None,
        state: WorkspaceState::Creating,
        health: sluice::domain::Health::Unknown,
    };
    e.store
        .set_observed(e.ws.id, &obs, None, SystemClock.now())
        .await
        .unwrap();
    let updates_before = e.store.latest_update(e.ws.id).await.unwrap().unwrap().id;
    converge(&e).await;
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&d1));
    assert_eq!(
        e.store.latest_update(e.ws.id).await.unwrap().unwrap().id,
        updates_before
    );
    assert_eq!(inspect_json(&e.container())["State"]["StartedAt"], started);
}

#[tokio::test]
async fn a_removed_container_is_detected_as_drift_and_brought_back() {
    let mut e = env("rc-drift").await;
    let d1 = e.fixture("good", "v1");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    converge(&e).await;
    let before = e.tree(&img);
    run(Command::new("docker").args(["rm", "-f", &e.container()]));
    converge(&e).await;
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&d1));
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(e.tree(&img), before);
    let events = e.store.events(0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|ev| ev.action == "drift_detected"
                && ev.subject == format!("workspace:{}", e.ws.name)),
        "no drift event"
    );
}

#[tokio::test]
async fn an_unmanaged_container_with_the_name_is_never_touched() {
    let mut e = env("rc-unmanaged").await;
    let d1 = e.fixture("good", "v1");
    let img = e.local_image(&d1);
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &e.container(),
        "--label",
        "sluice.test=1",
        &img,
    ]));
    let before = inspect_json(&e.container());
    e.desire(&d1).await;
    converge(&e).await;
    assert_eq!(e.latest_phase().await, None);
    let after = inspect_json(&e.container());
    assert_eq!(before["Id"], after["Id"]);
    assert_eq!(before["State"]["StartedAt"], after["State"]["StartedAt"]);
}

/// Starts a daemon paused at `phase`, SIGKILLs it there, restarts it without the hook,
/// and waits for the update to finish. Returns the final phase.
pub async fn kill_at(e: &Env, phase: &str) -> (UpdatePhase, Daemon) {
    let mut envs: Vec<(&str, &str)> = TEST_ENV.to_vec();
    envs.push(("SLUICE_TEST_PAUSE_AT", phase));
    let mut d = Daemon::start(e.dir.path(), &envs);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let paused = d
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("test_pause") && l.contains(&format!("\"phase\":\"{phase}\"")));
        if paused {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never paused at {phase}: {:?}",
            d.logs.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.signal("KILL");
    d.wait_timeout(Duration::from_secs(10)).expect("killed");
    let journaled = e.latest_phase().await.expect("a journal row");
    assert_eq!(journaled.as_str(), phase, "paused before journaling");
    let d2 = Daemon::start(e.dir.path(), TEST_ENV);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(p) = e.latest_phase().await
            && p.is_terminal()
        {
            return (p, d2);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "update never finished after restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sigkill_forward(phase: &str) {
    let mut e = env(&format!("rc-kill-{}", &phase[..4])).await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    converge(&e).await;
    let before = e.tree(&img);
    e.desire(&d2).await;
    let (result, daemon) = kill_at(&e, phase).await;
    assert_eq!(result, UpdatePhase::Succeeded);
    // The restarted daemon counted the resumed update in its metrics.
    let metrics = reqwest::get(daemon.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body");
    assert!(
        metrics.contains("sluice_workspace_updates_total{host=\"local\",result=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&d2));
    assert_eq!(e.http("/version"), "v2");
    assert_eq!(e.tree(&img), before, "data changed across the crash");
    assert!(!e.boots(&img).contains("mode=bad"));
}

async fn sigkill_backward(phase: &str) {
    let mut e = env(&format!("rc-killb-{}", &phase[..4])).await;
    let d1 = e.fixture("good", "v1");
    let d3 = e.fixture("migrates-then-fails", "v3");
    let img = e.local_image(&d1);
    e.seed(&img);
    e.desire(&d1).await;
    converge(&e).await;
    let before = e.tree(&img);
    e.desire(&d3).await;
    assert_eq!(kill_at(&e, phase).await.0, UpdatePhase::RolledBack);
    assert_eq!(e.workspace().await.actual_digest.as_ref(), Some(&d1));
    assert_eq!(e.http("/version"), "v1");
    assert_eq!(e.tree(&img), before, "data not restored across the crash");
    assert!(!e.boots(&img).contains("v3"));
}

#[tokio::test]
async fn sigkill_at_pulling_converges() {
    sigkill_forward("pulling").await;
}
#[tokio::test]
async fn sigkill_at_stopping_converges() {
    sigkill_forward("stopping").await;
}
#[tokio::test]
async fn sigkill_at_snapshotting_converges() {
    sigkill_forward("snapshotting").await;
}
#[tokio::test]
async fn sigkill_at_recreating_converges() {
    sigkill_forward("recreating").await;
}
#[tokio::test]
async fn sigkill_at_starting_converges() {
    sigkill_forward("starting").await;
}
#[tokio::test]
async fn sigkill_at_health_checking_converges() {
    sigkill_forward("health_checking").await;
}
#[tokio::test]
async fn sigkill_at_rolling_back_rolls_back() {
    sigkill_backward("rolling_back").await;
}
#[tokio::test]
async fn sigkill_at_restoring_rolls_back() {
    sigkill_backward("restoring").await;
}
#[tokio::test]
async fn sigkill_at_reverting_rolls_back() {
    sigkill_backward("reverting").await;
}
#[tokio::test]
async fn sigkill_at_verifying_rolls_back() {
    sigkill_backward("verifying").await;
}

/// steno's habit: every forward and undo step runs twice in a row on real Docker (the
/// test build's `repeat_steps`), and a second run that changes anything the tenant can
/// see — the container's state or digest, a volume's tree or contents — fails the step.
#[tokio::test]
async fn every_step_run_twice_changes_nothing() {
    let mut e = env("rc-twice").await;
    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let d3 = e.fixture("migrates-then-fails", "v3");
    let img = e.local_image(&d1);
    e.seed(&img);
    let s = settings(e.dir.path());
    let mut cfg = ReconcilerConfig::from_settings(&s);
    cfg.repeat_steps = true;
    let rec = Reconciler::new(
        DockerRuntime::new(connect(&s.docker).await.expect("docker")),
        e.store.clone(),
        Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), e.store.clone()),
        cfg,
        Arc::new(SystemClock),
        ReconcilerMetrics::register(&prometheus::Registry::new()),
        sluice::wake::Wakers::new(),
    );
    let outcome = |u: Option<sluice::store::UpdateRow>| {
        let u = u.expect("a journal row");
        (u.phase, u.error)
    };
    e.desire(&d1).await;
    rec.converge_all().await.expect("converge");
    let u = outcome(e.store.latest_update(e.ws.id).await.unwrap());
    assert_eq!(u.0, UpdatePhase::Succeeded, "{:?}", u.1);
    let before = e.tree(&img);

    e.desire(&d2).await;
    rec.converge_all().await.expect("converge");
    let u = outcome(e.store.latest_update(e.ws.id).await.unwrap());
    assert_eq!(u.0, UpdatePhase::Succeeded, "{:?}", u.1);
    assert_eq!(e.tree(&img), before);

    // The failing version's forward steps, then every undo step, twice each.
    e.desire(&d3).await;
    rec.converge_all().await.expect("converge");
    let u = outcome(e.store.latest_update(e.ws.id).await.unwrap());
    assert_eq!(u.0, UpdatePhase::RolledBack, "{:?}", u.1);
    assert!(
        !u.1.unwrap_or_default().contains("not idempotent"),
        "a step changed something when run again"
    );
    assert_eq!(e.tree(&img), before, "volume restored");
    assert_eq!(e.http("/version"), "v2");
}
