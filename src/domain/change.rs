//! What a rollout decision changes, as plain values: the pure core (`rollout::decide`)
//! builds a list of [`Change`]s, the store applies the list in one transaction
//! (`Store::apply_rollout_changes`), checking the rollout's version.
//!
//! Architecture invariant: no I/O; the store converts these to rows at the SQL edge.

use chrono::{DateTime, Utc};

use super::{
    AnalysisOutcome, AnalysisStage, AnalysisVerdict, Digest, ReleaseStatus, RolloutState,
    TargetStatus, Tier,
};

/// Which rollout row a change list writes.
#[derive(Clone, Debug, PartialEq)]
pub enum RolloutRowKey {
    /// A new rollout of `release_id` (at most one per release).
    New {
        release_id: i64,
        /// The frozen strategy (JSON owned by the rollout module).
        strategy: String,
        started_by: String,
    },
    /// An existing rollout, written only if its row still has `expected_version`.
    Existing { id: i64, expected_version: i64 },
}

/// The rollout row as it must be after the change (every list carries exactly one).
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutChange {
    pub key: RolloutRowKey,
    pub state: RolloutState,
    /// JSON owned by the rollout module (paused_from, applied tiers).
    pub state_data: String,
    /// Replaces the stored strategy when set.
    pub strategy: Option<String>,
    pub soak_started_at: Option<DateTime<Utc>>,
    pub soak_ends_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Replaces the stored reason when set.
    pub reason: Option<String>,
}

/// A workspace a rollout starts to cover.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTarget {
    pub workspace_id: i64,
    pub tier: Tier,
    pub wave: i64,
    pub status: TargetStatus,
    pub from_digest: Option<Digest>,
    pub to_digest: Digest,
}

/// A change to one existing target; `None` fields stay as they are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetChange {
    pub workspace_id: i64,
    pub status: Option<TargetStatus>,
    pub add_attempt: bool,
    pub update_id: Option<i64>,
    /// Rollback: stamp `rollback_requested_at` and, with data, the update to restore.
    pub rollback: Option<Option<i64>>,
    /// Replaces `status_reason` when set (why the target has its new status).
    pub status_reason: Option<String>,
}

/// `workspaces.desired_digest` (+ `desired_rollout_id`) for one workspace; with
/// `forget_failed`, the `failed_digests` row for that digest goes (a retry).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredChange {
    pub workspace_id: i64,
    pub digest: Digest,
    /// Record this rollout as the writer in `desired_rollout_id` (else NULL).
    pub in_rollout: bool,
    pub forget_failed: bool,
}

/// A release's new status and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseChange {
    pub release_id: i64,
    pub status: ReleaseStatus,
    pub reason: String,
}

/// An audit event about the rollout being written (`subject` `rollout:<id>`).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub workspace: Option<String>,
    pub detail: serde_json::Value,
}

/// One evaluation of a metric check (`rollout_analysis`), stored with the decision it
/// led to.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisRecord {
    pub check: String,
    pub stage: AnalysisStage,
    pub evaluated_at: DateTime<Utc>,
    /// The query as sent, variables filled in.
    pub query: String,
    /// The number the query returned; none when it returned nothing usable.
    pub value: Option<f64>,
    pub outcome: AnalysisOutcome,
    /// Why: the comparison, or what made it inconclusive.
    pub detail: String,
    /// Consecutive failed evaluations of this check, this one included.
    pub failures: u32,
    pub verdict: AnalysisVerdict,
}

/// One change of a rollout decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Rollout(RolloutChange),
    AddTarget(NewTarget),
    Target(TargetChange),
    Desired(DesiredChange),
    Release(ReleaseChange),
    Audit(AuditEvent),
    Analysis(AnalysisRecord),
}
