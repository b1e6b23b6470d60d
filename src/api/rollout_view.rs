//! How a rollout is shown by the API (and `sluice rollout show`/`watch`): its targets
//! with the status their host gives them, per-host counts, and the newest result of each
//! metric check. Built from rows already read; no I/O here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{
    AnalysisOutcome, AnalysisRecord, AnalysisStage, AnalysisVerdict, ApplyTier, Digest, HostName,
    HostState, RolloutState, TargetStatus,
};
use crate::rollout::hosts::HostStates;
use crate::rollout::record::Rollout;
use crate::store::TargetRow;

/// The status shown for a `pending` or `updating` target whose host is not ready. Derived
/// when the view is built, never stored.
pub const WAITING_FOR_HOST: &str = "waiting_for_host";

#[derive(Debug, Serialize)]
pub struct TargetView {
    pub name: String,
    pub tier: String,
    /// The stored status, or `waiting_for_host` (derived) while the host is not ready.
    pub status: String,
    pub host: HostName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub wave: i64,
    pub attempts: i64,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
    pub updated_at: DateTime<Utc>,
}

/// A rollout as the API returns it.
#[derive(Debug, Serialize)]
pub struct RolloutView {
    pub id: i64,
    pub release_id: i64,
    pub image: String,
    pub digest: Digest,
    pub state: RolloutState,
    pub paused_from: Option<RolloutState>,
    pub applied: Vec<ApplyTier>,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub started_by: String,
    pub strategy: serde_json::Value,
    pub workspaces: Vec<TargetView>,
    pub counts: BTreeMap<String, usize>,
    /// Per host of the rollout's targets, by host name.
    pub hosts: Vec<HostSummary>,
    /// The newest evaluation of each metric check, per stage (`[[rollout.analysis]]`).
    pub analysis: Vec<AnalysisView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_op: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One evaluation of a metric check.
#[derive(Debug, Serialize)]
pub struct AnalysisView {
    pub check: String,
    pub stage: AnalysisStage,
    pub evaluated_at: DateTime<Utc>,
    /// The query as sent, variables filled in.
    pub query: String,
    pub value: Option<f64>,
    pub outcome: AnalysisOutcome,
    pub detail: String,
    /// Consecutive failed evaluations, this one included.
    pub failures: u32,
    pub verdict: AnalysisVerdict,
}

impl From<AnalysisRecord> for AnalysisView {
    fn from(a: AnalysisRecord) -> Self {
        Self {
            check: a.check,
            stage: a.stage,
            evaluated_at: a.evaluated_at,
            query: a.query,
            value: a.value,
            outcome: a.outcome,
            detail: a.detail,
            failures: a.failures,
            verdict: a.verdict,
        }
    }
}

/// One host's share of a rollout. `pending` and `updating` leave out the targets
/// counted in `waiting_for_host`; `failed` includes `rolled_back`.
#[derive(Debug, Serialize)]
pub struct HostSummary {
    pub host: HostName,
    pub state: HostState,
    pub total: usize,
    pub updated: usize,
    pub updating: usize,
    pub pending: usize,
    pub waiting_for_host: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The status a target is shown with (see [`WAITING_FOR_HOST`]).
fn shown_status(t: &TargetRow, hosts: &HostStates) -> &'static str {
    let waiting = matches!(t.status, TargetStatus::Pending | TargetStatus::Updating)
        && hosts.of(&t.host).state != HostState::Ready;
    if waiting {
        WAITING_FOR_HOST
    } else {
        t.status.as_str()
    }
}

fn host_summaries(targets: &[TargetRow], hosts: &HostStates) -> Vec<HostSummary> {
    let mut out: BTreeMap<&HostName, HostSummary> = BTreeMap::new();
    for t in targets {
        let h = out.entry(&t.host).or_insert_with(|| HostSummary {
            host: t.host.clone(),
            state: hosts.of(&t.host).state,
            total: 0,
            updated: 0,
            updating: 0,
            pending: 0,
            waiting_for_host: 0,
            failed: 0,
            skipped: 0,
        });
        h.total += 1;
        match shown_status(t, hosts) {
            WAITING_FOR_HOST => h.waiting_for_host += 1,
            _ => match t.status {
                TargetStatus::Pending => h.pending += 1,
                TargetStatus::Updating => h.updating += 1,
                TargetStatus::Updated => h.updated += 1,
                TargetStatus::Failed | TargetStatus::RolledBack => h.failed += 1,
                TargetStatus::Skipped => h.skipped += 1,
            },
        }
    }
    out.into_values().collect()
}

/// A rollout and its targets as the API shows them, with host states at read time.
/// `analysis`: the newest result of each metric check and stage.
pub fn rollout_view(
    r: Rollout,
    targets: Vec<TargetRow>,
    hosts: &HostStates,
    analysis: Vec<AnalysisRecord>,
) -> RolloutView {
    let mut counts: BTreeMap<String, usize> = TargetStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .chain([(WAITING_FOR_HOST.to_owned(), 0)])
        .collect();
    for t in &targets {
        *counts.entry(shown_status(t, hosts).to_owned()).or_insert(0) += 1;
    }
    let summaries = host_summaries(&targets, hosts);
    RolloutView {
        id: r.id,
        release_id: r.release_id,
        image: r.image,
        digest: r.digest,
        state: r.status.state,
        paused_from: r.status.paused_from,
        applied: r.data.applied,
        soak_started_at: r.status.soak_started_at,
        soak_ends_at: r.status.soak_ends_at,
        finished_at: r.status.finished_at,
        started_by: r.started_by,
        strategy: serde_json::to_value(&r.strategy).unwrap_or_default(),
        workspaces: targets
            .into_iter()
            .map(|t| TargetView {
                status: shown_status(&t, hosts).to_owned(),
                name: t.name,
                tier: t.tier.as_str().to_owned(),
                host: t.host,
                status_reason: t.status_reason,
                wave: t.wave,
                attempts: t.attempts,
                from_digest: t.from_digest,
                to_digest: t.to_digest,
                updated_at: t.updated_at,
            })
            .collect(),
        counts,
        hosts: summaries,
        analysis: analysis.into_iter().map(AnalysisView::from).collect(),
        no_op: None,
        warning: None,
    }
}
