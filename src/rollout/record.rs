//! A stored rollout, parsed: the row's JSON columns become typed data, and a change
//! becomes one [`RolloutWrite`] carrying its audit events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::machine::{Event, RolloutStatus};
use super::strategy::Strategy;
use crate::domain::{ApplyTier, Digest, ReleaseStatus, RolloutState};
use crate::store::{NewEvent, RolloutRow, RolloutRowWrite, RolloutWrite, StoreError};

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

    /// A write that keeps the rollout as it is (bumping its version) — the base every
    /// change starts from.
    pub fn write(&self) -> RolloutWrite {
        write_for(
            RolloutRowWrite::Update {
                id: self.id,
                expected_version: self.version,
            },
            &self.status,
            &self.data,
        )
    }

    /// Applies a transition to `w` and records it as a `rollout.transition` event whose
    /// detail carries the machine event (the replayable log).
    pub fn transition(
        &mut self,
        w: &mut RolloutWrite,
        event: &Event,
        next: RolloutStatus,
        actor: &str,
        reason: &str,
    ) {
        w.events.push(NewEvent {
            actor: actor.to_owned(),
            subject: String::new(),
            action: "rollout.transition".to_owned(),
            detail: serde_json::json!({
                "event": event, "from": self.status.state, "to": next.state, "reason": reason,
            }),
            rollout_id: None,
            workspace: None,
        });
        self.data.paused_from = next.paused_from;
        self.status = next;
        set_status(w, &self.status, &self.data);
    }

    /// Rewrites the data part of `w` after `self.data` changed.
    pub fn sync(&self, w: &mut RolloutWrite) {
        set_status(w, &self.status, &self.data);
    }
}

fn set_status(w: &mut RolloutWrite, s: &RolloutStatus, d: &RolloutData) {
    w.state = s.state;
    w.state_data = serde_json::to_string(d).unwrap_or_else(|_| "{}".to_owned());
    w.soak_started_at = s.soak_started_at;
    w.soak_ends_at = s.soak_ends_at;
    w.finished_at = s.finished_at;
}

pub fn write_for(row: RolloutRowWrite, s: &RolloutStatus, d: &RolloutData) -> RolloutWrite {
    let mut w = RolloutWrite {
        row,
        state: s.state,
        state_data: String::new(),
        strategy: None,
        soak_started_at: None,
        soak_ends_at: None,
        finished_at: None,
        reason: None,
        new_targets: Vec::new(),
        targets: Vec::new(),
        desired: Vec::new(),
        release_status: None,
        events: Vec::new(),
    };
    set_status(&mut w, s, d);
    w
}

/// A plain audit event about this rollout (subject and id filled in by the store).
pub fn event(
    actor: &str,
    action: &str,
    workspace: Option<&str>,
    detail: serde_json::Value,
) -> NewEvent {
    NewEvent {
        actor: actor.to_owned(),
        subject: String::new(),
        action: action.to_owned(),
        detail,
        rollout_id: None,
        workspace: workspace.map(str::to_owned),
    }
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
