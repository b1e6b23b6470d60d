//! A stored rollout, parsed: the row's JSON columns become typed data, and a change
//! becomes one [`Draft`] (the [`Change`]s the store applies in one transaction).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::machine::{Event, RolloutStatus};
use super::strategy::Strategy;
use crate::domain::{
    ApplyTier, AuditEvent, Change, Digest, ReleaseStatus, RolloutChange, RolloutRowKey,
    RolloutState,
};
use crate::store::{RolloutRow, StoreError};

/// `rollouts.state_data`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutData {
    #[serde(default)]
    pub paused_from: Option<RolloutState>,
    /// Tiers applied so far, in order (re-applying one is a no-op).
    #[serde(default)]
    pub applied: Vec<ApplyTier>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub id: i64,
    pub release_id: i64,
    pub image: String,
    pub digest: Digest,
    pub release_status: ReleaseStatus,
    pub status: RolloutStatus,
    pub data: RolloutData,
    pub strategy: Strategy,
    pub started_by: String,
    pub version: i64,
}

impl Rollout {
    pub fn from_row(r: RolloutRow) -> Result<Self, StoreError> {
        let bad = |e: serde_json::Error| StoreError::Corrupt {
            what: "rollout",
            message: e.to_string(),
        };
        let data: RolloutData = serde_json::from_str(&r.state_data).map_err(bad)?;
        let strategy: Strategy = serde_json::from_str(&r.strategy).map_err(bad)?;
        Ok(Self {
            id: r.id,
            release_id: r.release_id,
            image: r.image,
            digest: r.digest,
            release_status: r.release_status,
            status: RolloutStatus {
                state: r.state,
                paused_from: data.paused_from,
                soak_started_at: r.soak_started_at,
                soak_ends_at: r.soak_ends_at,
                finished_at: r.finished_at,
            },
            data,
            strategy,
            started_by: r.started_by,
            version: r.version,
        })
    }

    /// A draft that keeps the rollout as it is (bumping its version) — the base every
    /// change starts from.
    pub fn draft(&self) -> Draft {
        Draft::new(
            RolloutRowKey::Existing {
                id: self.id,
                expected_version: self.version,
            },
            &self.status,
            &self.data,
        )
    }

    /// Applies a transition to `d` and records it as a `rollout.transition` event whose
    /// detail carries the machine event (the replayable log).
    pub fn transition(
        &mut self,
        d: &mut Draft,
        event: &Event,
        next: RolloutStatus,
        actor: &str,
        reason: &str,
    ) {
        d.push(Change::Audit(AuditEvent {
            actor: actor.to_owned(),
            action: "rollout.transition".to_owned(),
            workspace: None,
            detail: serde_json::json!({
                "event": event, "from": self.status.state, "to": next.state, "reason": reason,
            }),
        }));
        self.data.paused_from = next.paused_from;
        self.status = next;
        d.set_status(&self.status, &self.data);
    }

    /// Rewrites the data part of `d` after `self.data` changed.
    pub fn sync(&self, d: &mut Draft) {
        d.set_status(&self.status, &self.data);
    }
}

/// The changes of one decision being built: the rollout row (always written, it carries
/// the version check) and the rest in the order they were decided.
#[derive(Clone, Debug)]
pub struct Draft {
    pub row: RolloutChange,
    pub changes: Vec<Change>,
}

impl Draft {
    pub fn new(key: RolloutRowKey, s: &RolloutStatus, d: &RolloutData) -> Self {
        let mut out = Self {
            row: RolloutChange {
                key,
                state: s.state,
                state_data: String::new(),
                strategy: None,
                soak_started_at: None,
                soak_ends_at: None,
                finished_at: None,
                reason: None,
            },
            changes: Vec::new(),
        };
        out.set_status(s, d);
        out
    }

    pub fn push(&mut self, c: Change) {
        self.changes.push(c);
    }

    fn set_status(&mut self, s: &RolloutStatus, d: &RolloutData) {
        let w = &mut self.row;
        w.state = s.state;
        w.state_data = serde_json::to_string(d).unwrap_or_else(|_| "{}".to_owned());
        w.soak_started_at = s.soak_started_at;
        w.soak_ends_at = s.soak_ends_at;
        w.finished_at = s.finished_at;
    }

    /// True when the reconciler has desired digests to act on.
    pub fn writes_desired(&self) -> bool {
        self.changes.iter().any(|c| matches!(c, Change::Desired(_)))
    }

    /// The list the store applies: the rollout row first.
    pub fn into_changes(self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.changes.len() + 1);
        out.push(Change::Rollout(self.row));
        out.extend(self.changes);
        out
    }
}

/// A plain audit event about this rollout (subject and id filled in by the store).
pub fn event(
    actor: &str,
    action: &str,
    workspace: Option<&str>,
    detail: serde_json::Value,
) -> Change {
    Change::Audit(AuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        workspace: workspace.map(str::to_owned),
        detail,
    })
}

/// Rebuilds a rollout's status from its stored transition events.
pub fn replay_log(
    log: &[(serde_json::Value, DateTime<Utc>)],
) -> Result<RolloutStatus, super::machine::IllegalTransition> {
    let events: Vec<(Event, DateTime<Utc>)> = log
        .iter()
        .filter_map(|(d, at)| {
            serde_json::from_value::<Event>(d.get("event")?.clone())
                .ok()
                .map(|e| (e, *at))
        })
        .collect();
    super::machine::replay(events.iter().map(|(e, at)| (e, *at)))
}
