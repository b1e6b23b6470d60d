//! The registry watcher against the real local registry (shared on :5000, or a private
//! `docker-registry` for tests that stop it, need htpasswd or notifications).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use sluice::clock::ManualClock;
use sluice::config::{RegistryCredential, Secret, Settings};
use sluice::domain::{Digest, ImageRef, ReleaseStatus, Tier, UpdateMode, WorkspaceName};
use sluice::metrics::Metrics;
use sluice::registry::{
    FakeRegistry, OciRegistry, Registry, RegistryError, RegistryMetrics, RequestKind,
};
use sluice::store::{NewWorkspace, Store};
use sluice::wake::Wakers;
use sluice::watcher::{Hints, Watcher};

use crate::registry_proc::{RegistryOpts, RegistryProc};
use crate::support::{DockerCleanup, build_fixture, registry, repo_root, run, unique};

pub(crate) async fn fresh_store() -> (sluice::store::TestDb, Store) {
    let db = sluice::store::TestDb::new().await;
    let store = db.store(4).await;
    (db, store)
}

/// Inserts a workspace tracking `image`, optionally already running `actual`.
pub(crate) async fn add_workspace(store: &Store, image: &str, actual: Option<&Digest>) {
    let ws = store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(&unique("ws")).unwrap(),
                image: ImageRef::parse_tracked(image).unwrap(),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec: Default::default(),
            },
            Utc::now(),
        )
        .await
        .expect("insert workspace");
    if let Some(d) = actual {
        // The reconciler owns this column; a test stands in for it.
        sqlx::query("UPDATE workspaces SET actual_digest = $1, state = 'running' WHERE id = $2")
            .bind(d.as_str())
            .bind(ws.id)
            .execute(store.raw_pool())
            .await
            .unwrap();
    }
}

pub(crate) fn settings(interval_secs: u64) -> Settings {
    let mut s = Settings::default();
    s.poll.interval = Duration::from_secs(interval_secs);
    s.poll.jitter = 0.0;
    s.poll.backoff_initial = Duration::from_secs(30);
    s.poll.backoff_max = Duration::from_secs(600);
    s
}

pub(crate) struct Rig {
    pub watcher: Watcher<Arc<OciRegistry>>,
    pub registry: Arc<OciRegistry>,
    pub clock: ManualClock,
    pub metrics: Metrics,
    pub requests: RegistryMetrics,
    pub wakers: Wakers,
    pub hints: Hints,
}

pub(crate) fn rig(store: &Store, s: &Settings) -> Rig {
    let metrics = Metrics::new();
    let rm = RegistryMetrics::register(metrics.registry()).unwrap();
    let registry =
        Arc::new(OciRegistry::new(&s.registries, Duration::from_secs(5), rm.clone()).unwrap());
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let wakers = Wakers::new();
    let hints = Hints::new(wakers.watcher.clone());
    let watcher = Watcher::new(
        store.clone(),
        registry.clone(),
        Arc::new(clock.clone()),
        s,
        wakers.clone(),
        hints.clone(),
        rm.clone(),
    );
    Rig {
        watcher,
        registry,
        clock,
        metrics,
        requests: rm,
        wakers,
        hints,
    }
}

/// Builds fixture `good` at `version` as `reference`, keeping the local image so it can
/// be pushed again; `cleanup` removes it.
fn build_kept(version: &str, reference: &str, cleanup: &mut DockerCleanup) -> Digest {
    let out = run(Command::new(repo_root().join("tests/env/build-fixture.sh"))
        .args(["good", version, reference])
        .env("KEEP_LOCAL", "1"));
    let digest = Digest::parse(out.trim()).unwrap();
    // The next build under the same tag leaves this one behind as `repo@digest`.
    let name = ImageRef::parse(reference).unwrap().name();
    cleanup.images.push(format!("{name}@{digest}"));
    cleanup.images.push(reference.to_owned());
    digest
}

