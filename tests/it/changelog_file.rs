//! The changelog file inside a release's image (`[images] changelog_file`), read by the
//! daemon's changelog reader from fixture images pushed to the real local registry and
//! pulled by digest into the real Docker engine: the structured format behind the
//! `latest.json` symlink, plain text, a file over the limit, an image without the file;
//! shown by the API and `sluice release show`; the helper container is never started and
//! never left behind. Runs on either store engine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use sluice::clock::SystemClock;
use sluice::config::{ImageSettings, Settings};
use sluice::domain::Digest;
use sluice::runtime::DockerHandle;
use sluice::store::Store;
use sluice::watcher::{ChangelogReader, ReadOutcome};

use crate::api::{ADMIN_TOKEN, TestApi};
use crate::support::{DockerCleanup, registry, repo_root, run, sluice_bin, unique};

const STRUCTURED: &str = r#"{"version": "1.2.0", "date": "2026-11-30",
  "sections": [{"title": "Added", "items": ["dark mode", "CSV export"]},
               {"title": "Fixed", "items": ["login loop"]}]}"#;

/// Pushes a `good` fixture as `reference`, with `changelog` (if any) copied into the image
/// as /app/changelogs/`name` and the latest.json symlink; returns its digest.
fn push(reference: &str, changelog: Option<(&str, &[u8])>, dir: &Path) -> Digest {
    let mut cmd = Command::new(repo_root().join("tests/env/build-fixture.sh"));
    cmd.args(["good", "v2", reference]);
    if let Some((name, content)) = changelog {
        let file = dir.join(name);
        std::fs::write(&file, content).unwrap();
        cmd.env("CHANGELOG_FILE", &file);
    }
    Digest::parse(run(&mut cmd).trim()).expect("the fixture build prints its digest")
}

/// Records a queued release of `image` at `digest`, as the watcher does.
async fn release(store: &Store, image: &str, digest: &Digest) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, changelog, status, updated_at) \
         VALUES ($1, $2, $3, 'the label changelog', 'queued', $3) RETURNING id",
    )
    .bind(image)
    .bind(digest.as_str())
    .bind(chrono::Utc::now().timestamp_millis())
    .fetch_one(store.raw_pool())
    .await
    .expect("insert release")
}

/// Waits (≤ 90 s) until the reader has finished with release `id`; returns its JSON.
async fn read(api: &TestApi, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done: Option<i64> =
            sqlx::query_scalar("SELECT changelog_file_read_at FROM releases WHERE id = $1")
                .bind(id)
                .fetch_one(api.store.raw_pool())
                .await
                .unwrap();
        if done.is_some() {
            let (status, v) = api
                .admin(Method::GET, &format!("/api/v1/releases/{id}"), None)
                .await;
            assert_eq!(status, 200, "{v}");
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "release {id}'s changelog file was not read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Docker's events since `since` (Unix seconds) of helper containers made from `repo`.
fn helper_events(since: i64, repo: &str) -> Vec<String> {
    let until = chrono::Utc::now().timestamp() + 1;
    run(Command::new("docker").args([
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=container",
        "--filter",
        "label=sluice.purpose=read-changelog",
        "--format",
        "{{.Action}} {{.From}}",
    ]))
    .lines()
    .filter(|l| l.contains(repo))
    .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
    .collect()
}

/// Helper containers made from `repo` that still exist.
fn helpers_left(repo: &str) -> Vec<String> {
    run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        "label=sluice.managed=true",
        "--filter",
        "label=sluice.purpose=read-changelog",
        "--format",
        "{{.ID}} {{.Image}}",
    ]))
    .lines()
    .filter(|l| l.contains(repo))
    .map(str::to_owned)
    .collect()
}

