//! The planner's views of a pass's rows: targets read in full, and stand-ins for the
//! settled ones counted by the store. Pure.

use chrono::{DateTime, Utc};

use super::super::hosts::HostStates;
use super::super::plan::TargetView;
use crate::domain::{Digest, Health, TargetStatus, WorkspaceState};
use crate::store::{SettledTargets, TargetRow};

/// Stand-ins for settled targets (see `Store::rollout_targets_for_pass`): no action is
/// planned for them; they count in the failure thresholds and wave progress exactly as
/// the rows they stand for (same tier, wave and status, healthy when `updated`, newest
/// `updated_at` of their group, on their group's host).
pub fn settled_views(
    groups: &[SettledTargets],
    digest: &Digest,
    hosts: &HostStates,
) -> Vec<TargetView> {
    let mut out = Vec::new();
    for g in groups {
        let host = hosts.of(&g.host);
        let mut status = g.status;
        if status == TargetStatus::Pending && g.held {
            status = TargetStatus::Skipped;
        }
        let n = usize::try_from(g.count).unwrap_or(0);
        out.extend(std::iter::repeat_n(
            TargetView {
                workspace_id: 0,
                name: String::new(),
                tier: g.tier,
                wave: g.wave,
                status,
                attempts: 0,
                to_digest: digest.clone(),
                seen_update_id: None,
                updated_at: g.last_updated_at,
                latest_update: None,
                actual_digest: None,
                health: Health::Healthy,
                ws_state: WorkspaceState::Running,
                outside_window: false,
                smoke_failure: None,
                stand_in: true,
                host: g.host.clone(),
                host_state: host.state,
                host_down_since: host.down_since,
            },
            n,
        ));
    }
    out
}

/// The planner's view of one target read in full.
pub fn view(
    t: &TargetRow,
    automatic: bool,
    now: DateTime<Utc>,
    smoke_failure: Option<String>,
    hosts: &HostStates,
) -> TargetView {
    let host = hosts.of(&t.host);
    let mut status = t.status;
    // A workspace pinned after the rollout started is held where it is.
    if status == TargetStatus::Pending
        && t.pinned_digest.as_ref().is_some_and(|p| *p != t.to_digest)
    {
        status = TargetStatus::Skipped;
    }
    TargetView {
        workspace_id: t.workspace_id,
        name: t.name.clone(),
        tier: t.tier,
        wave: t.wave,
        status,
        attempts: u32::try_from(t.attempts).unwrap_or(u32::MAX),
        to_digest: t.to_digest.clone(),
        seen_update_id: t.update_id,
        updated_at: t.updated_at,
        latest_update: t.latest_update,
        actual_digest: t.actual_digest.clone(),
        health: t.health,
        ws_state: t.ws_state,
        outside_window: automatic && t.maintenance_window.is_some_and(|w| !w.contains(now)),
        smoke_failure,
        stand_in: false,
        host: t.host.clone(),
        host_state: host.state,
        host_down_since: host.down_since,
    }
}