#[tokio::test]
async fn tag_resolves_and_only_new_digests_become_releases() {
    let (_d, store) = fresh_store().await;
    let mut cleanup = DockerCleanup::default();
    let image = format!("{}/sluice-it/{}:stable", registry(), unique("rel"));
    let v1 = build_kept("v1", &image, &mut cleanup);
    let r = rig(&store, &settings(60));

    let resolved = r
        .registry
        .resolve(&ImageRef::parse(&image).unwrap())
        .await
        .unwrap();
    assert_eq!(resolved.digest, v1, "the tag resolves to the pushed digest");
    assert_eq!(resolved.via, RequestKind::Head);

    add_workspace(&store, &image, Some(&v1)).await;
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!((pass.probed, pass.failed), (1, 0));
    assert!(
        pass.releases.is_empty(),
        "the running digest is not a release"
    );
    assert!(store.releases_of_image(&image).await.unwrap().is_empty());
    assert_eq!(
        store.tracked_image(&image).await.unwrap().latest_digest,
        Some(v1.clone())
    );

    // The same image pushed again: nothing new.
    run(Command::new("docker").args(["push", &image]));
    r.clock.advance(chrono::Duration::seconds(61));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!(pass.probed, 1);
    assert!(pass.releases.is_empty());

    // v2: exactly one release, queued, with its changelog and an audit event.
    let v2 = build_kept("v2", &image, &mut cleanup);
    assert_ne!(v1, v2);
    r.clock.advance(chrono::Duration::seconds(61));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!(pass.releases.len(), 1);
    let releases = store.releases_of_image(&image).await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].digest, v2);
    assert_eq!(releases[0].status, ReleaseStatus::Queued);
    assert_eq!(
        releases[0].changelog.as_deref(),
        Some("sluice fixture good v2"),
        "changelog read from the image config label"
    );
    let events = store.events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.action == "release.detected"
        && e.subject == format!("release:{}", releases[0].id)
        && e.actor == "system"));

    // Probed again without a change: still one release.
    r.clock.advance(chrono::Duration::seconds(61));
    assert!(r.watcher.pass().await.unwrap().releases.is_empty());

    // v3 supersedes the never-started v2.
    let v3 = build_kept("v3", &image, &mut cleanup);
    r.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(r.watcher.pass().await.unwrap().releases.len(), 1);
    let releases = store.releases_of_image(&image).await.unwrap();
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0].status, ReleaseStatus::Superseded);
    assert_eq!(
        (&releases[1].digest, releases[1].status),
        (&v3, ReleaseStatus::Queued)
    );

    // A release a rollout has started is never superseded.
    sqlx::query(
        "INSERT INTO rollouts (release_id, state, started_by, created_at, updated_at) \
         VALUES ($1, 'canary', 'test', 0, 0)",
    )
    .bind(releases[1].id)
    .execute(store.raw_pool())
    .await
    .unwrap();
    let v4 = build_kept("v4", &image, &mut cleanup);
    r.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(r.watcher.pass().await.unwrap().releases.len(), 1);
    let releases = store.releases_of_image(&image).await.unwrap();
    let statuses: Vec<_> = releases.iter().map(|r| (&r.digest, r.status)).collect();
    assert_eq!(
        statuses,
        [
            (&v2, ReleaseStatus::Superseded),
            (&v3, ReleaseStatus::Queued),
            (&v4, ReleaseStatus::Queued)
        ]
    );

    // Not due yet: no probe at all.
    assert_eq!(r.watcher.pass().await.unwrap().probed, 0);
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn a_hundred_workspaces_on_one_image_cost_one_head_per_cycle() {
    let (_d, store) = fresh_store().await;
    let repo = format!("sluice-it/{}", unique("fan"));
    let image = format!("{}/{repo}:stable", registry());
    let v1 = build_fixture("good", "v1", &image);
    for _ in 0..100 {
        add_workspace(&store, &image, Some(&v1)).await;
    }
    let r = rig(&store, &settings(60));
    let log_path = std::path::PathBuf::from(
        std::env::var("SLUICE_TESTENV_DIR").unwrap_or_else(|_| "/var/tmp/sluice-testenv".into()),
    )
    .join("registry.log");
    let head = format!("\"HEAD /v2/{repo}/manifests/");
    let get = format!("\"GET /v2/{repo}/manifests/");
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let before = (count(&read(), &head), count(&read(), &get));

    for cycle in 1..=2 {
        let pass = r.watcher.pass().await.unwrap();
        assert_eq!(pass.probed, 1, "one probe for 100 workspaces");
        // The registry writes its access log line after answering: wait for it.
        let mut heads = 0;
        for _ in 0..100 {
            heads = count(&read(), &head) - before.0;
            if heads >= cycle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(heads, cycle, "exactly one HEAD per cycle (registry log)");
        r.clock.advance(chrono::Duration::seconds(61));
    }
    assert_eq!(count(&read(), &get) - before.1, 0, "no manifest GET");
    let rm = r.metrics.render();
    for name in [
        "sluice_registry_requests_total",
        "sluice_registry_probe_duration_seconds",
        "sluice_releases_detected_total",
        "sluice_image_last_probe_success_timestamp_seconds",
    ] {
        assert!(rm.contains(name), "{name} missing from /metrics:\n{rm}");
    }
    assert!(rm.contains(&format!(
        "sluice_image_last_probe_success_timestamp_seconds{{image=\"{image}\"}}"
    )));
    assert_eq!(r.requests.requests_of_kind("head"), 2);
    assert_eq!(r.requests.requests_of_kind("get"), 0);
}

#[tokio::test]
async fn a_multi_arch_index_resolves_to_the_digest_docker_records() {
    let mut cleanup = DockerCleanup::default();
    let repo = format!("sluice-it/{}", unique("multi"));
    let base = format!("{}/{repo}", registry());
    let amd = build_fixture("good", "v1", &format!("{base}:amd64"));
    let arm = build_fixture("good", "v2", &format!("{base}:arm64"));
    let http = reqwest::Client::new();
    let docker_v2 = "application/vnd.docker.distribution.manifest.v2+json";
    let mut entries = Vec::new();
    for (digest, arch) in [(&amd, "amd64"), (&arm, "arm64")] {
        let body = http
            .get(format!(
                "http://{}/v2/{repo}/manifests/{digest}",
                registry()
            ))
            .header("Accept", docker_v2)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": docker_v2, "size": body.len(), "digest": digest.as_str(),
            "platform": { "architecture": arch, "os": "linux" }
        }));
    }
    let (_d, store) = fresh_store().await;
    let r = rig(&store, &settings(60));
    // A Docker manifest list and an OCI image index over the same two manifests.
    for (tag, list_type) in [
        (
            "list",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ),
        ("index", "application/vnd.oci.image.index.v1+json"),
    ] {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": list_type, "manifests": entries
        }))
        .unwrap();
        let index_digest = Digest::of_bytes(&index);
        let put = http
            .put(format!("http://{}/v2/{repo}/manifests/{tag}", registry()))
            .header("Content-Type", list_type)
            .body(index)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{:?}", put.text().await);

        let tag = format!("{base}:{tag}");
        let resolved = r
            .registry
            .resolve(&ImageRef::parse(&tag).unwrap())
            .await
            .unwrap();
        assert_eq!(
            resolved.digest, index_digest,
            "the index digest, not a platform's"
        );
        assert_ne!(resolved.digest, amd);

        cleanup.images.push(tag.clone());
        cleanup.images.push(format!("{base}@{index_digest}"));
        run(Command::new("docker").args(["pull", "-q", &tag]));
        let repo_digests = run(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &tag,
        ]));
        assert!(
            repo_digests.contains(&format!("{base}@{index_digest}")),
            "{list_type}: Docker records {repo_digests}, sluice resolved {index_digest}"
        );
    }
}