fn cli(api: &TestApi, args: &[&str]) -> String {
    let out = Command::new(sluice_bin())
        .args(["--server", &api.url("")])
        .args(args)
        .env("SLUICE_TOKEN", ADMIN_TOKEN)
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_structured_changelog_behind_the_symlink_is_read_without_running_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("{}/{}", registry(), unique("fx/changelog"));
    let reference = format!("{repo}:stable");
    let mut cleanup = DockerCleanup::default();
    let digest = push(
        &reference,
        Some(("1.2.0.json", STRUCTURED.as_bytes())),
        dir.path(),
    );
    cleanup.images.push(format!("{repo}@{digest}"));
    let since = chrono::Utc::now().timestamp() - 1;
    let api = TestApi::start().await;
    let id = release(&api.store, &reference, &digest).await;

    let r = read(&api, id).await;
    let f = &r["changelog_file"];
    assert_eq!(
        f["path"], "/app/changelogs/1.2.0.json",
        "followed the symlink: {r}"
    );
    assert_eq!(f["format"], "structured", "{r}");
    assert_eq!(
        (f["version"].as_str(), f["date"].as_str()),
        (Some("1.2.0"), Some("2026-11-30"))
    );
    assert_eq!(f["sections"][0]["title"], "Added");
    assert_eq!(
        f["sections"][0]["items"],
        serde_json::json!(["dark mode", "CSV export"])
    );
    assert_eq!(f["sections"][1]["items"], serde_json::json!(["login loop"]));
    assert_eq!(f["truncated"], false);
    assert_eq!(
        r["changelog"], "the label changelog",
        "the label changelog stays: {r}"
    );

    // The served document names every field of the answer.
    let (status, doc) = api.admin(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let schemas = &doc["components"]["schemas"];
    for (object, schema) in [(&r, "Release"), (f, "ChangelogFile")] {
        for key in object.as_object().expect("an object").keys() {
            assert!(
                schemas[schema]["properties"].get(key).is_some(),
                "{schema}.{key} is not documented"
            );
        }
    }
    for key in ["title", "items"] {
        assert!(
            schemas["ChangelogFile"]["properties"]["sections"]["items"]["properties"]
                .get(key)
                .is_some()
        );
    }

    let (status, list) = api.admin(Method::GET, "/api/v1/releases", None).await;
    assert_eq!(status, 200);
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == id).cloned())
        .expect("listed");
    assert_eq!(listed["changelog_file"], r["changelog_file"]);

    let shown = cli(&api, &["release", "show", &id.to_string()]);
    for line in [
        "changelog file  /app/changelogs/1.2.0.json (structured)",
        "  version 1.2.0",
        "  date    2026-11-30",
        "  Added\n    - dark mode\n    - CSV export\n",
        "  Fixed\n    - login loop\n",
    ] {
        assert!(shown.contains(line), "`{line}` missing from:\n{shown}");
    }

    let events = helper_events(since, &repo);
    assert!(
        events.iter().any(|a| a == "create"),
        "a helper was created: {events:?}"
    );
    assert!(
        events.iter().any(|a| a == "destroy"),
        "and removed: {events:?}"
    );
    assert!(
        !events.iter().any(|a| a == "start"),
        "never started: {events:?}"
    );
    assert_eq!(helpers_left(&repo), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_an_oversized_file_and_an_image_without_one_are_each_recorded_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mut cleanup = DockerCleanup::default();
    let text = "## 1.3.0\n- faster start\n- {not json}\n";
    let big = "x".repeat(64 * 1024 + 100);
    let mut cases = Vec::new();
    for (tag, file) in [
        ("text", Some(("notes.txt", text.as_bytes()))),
        ("big", Some(("big.json", big.as_bytes()))),
        ("none", None),
    ] {
        let repo = format!("{}/{}", registry(), unique(&format!("fx/changelog-{tag}")));
        let reference = format!("{repo}:stable");
        let digest = push(&reference, file, dir.path());
        cleanup.images.push(format!("{repo}@{digest}"));
        cases.push((repo, reference, digest));
    }
    let api = TestApi::start().await;
    let mut ids = Vec::new();
    for (_, reference, digest) in &cases {
        ids.push(release(&api.store, reference, digest).await);
    }

    let r = read(&api, ids[0]).await;
    let f = &r["changelog_file"];
    assert_eq!(
        (f["format"].as_str(), f["text"].as_str()),
        (Some("text"), Some(text)),
        "{r}"
    );
    assert_eq!(f["path"], "/app/changelogs/notes.txt");
    assert_eq!(f["sections"], serde_json::json!([]));
    let shown = cli(&api, &["release", "show", &ids[0].to_string()]);
    assert!(shown.contains("  | - faster start\n"), "{shown}");

    let r = read(&api, ids[1]).await;
    let f = &r["changelog_file"];
    assert_eq!(f["truncated"], true, "{r}");
    assert_eq!(f["size"], big.len());
    assert_eq!(f["text"].as_str().map(str::len), Some(64 * 1024));
    assert!(
        f["note"]
            .as_str()
            .unwrap_or_default()
            .contains("over the limit of 65536"),
        "{r}"
    );

    let r = read(&api, ids[2]).await;
    assert_eq!(r["changelog_file"], Value::Null, "{r}");
    assert_eq!(r["changelog"], "the label changelog");
    assert_eq!(r["status"], "queued");
    let attempts: i64 =
        sqlx::query_scalar("SELECT changelog_file_attempts FROM releases WHERE id = $1")
            .bind(ids[2])
            .fetch_one(api.store.raw_pool())
            .await
            .unwrap();
    assert_eq!(attempts, 0, "an image without the file is not a failure");

    for (repo, _, _) in &cases {
        assert_eq!(helpers_left(repo), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_read_is_given_up_after_three_attempts_and_without_pulls_a_release_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut cleanup = DockerCleanup::default();
    let db = sluice::store::TestDb::new().await;
    let store = db.store(2).await;
    let docker = sluice::runtime::connect(&Settings::default().docker)
        .await
        .expect("the test engine answers");
    let engine = DockerHandle::connected(std::sync::Arc::new(docker));
    let reader = |settings: ImageSettings| {
        ChangelogReader::new(
            store.clone(),
            engine.clone(),
            std::sync::Arc::new(SystemClock),
            settings,
        )
    };

    // A digest the registry does not hold: the pull is refused at every attempt.
    let repo = format!("{}/{}", registry(), unique("fx/changelog-gone"));
    let gone = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
    let id = release(&store, &format!("{repo}:stable"), &gone).await;
    let pulling = reader(ImageSettings::default());
    for _ in 0..3 {
        assert_eq!(
            pulling.pass(None).await.unwrap(),
            vec![(id, ReadOutcome::Failed)]
        );
    }
    assert_eq!(pulling.pass(None).await.unwrap(), vec![], "given up");
    let r = store.release(id).await.unwrap();
    assert_eq!(r.changelog.as_deref(), Some("the label changelog"));
    assert_eq!(r.changelog_file, None);

    // Without pulls, a release whose image is not on the engine waits for it.
    let repo = format!("{}/{}", registry(), unique("fx/changelog-later"));
    let reference = format!("{repo}:stable");
    let digest = push(
        &reference,
        Some(("1.2.0.json", STRUCTURED.as_bytes())),
        dir.path(),
    );
    let pinned = format!("{repo}@{digest}");
    cleanup.images.push(pinned.clone());
    let id = release(&store, &reference, &digest).await;
    let waiting = reader(ImageSettings {
        changelog_pull: false,
        ..ImageSettings::default()
    });
    assert_eq!(
        waiting.pass(None).await.unwrap(),
        vec![(id, ReadOutcome::Deferred)]
    );
    assert_eq!(store.release(id).await.unwrap().changelog_file, None);
    run(Command::new("docker").args(["pull", "-q", &pinned]));
    assert_eq!(
        waiting.pass(None).await.unwrap(),
        vec![(id, ReadOutcome::Stored(true))]
    );
    let f = store
        .release(id)
        .await
        .unwrap()
        .changelog_file
        .expect("read");
    assert_eq!(f.version.as_deref(), Some("1.2.0"));
    assert_eq!(helpers_left(&repo), Vec::<String>::new());

    // An image that `[images] allow` no longer admits is never pulled.
    let repo = format!("{}/{}", registry(), unique("fx/changelog-denied"));
    let id = release(&store, &format!("{repo}:stable"), &gone).await;
    let denied = reader(ImageSettings {
        allow: vec!["registry.example/".to_owned()],
        ..ImageSettings::default()
    });
    assert_eq!(
        denied.pass(None).await.unwrap(),
        vec![(id, ReadOutcome::Stored(false))]
    );
}

/// A helper container left by a process killed mid-read (made here by hand, with the
/// helper's labels) is removed by the sweep once it is older than the bound; a younger
/// one — a read in progress — and a container without the labels are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_container_a_killed_read_left_is_swept() {
    use sluice::runtime::ImageFiles;
    let repo = format!("{}/{}", registry(), unique("fx/changelog-sweep"));
    let digest = push(
        &format!("{repo}:v1"),
        None,
        tempfile::tempdir().unwrap().path(),
    );
    let image = format!("{repo}@{digest}");
    run(Command::new("docker").args(["pull", "-q", &image]));
    let mut cleanup = DockerCleanup::default();
    cleanup.images.push(format!("{repo}:v1"));
    let create = |name: &str, helper: bool| {
        let mut c = Command::new("docker");
        c.args(["create", "--name", name, "--label", "sluice.test=1"]);
        if helper {
            c.args([
                "--label",
                "sluice.managed=true",
                "--label",
                "sluice.purpose=read-changelog",
            ]);
        }
        run(c.arg(&image));
    };
    let left = unique("changelog-left");
    let other = unique("changelog-other");
    cleanup.containers.extend([left.clone(), other.clone()]);
    create(&left, true);
    create(&other, false);
    let docker = sluice::runtime::connect(&Settings::default().docker)
        .await
        .expect("the test engine answers");
    let engine = DockerHandle::connected(std::sync::Arc::new(docker));
    let exists = |name: &str| {
        Command::new("docker")
            .args(["inspect", name])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // Too young: a read may be using it.
    let now = || sluice::clock::Clock::now(&SystemClock);
    engine
        .sweep(now() - Duration::from_secs(600))
        .await
        .unwrap();
    assert!(exists(&left), "a young helper is left alone");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let removed = engine.sweep(now() - Duration::from_secs(3)).await.unwrap();
    assert!(removed >= 1, "{removed}");
    assert!(!exists(&left), "the stale helper is removed");
    assert!(
        exists(&other),
        "a container without the helper's labels stays"
    );
}
