//! Bad database input at startup, through the real binary: each case stops `sluice run`
//! with one line on stderr that names the database (password redacted) and a non-zero
//! exit, and leaves the database as it was. Needs the PostgreSQL test cluster
//! (`SLUICE_TEST_PG`).

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sluice::store::{COPY_PLAN, Engine, Store, TestDb};

use crate::support::{sluice_bin, unique};

pub const PASSWORD: &str = "s3cret-Pa55word";

/// `url` with [`PASSWORD`] as its user's password (the test cluster trusts loopback and
/// ignores it, so it only has to stay out of every output).
pub fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("a user in the URL");
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// The `sluice` binary with a clean environment: a scratch data dir, port 0, `db_url`.
pub fn sluice(args: &[&str], data_dir: &std::path::Path, db_url: &str) -> Command {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("SLUICE_MIGRATE_TO")
        .env_remove("SLUICE__DATABASE__FLEET")
        .env("SLUICE__DATA__DIR", data_dir)
        .env("SLUICE__API__LISTEN", "127.0.0.1:0")
        .env("SLUICE__DATABASE__URL", db_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end, killing it (and failing the test) after `limit`: a daemon that
/// started where it should have refused must not hang the run.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn sluice");
    while child.try_wait().expect("wait for sluice").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "sluice still ran after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    (child.wait_with_output().expect("collect output"), elapsed)
}

/// Asserts a refusal: non-zero exit, exactly one line on stderr, nothing on stdout, no
/// password anywhere; returns the line.
pub fn refused_with_one_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should have failed: {stderr}");
    assert!(
        !stdout.contains(PASSWORD) && !stderr.contains(PASSWORD),
        "password leaked: {stdout}{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("sluice: error: "), "{stderr}");
    assert!(stdout.trim().is_empty(), "{stdout}");
    lines[0].to_owned()
}

/// Every table's rows, the settings and the applied migrations, to compare a database
/// before and after a refusal.
pub async fn contents(store: &Store) -> Vec<String> {
    let pool = store.raw_pool();
    let mut out = Vec::new();
    for (table, _) in COPY_PLAN {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(pool)
                .await
                .unwrap();
        out.push(format!("{table}: {n}"));
    }
    let settings: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT key, value, version FROM settings ORDER BY key")
            .fetch_all(pool)
            .await
            .unwrap();
    out.extend(settings.iter().map(|s| format!("{s:?}")));
    let migrations: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .unwrap();
    out.push(format!("migrations: {migrations:?}"));
    out
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn an_unreachable_server_is_one_line_and_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://sluice:{PASSWORD}@127.0.0.1:{port}/sluice");
    let (out, took) = run_bounded(&mut sluice(&["run"], dir.path(), &url), LIMIT);
    let line = refused_with_one_line(&out);
    assert!(
        line.contains(&format!(
            "cannot connect to database postgres://sluice:***@127.0.0.1:{port}/sluice"
        )),
        "{line}"
    );
    assert!(
        took < sluice::store::CONNECT_TIMEOUT + Duration::from_secs(5),
        "took {took:?}"
    );
}

#[test]
fn a_server_that_never_answers_is_given_up_after_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections (the kernel's backlog) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://sluice:{PASSWORD}@127.0.0.1:{port}/sluice");
    let (out, took) = run_bounded(&mut sluice(&["run"], dir.path(), &url), LIMIT);
    let line = refused_with_one_line(&out);
    let timeout = sluice::store::CONNECT_TIMEOUT;
    assert!(
        line.contains(&format!("no answer within {}s", timeout.as_secs())),
        "{line}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "took {took:?}"
    );
    drop(silent);
}

#[tokio::test]
async fn a_database_that_does_not_exist_is_one_line_and_is_not_created() {
    let admin = TestDb::admin_url();
    let base = admin.rsplit_once('/').unwrap().0;
    let name = unique("sluice_missing").replace('-', "_");
    let url = with_password(&format!("{base}/{name}"));
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = run_bounded(&mut sluice(&["run"], dir.path(), &url), LIMIT);
    let line = refused_with_one_line(&out);
    assert!(
        line.contains(&format!("database \"{name}\" does not exist")) && line.contains("***"),
        "{line}"
    );
    let admin_store = Store::open(&admin, 1, Duration::from_secs(5))
        .await
        .unwrap();
    let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(admin_store.raw_pool())
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_and_left_alone() {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let db = TestDb::on(engine).await;
        let store = db.store(2).await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from a newer sluice', TRUE, $1, 0)",
        )
        .bind(vec![0u8; 4])
        .execute(store.raw_pool())
        .await
        .unwrap();
        let before = contents(&store).await;
        let url = match engine {
            Engine::Postgres => with_password(db.url()),
            Engine::Sqlite => db.url().to_owned(),
        };
        let (out, _) = run_bounded(&mut sluice(&["run"], db.path(), &url), LIMIT);
        let line = refused_with_one_line(&out);
        assert!(
            line.contains("schema version 9999") && line.contains("upgrade sluice"),
            "{engine:?}: {line}"
        );
        assert_eq!(
            contents(&store).await,
            before,
            "{engine:?}: nothing written"
        );
        assert_eq!(store.stored_fleet().await.unwrap(), None);
        store.close().await;
    }
}

#[tokio::test]
async fn a_database_of_another_fleet_is_refused_and_left_alone() {
    let db = TestDb::on(Engine::Postgres).await;
    let store = db.store(2).await;
    store.claim_fleet("blue", chrono::Utc::now()).await.unwrap();
    let before = contents(&store).await;
    let url = with_password(db.url());
    let mut cmd = sluice(&["run"], db.path(), &url);
    cmd.env("SLUICE__DATABASE__FLEET", "green");
    let (out, _) = run_bounded(&mut cmd, LIMIT);
    let line = refused_with_one_line(&out);
    assert!(
        line.contains("fleet `blue`") && line.contains("fleet is `green`") && line.contains("***"),
        "{line}"
    );
    assert_eq!(contents(&store).await, before, "nothing written");
    store.close().await;
}

#[tokio::test]
async fn the_first_start_stores_the_fleet_and_later_starts_keep_it() {
    let db = TestDb::on(Engine::Postgres).await;
    let url = with_password(db.url());
    let mut first = sluice(&["migrate"], db.path(), &url);
    first.env("SLUICE__DATABASE__FLEET", "blue");
    let (out, _) = run_bounded(&mut first, LIMIT);
    assert!(out.status.success(), "{out:?}");
    // No fleet configured: the database's is used, and said so.
    let (out, _) = run_bounded(&mut sluice(&["migrate"], db.path(), &url), LIMIT);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("blue"), "the fleet is logged: {stderr}");
    let all = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains(PASSWORD), "{all}");
    let store = db.store(1).await;
    assert_eq!(store.stored_fleet().await.unwrap().as_deref(), Some("blue"));
    store.close().await;
}
