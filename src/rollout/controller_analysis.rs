//! The controller's metric checks (`[[rollout.analysis]]`): which are due for a
//! rollout's stage, the queries (through the `rollout::prometheus::MetricSource` adapter), and the pure
//! verdicts of `rollout::analysis`. Nothing is written here: the results go into the
//! pass's decision and are stored with it.

use chrono::{DateTime, Utc};

use super::{Controller, ControllerError};
use crate::domain::{AnalysisRecord, Tier};
use crate::rollout::analysis::{self, Gate, Sample};
use crate::rollout::record::Rollout;

impl Controller {
    /// Runs the metric checks that are due for this rollout's stage; what they say for
    /// the pass, and the results to store with its decision.
    pub(super) async fn analyse(
        &self,
        r: &Rollout,
        now: DateTime<Utc>,
    ) -> Result<(Gate, Vec<AnalysisRecord>), ControllerError> {
        let Some(stage) = analysis::stage(r.status.state) else {
            return Ok((Gate::open(), Vec::new()));
        };
        let checks = analysis::applicable(&self.deps.settings.analysis, &r.image, stage);
        if checks.is_empty() {
            return Ok((Gate::open(), Vec::new()));
        }
        let mut latest: Vec<AnalysisRecord> = self
            .deps
            .store
            .latest_analysis(r.id)
            .await?
            .into_iter()
            .filter(|a| a.stage == stage)
            .collect();
        let due: Vec<_> = checks
            .iter()
            .filter(|c| analysis::due(c, latest.iter().find(|a| a.check == c.name), now))
            .collect();
        let mut results = Vec::new();
        let mut verdicts = Vec::new();
        if !due.is_empty() {
            let canaries: Vec<String> = self
                .deps
                .store
                .rollout_targets(r.id)
                .await?
                .into_iter()
                .filter(|t| t.tier == Tier::Canary)
                .map(|t| t.name)
                .collect();
            let names: Vec<&str> = canaries.iter().map(String::as_str).collect();
            for c in due {
                let (query, sample) = match analysis::render(&c.query, &names, r.digest.as_str()) {
                    Ok(q) => {
                        let s = match &self.metrics_source {
                            Some(m) => m.sample(&q).await,
                            None => Sample::Error("no Prometheus is configured".to_owned()),
                        };
                        (q, s)
                    }
                    Err(e) => (c.query.clone(), Sample::Error(e)),
                };
                let last = latest.iter().find(|a| a.check == c.name);
                let (record, verdict) = analysis::evaluate(c, stage, query, &sample, last, now);
                tracing::info!(
                    rollout = r.id,
                    check = %record.check,
                    stage = %record.stage,
                    outcome = %record.outcome,
                    detail = %record.detail,
                    verdict = %record.verdict,
                    "metric check evaluated"
                );
                latest.retain(|a| a.check != c.name);
                latest.push(record.clone());
                results.push(record);
                verdicts.push(verdict);
            }
        }
        Ok((analysis::gate(&checks, &latest, &verdicts), results))
    }
}
