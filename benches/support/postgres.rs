//! PostgreSQL for the benches that measure it: whether the test cluster
//! (`tests/env/postgres.sh`, `SLUICE_TEST_PG`) can be reached, and dropping a bench's
//! database afterwards (each holds thousands of rows the cluster need not keep).

use sluice::store::{TestDb, redact_url};
use sqlx::Connection;

/// Whether PostgreSQL can be measured: `Err` says why not.
pub async fn reachable() -> Result<(), String> {
    let Ok(admin) = std::env::var("SLUICE_TEST_PG") else {
        return Err(
            "SLUICE_TEST_PG is unset (run `eval \"$(tests/env/postgres.sh start)\"` first)"
                .to_owned(),
        );
    };
    sqlx::any::install_default_drivers();
    match sqlx::AnyConnection::connect(&admin).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Ok(())
        }
        Err(e) => Err(format!("cannot connect to {}: {e}", redact_url(&admin))),
    }
}

/// Drops a bench database; a failure only warns.
pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let dropped = async {
        let mut conn = sqlx::AnyConnection::connect(&TestDb::admin_url()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await
    };
    if let Err(e) = dropped.await {
        eprintln!("warning: could not drop benchmark database {name}: {e}");
    }
}