#[tokio::test]
async fn a_stopped_registry_backs_off_and_recovers_without_a_release() {
    let mut reg = RegistryProc::start(RegistryOpts::default());
    let image = format!("{}/app:stable", reg.host());
    let v1 = build_fixture("good", "v1", &image);
    let (_d, store) = fresh_store().await;
    add_workspace(&store, &image, Some(&v1)).await;
    let r = rig(&store, &settings(60));
    assert_eq!(r.watcher.pass().await.unwrap().failed, 0);

    reg.stop();
    r.clock.advance(chrono::Duration::seconds(61));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!((pass.probed, pass.failed), (1, 1));
    assert!(pass.releases.is_empty());
    let st = store.tracked_image(&image).await.unwrap();
    let err = st.last_error.clone().expect("status shows the error");
    assert!(
        err.contains(&format!("cannot reach registry {}", reg.host())),
        "{err}"
    );
    assert_eq!(st.consecutive_failures, 1);
    assert_eq!(
        st.latest_digest,
        Some(v1.clone()),
        "the last good digest is kept"
    );
    let first_wait = st.next_probe_at.unwrap() - r.clock_now();
    assert_eq!(first_wait.num_seconds(), 30, "backoff_initial");

    // Still down: the wait doubles; nothing is probed before it ends.
    r.clock.advance(chrono::Duration::seconds(29));
    assert_eq!(r.watcher.pass().await.unwrap().probed, 0);
    r.clock.advance(chrono::Duration::seconds(1));
    assert_eq!(r.watcher.pass().await.unwrap().failed, 1);
    let st = store.tracked_image(&image).await.unwrap();
    assert_eq!(st.consecutive_failures, 2);
    assert_eq!(
        (st.next_probe_at.unwrap() - r.clock_now()).num_seconds(),
        60
    );

    let ws = store.workspaces().await.unwrap();
    assert_eq!(
        (ws[0].desired_digest.as_ref(), ws[0].actual_digest.as_ref()),
        (None, Some(&v1)),
        "a probe error marks no drift"
    );

    reg.restart();
    r.clock.advance(chrono::Duration::seconds(60));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!((pass.probed, pass.failed), (1, 0));
    assert!(pass.releases.is_empty(), "recovering is not a release");
    let st = store.tracked_image(&image).await.unwrap();
    assert_eq!((st.last_error, st.consecutive_failures), (None, 0));
    assert!(store.releases_of_image(&image).await.unwrap().is_empty());
    assert!(r.metrics.render().contains("outcome=\"unreachable\""));
}

