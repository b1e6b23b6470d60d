//! A fresh, empty database per test on the engine the run asks for: SQLite (a file in a
//! temp directory, the default) or PostgreSQL when `SLUICE_TEST_ENGINE=postgres`, as a
//! new database created from the admin URL in `SLUICE_TEST_PG` (set by
//! `tests/env/postgres.sh`, which throws the whole cluster away at the end of the run).
//! Writes no table of its own; only compiled for tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;

use super::{Engine, Store};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// One test's database and scratch directory; the directory is removed when it drops.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    engine: Engine,
    /// A scratch directory of the test's own (the SQLite file lives there).
    dir: std::path::PathBuf,
}

impl TestDb {
    /// The engine this test run uses (`SLUICE_TEST_ENGINE`, default SQLite).
    pub fn engine_of_run() -> Engine {
        match std::env::var("SLUICE_TEST_ENGINE").as_deref() {
            Ok("postgres") => Engine::Postgres,
            Ok("sqlite") | Err(_) => Engine::Sqlite,
            Ok(other) => panic!("SLUICE_TEST_ENGINE={other}: expected sqlite or postgres"),
        }
    }

    /// A new empty database on the run's engine.
    pub async fn new() -> Self {
        Self::on(Self::engine_of_run()).await
    }

    /// A new empty database on `engine`.
    pub async fn on(engine: Engine) -> Self {
        // pid + counter is unique within this run; a leftover directory from an earlier
        // run with the same pid is skipped rather than reused.
        let (unique, dir) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let unique = format!("{}_{n}", std::process::id());
            let dir = std::env::temp_dir().join(format!("sluice-testdb-{unique}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => break (unique, dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create the test database directory {}: {e}", dir.display()),
            }
        };
        match engine {
            Engine::Sqlite => Self {
                url: format!("sqlite://{}", dir.join("sluice.db").display()),
                engine,
                dir,
            },
            Engine::Postgres => {
                let admin = Self::admin_url();
                let name = format!("sluice_t_{unique}");
                sqlx::any::install_default_drivers();
                let mut conn = sqlx::AnyConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {admin}: {e}"));
                // A database left by an earlier run whose pid matched is thrown away.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("drop leftover database {name}: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("create database {name}: {e}"));
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Self {
                    url: format!("{base}/{name}"),
                    engine,
                    dir,
                }
            }
        }
    }

    /// The admin URL of the test cluster (`SLUICE_TEST_PG`).
    pub fn admin_url() -> String {
        std::env::var("SLUICE_TEST_PG").unwrap_or_else(|_| {
            panic!(
                "SLUICE_TEST_PG is not set: start the test cluster with \
                 `eval \"$(tests/env/postgres.sh start)\"` (tests/run.sh does)"
            )
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The test's scratch directory, removed with it.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// Opens the database with `connections` connections and migrates it.
    pub async fn store(&self, connections: u32) -> Store {
        let store = Store::open(&self.url, connections, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
        store.migrate().await.expect("migrate the test database");
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
