//! Table `rollout_analysis`: one row per evaluation of a metric check. Writer: the
//! rollout controller, only through [`Store::apply_rollout_changes`] (the results go in
//! the transaction of the decision they led to, see `apply.rs`). Readers: the controller
//! (the newest result per check and stage) and the rollout view of the API.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::corrupt;
use crate::clock::{from_millis, to_millis};
use crate::domain::{AnalysisOutcome, AnalysisRecord, AnalysisStage, AnalysisVerdict};
use crate::store::{QueryContext, Store, StoreError};

const COLUMNS: &str =
    "check_name, stage, evaluated_at, query, value, outcome, detail, failures, verdict";

pub(super) async fn insert(
    tx: &mut AnyConnection,
    rollout_id: i64,
    records: &[&AnalysisRecord],
) -> Result<(), StoreError> {
    for a in records {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rollout_analysis (rollout_id, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(rollout_id)
        .bind(&a.check)
        .bind(a.stage.as_str())
        .bind(to_millis(a.evaluated_at))
        .bind(&a.query)
        .bind(a.value.map(|v| v.to_string()))
        .bind(a.outcome.as_str())
        .bind(&a.detail)
        .bind(i64::from(a.failures))
        .bind(a.verdict.as_str())
        .execute(&mut *tx)
        .await
        .ctx("insert analysis result")?;
    }
    Ok(())
}

fn record(r: &AnyRow) -> Result<AnalysisRecord, StoreError> {
    let bad = corrupt("rollout_analysis");
    let word = |col: &str| -> Result<String, StoreError> { r.try_get(col).ctx("read analysis") };
    let value: Option<String> = r.try_get("value").ctx("read analysis")?;
    let failures: i64 = r.try_get("failures").ctx("read analysis")?;
    Ok(AnalysisRecord {
        check: word("check_name")?,
        stage: AnalysisStage::parse(&word("stage")?).map_err(|e| bad(e.to_string()))?,
        evaluated_at: from_millis(r.try_get("evaluated_at").ctx("read analysis")?),
        query: word("query")?,
        value: value
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|e| bad(format!("value `{v}`: {e}")))
            })
            .transpose()?,
        outcome: AnalysisOutcome::parse(&word("outcome")?).map_err(|e| bad(e.to_string()))?,
        detail: word("detail")?,
        failures: u32::try_from(failures).map_err(|e| bad(format!("failures: {e}")))?,
        verdict: AnalysisVerdict::parse(&word("verdict")?).map_err(|e| bad(e.to_string()))?,
    })
}

impl Store {
    /// The newest result of each (check, stage) of a rollout, by check name.
    pub async fn latest_analysis(
        &self,
        rollout_id: i64,
    ) -> Result<Vec<AnalysisRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM rollout_analysis a WHERE a.rollout_id = $1 AND a.id = \
             (SELECT MAX(b.id) FROM rollout_analysis b WHERE b.rollout_id = a.rollout_id \
              AND b.check_name = a.check_name AND b.stage = a.stage) \
             ORDER BY a.check_name, a.stage"
        )))
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await
        .ctx("read latest analysis")?;
        rows.iter().map(record).collect()
    }

    /// The newest `limit` results of a rollout, newest first, and how many it has in all.
    pub async fn analysis_history(
        &self,
        rollout_id: i64,
        limit: i64,
    ) -> Result<(Vec<AnalysisRecord>, i64), StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM rollout_analysis WHERE rollout_id = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(rollout_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("read analysis history")?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM rollout_analysis WHERE rollout_id = $1")
                .bind(rollout_id)
                .fetch_one(&self.pool)
                .await
                .ctx("count analysis results")?;
        Ok((rows.iter().map(record).collect::<Result<_, _>>()?, total))
    }
}