impl Rig {
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use sluice::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn basic_auth_registries_work_with_credentials_and_fail_clearly_without() {
    // One storage, two registries: an open one to push to, one behind htpasswd to probe.
    let open = RegistryProc::start(RegistryOpts::default());
    let secured = RegistryProc::start(RegistryOpts {
        root: Some(open.root().to_owned()),
        users: vec![("sluice".into(), "s3cret-pass".into())],
        ..RegistryOpts::default()
    });
    let v1 = build_fixture("good", "v1", &format!("{}/app:stable", open.host()));
    let image = ImageRef::parse(&format!("{}/app:stable", secured.host())).unwrap();
    let m = RegistryMetrics::unregistered().unwrap();
    let timeout = Duration::from_secs(5);

    let anonymous = OciRegistry::new(&Default::default(), timeout, m.clone()).unwrap();
    let e = anonymous.resolve(&image).await.unwrap_err();
    assert!(matches!(e, RegistryError::NoCredentials { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&secured.host()) && msg.contains("no credentials"),
        "{msg}"
    );

    let mut s = Settings::default();
    s.registries.auth = vec![RegistryCredential {
        registry: secured.host(),
        username: "sluice".into(),
        password: Secret::new("wrong-password"),
    }];
    let wrong = OciRegistry::new(&s.registries, timeout, m.clone()).unwrap();
    let e = wrong.resolve(&image).await.unwrap_err();
    assert!(
        matches!(e, RegistryError::CredentialsRefused { .. }),
        "{e:?}"
    );
    assert!(!e.to_string().contains("wrong-password"));

    s.registries.auth[0].password = Secret::new("s3cret-pass");
    let good = OciRegistry::new(&s.registries, timeout, m.clone()).unwrap();
    assert_eq!(good.resolve(&image).await.unwrap().digest, v1);
    assert_eq!(
        good.changelog(&image, &v1).await.unwrap().as_deref(),
        Some("sluice fixture good v1"),
        "the blob API works with the same credentials"
    );

    // The same credentials from a Docker config.json (private file).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("sluice:s3cret-pass");
    std::fs::write(
        &path,
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            secured.host()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut s = Settings::default();
    s.registries.docker_config = Some(path.clone());
    let docker = OciRegistry::new(&s.registries, timeout, m.clone()).unwrap();
    assert_eq!(docker.resolve(&image).await.unwrap().digest, v1);

    // A world-readable one is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = OciRegistry::new(&s.registries, timeout, m).err().unwrap();
    assert!(e.to_string().contains("readable by every user"), "{e}");
    drop(open);
}

/// The contract both registries meet: a pushed tag resolves to its digest through a
/// HEAD, an unknown tag is `NotFound`, the changelog is the description label.
async fn contract<R: Registry>(r: &R, image: &ImageRef, digest: &Digest, missing: &ImageRef) {
    let got = r.resolve(image).await.unwrap();
    assert_eq!((&got.digest, got.via), (digest, RequestKind::Head));
    let e = r.resolve(missing).await.unwrap_err();
    assert!(matches!(e, RegistryError::NotFound { .. }), "{e:?}");
    assert_eq!(
        r.changelog(image, digest).await.unwrap().as_deref(),
        Some("sluice fixture good v1")
    );
}

#[tokio::test]
async fn real_and_fake_registries_meet_the_same_contract() {
    let repo = format!("{}/sluice-it/{}", registry(), unique("contract"));
    let image = ImageRef::parse(&format!("{repo}:stable")).unwrap();
    let missing = ImageRef::parse(&format!("{repo}:nosuchtag")).unwrap();
    let digest = build_fixture("good", "v1", &image.to_string());
    let real = OciRegistry::new(
        &Default::default(),
        Duration::from_secs(5),
        RegistryMetrics::unregistered().unwrap(),
    )
    .unwrap();
    contract(&real, &image, &digest, &missing).await;
    let fake = FakeRegistry::new();
    fake.push(&image, &digest, Some("sluice fixture good v1"));
    contract(&fake, &image, &digest, &missing).await;
}

#[tokio::test]
async fn malformed_image_references_are_rejected_and_never_probed() {
    for bad in [
        "",
        "Acme/App:stable",
        "app:",
        "127.0.0.1:99999/app:1",
        "app:has space",
        "127.0.0.1:5000/app@sha256:0123",
    ] {
        let e = ImageRef::parse_tracked(bad).unwrap_err().to_string();
        assert!(e.contains("image reference"), "{bad}: {e}");
    }
    let pinned = format!("127.0.0.1:5000/app@sha256:{}", "a".repeat(64));
    let e = ImageRef::parse_tracked(&pinned).unwrap_err().to_string();
    assert!(e.contains("names a tag, not a digest"), "{e}");

    // A bad row that slipped into the database is skipped; good ones are still probed.
    let (_d, store) = fresh_store().await;
    let image = format!("{}/sluice-fixtures/good:v1", registry());
    add_workspace(&store, &image, None).await;
    sqlx::query(
        "INSERT INTO workspaces (name, image, created_at, updated_at) VALUES ($1, $2, 0, 0)",
    )
    .bind(unique("bad"))
    .bind("Not A Reference")
    .execute(store.raw_pool())
    .await
    .unwrap();
    let r = rig(&store, &settings(60));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!((pass.probed, pass.failed), (1, 0));
    let tracked = store.tracked_images().await.unwrap();
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].image, image);
    assert!(
        pass.releases.is_empty(),
        "the first digest of an image nobody runs is a baseline"
    );
    let _ = r.wakers;
}

#[tokio::test]
async fn many_images_are_probed_concurrently_in_one_pass() {
    let (_d, store) = fresh_store().await;
    let mut images = Vec::new();
    for mode in ["good", "bad-health", "crash", "migrates-then-fails"] {
        for tag in ["v1", "v2", "v3"] {
            let image = format!("{}/sluice-fixtures/{mode}:{tag}", registry());
            add_workspace(&store, &image, None).await;
            add_workspace(&store, &image, None).await;
            images.push(image);
        }
    }
    let r = rig(&store, &settings(60));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!(
        (pass.probed, pass.failed),
        (images.len(), 0),
        "one probe per image"
    );
    for s in store.tracked_images().await.unwrap() {
        assert!(s.latest_digest.is_some() && s.last_error.is_none(), "{s:?}");
    }
    assert_eq!(r.requests.requests_of_kind("head"), images.len() as u64);
}

/// The distribution registry sends its push event just before it moves the tag: a hinted
/// probe that still sees the old digest is repeated on the next passes, without waiting
/// for the poll interval.
#[tokio::test]
async fn a_push_hint_that_sees_no_change_yet_is_retried() {
    let (_d, store) = fresh_store().await;
    let mut cleanup = DockerCleanup::default();
    let repo = format!("sluice-it/{}", unique("hint"));
    let image = format!("{}/{repo}:stable", registry());
    let v1 = build_kept("v1", &image, &mut cleanup);
    add_workspace(&store, &image, Some(&v1)).await;
    let r = rig(&store, &settings(3600));
    assert_eq!(r.watcher.pass().await.unwrap().probed, 1);
    assert_eq!(
        r.watcher.pass().await.unwrap().probed,
        0,
        "not due for an hour"
    );

    r.hints.push(&repo);
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!(
        (pass.probed, pass.releases.len()),
        (1, 0),
        "tag not moved yet"
    );
    let v2 = build_kept("v2", &image, &mut cleanup);
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!(
        (pass.probed, pass.releases.len()),
        (1, 1),
        "the hint was kept"
    );
    assert_eq!(store.releases_of_image(&image).await.unwrap()[0].digest, v2);
    assert_eq!(
        r.watcher.pass().await.unwrap().probed,
        0,
        "a hint is dropped once its tag moved"
    );
    r.hints.push("some/other-repo");
    assert_eq!(
        r.watcher.pass().await.unwrap().probed,
        0,
        "hints name a repository"
    );
}

#[tokio::test]
async fn an_image_no_workspace_tracks_any_more_is_dropped() {
    let (_d, store) = fresh_store().await;
    let image = format!("{}/sluice-fixtures/good:v2", registry());
    add_workspace(&store, &image, None).await;
    let r = rig(&store, &settings(60));
    assert_eq!(r.watcher.pass().await.unwrap().probed, 1);
    let gauge = format!("sluice_image_last_probe_success_timestamp_seconds{{image=\"{image}\"}}");
    assert!(r.metrics.render().contains(&gauge));

    sqlx::query("UPDATE workspaces SET deleted_at = 1")
        .execute(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(r.watcher.pass().await.unwrap().probed, 0);
    assert!(store.tracked_images().await.unwrap().is_empty());
    assert!(
        !r.metrics.render().contains(&gauge),
        "its gauge is gone too"
    );
}
