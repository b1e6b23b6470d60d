//! Which snapshots retention deletes, and which ones it must keep whatever `keep_last` and
//! `max_age` say: pure, so every rule is unit-tested.
//!
//! Two rules decide, in this order:
//!
//! 1. **Needed**: a snapshot an unfinished journal row took or is to restore, or whose
//!    update a pending rollback with `restore_data` names, is never touched.
//! 2. **Protected** ([`protection`]): the last good copy is kept until an operator
//!    releases it (`released_at` set). Protected are the complete snapshots of a
//!    quarantined workspace, and the newest complete snapshot of each volume of a
//!    workspace whose last finished update did not succeed (`failed`, `rolled_back`,
//!    `quarantined`).
//!
//! Everything else follows `keep_last` (per workspace and volume, counting only snapshots
//! that are neither needed nor protected) and `max_age`; leftovers of interrupted writes
//! (`writing`, `failed`) go at once. Only `complete` snapshots can be protected: a
//! half-written or failed one holds nothing anyone could restore.

use chrono::{DateTime, Duration, Utc};

use crate::domain::{SnapshotId, SnapshotState, UpdatePhase};
use crate::store::{ProtectedReason, SnapshotFacts, SnapshotRow};

/// Why retention must keep `row` until an operator releases it, if it must.
pub fn protection(row: &SnapshotRow, facts: &SnapshotFacts) -> Option<ProtectedReason> {
    if row.released_at.is_some() || row.state != SnapshotState::Complete {
        return None;
    }
    if facts.workspace_quarantined {
        return Some(ProtectedReason::WorkspaceQuarantined);
    }
    match facts.last_finished {
        Some(
            phase @ (UpdatePhase::Failed | UpdatePhase::RolledBack | UpdatePhase::Quarantined),
        ) if facts.newest_of_volume => Some(ProtectedReason::LastUpdateUnsuccessful(phase)),
        _ => None,
    }
}

impl SnapshotFacts {
    /// [`protection`] of `row` under these facts: how code outside the snapshot module
    /// (the API) asks the same rule retention applies.
    pub fn protection(&self, row: &SnapshotRow) -> Option<ProtectedReason> {
        protection(row, self)
    }
}

/// `live` is every non-deleted snapshot, newest first per (workspace, volume), with its
/// facts (`Store::live_snapshots`). Deleted: complete snapshots beyond the newest
/// `keep_last` of their volume or older than `max_age`, and leftovers of interrupted
/// writes. Never one that is needed or protected (see the module documentation).
pub fn retention_victims(
    live: &[(SnapshotRow, SnapshotFacts)],
    keep_last: usize,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Vec<SnapshotId> {
    let mut victims = Vec::new();
    let mut kept: std::collections::HashMap<(i64, &str), usize> = Default::default();
    for (s, facts) in live {
        if facts.needed || protection(s, facts).is_some() {
            continue;
        }
        if s.state != SnapshotState::Complete {
            victims.push(s.id.clone());
            continue;
        }
        let n = kept.entry((s.workspace_id, s.volume.as_str())).or_default();
        if *n >= keep_last || now - s.created_at > max_age {
            victims.push(s.id.clone());
        } else {
            *n += 1;
        }
    }
    victims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, vol: &str, state: &str, age_h: i64, now: DateTime<Utc>) -> SnapshotRow {
        SnapshotRow {
            id: SnapshotId::parse(id).unwrap(),
            workspace_id: 1,
            update_id: Some(1),
            volume: vol.into(),
            path: String::new(),
            size_bytes: 0,
            sha256: None,
            state: SnapshotState::parse(state).unwrap(),
            created_at: now - Duration::hours(age_h),
            mount_path: None,
            method: None,
            manifest_sha256: None,
            entries: None,
            released_at: None,
        }
    }

    /// Facts of an ordinary snapshot: nothing needs it, the last update succeeded.
    fn plain() -> SnapshotFacts {
        SnapshotFacts {
            last_finished: Some(UpdatePhase::Succeeded),
            ..SnapshotFacts::default()
        }
    }

    fn needed() -> SnapshotFacts {
        SnapshotFacts {
            needed: true,
            ..plain()
        }
    }

    fn quarantined() -> SnapshotFacts {
        SnapshotFacts {
            workspace_quarantined: true,
            last_finished: Some(UpdatePhase::Quarantined),
            ..SnapshotFacts::default()
        }
    }

    fn after(phase: UpdatePhase, newest: bool) -> SnapshotFacts {
        SnapshotFacts {
            last_finished: Some(phase),
            newest_of_volume: newest,
            ..SnapshotFacts::default()
        }
    }

    fn names(v: &[SnapshotId]) -> Vec<&str> {
        v.iter().map(SnapshotId::as_str).collect()
    }

    #[test]
    fn keeps_newest_per_volume_and_drops_old_and_partial() {
        let now = Utc::now();
        let live = vec![
            (row("a1", "a", "complete", 1, now), plain()),
            (row("a2", "a", "complete", 2, now), plain()),
            (row("a3", "a", "complete", 3, now), plain()),
            (row("b1", "b", "complete", 1, now), plain()),
            (row("b2", "b", "complete", 500, now), plain()),
            (row("w", "b", "writing", 0, now), plain()),
        ];
        let v = retention_victims(&live, 2, Duration::hours(24), now);
        assert_eq!(names(&v), ["a3", "b2", "w"]);
    }

    #[test]
    fn never_deletes_what_an_open_update_needs() {
        let now = Utc::now();
        let live = vec![
            (row("a1", "a", "complete", 1, now), plain()),
            (row("a2", "a", "complete", 900, now), needed()),
            (row("w", "a", "writing", 0, now), needed()),
        ];
        assert!(retention_victims(&live, 1, Duration::hours(1), now).is_empty());
    }

    #[test]
    fn a_quarantined_workspace_keeps_every_complete_snapshot() {
        let now = Utc::now();
        let live = vec![
            (row("a1", "a", "complete", 1, now), quarantined()),
            (row("a2", "a", "complete", 900, now), quarantined()),
            (row("a3", "a", "complete", 2000, now), quarantined()),
            (row("f", "a", "failed", 3, now), quarantined()),
        ];
        // keep_last 0 and everything past max_age: only the failed leftover goes.
        let v = retention_victims(&live, 0, Duration::hours(1), now);
        assert_eq!(names(&v), ["f"]);
        assert_eq!(
            protection(&live[1].0, &live[1].1),
            Some(ProtectedReason::WorkspaceQuarantined)
        );
        assert_eq!(
            ProtectedReason::WorkspaceQuarantined.to_string(),
            "workspace quarantined"
        );
        assert_eq!(protection(&live[3].0, &live[3].1), None);
    }

    #[test]
    fn a_failed_last_update_keeps_the_newest_complete_copy_per_volume() {
        let now = Utc::now();
        for phase in [
            UpdatePhase::Failed,
            UpdatePhase::RolledBack,
            UpdatePhase::Quarantined,
        ] {
            let live = vec![
                (row("a1", "a", "complete", 900, now), after(phase, true)),
                (row("a2", "a", "complete", 901, now), after(phase, false)),
                (row("b1", "b", "complete", 950, now), after(phase, true)),
                (row("b2", "b", "complete", 951, now), after(phase, false)),
            ];
            let v = retention_victims(&live, 0, Duration::hours(1), now);
            assert_eq!(names(&v), ["a2", "b2"], "{phase:?}");
            assert_eq!(
                protection(&live[0].0, &live[0].1),
                Some(ProtectedReason::LastUpdateUnsuccessful(phase))
            );
        }
        // The same snapshots after a successful update are ordinary.
        let live = vec![(
            row("a1", "a", "complete", 900, now),
            after(UpdatePhase::Succeeded, true),
        )];
        assert_eq!(
            names(&retention_victims(&live, 0, Duration::hours(1), now)),
            ["a1"]
        );
        // No finished update at all: nothing to protect.
        let none = SnapshotFacts {
            newest_of_volume: true,
            ..SnapshotFacts::default()
        };
        assert_eq!(protection(&live[0].0, &none), None);
    }

    #[test]
    fn a_release_lifts_protection_and_the_usual_limits_apply_again() {
        let now = Utc::now();
        let mut released = row("a1", "a", "complete", 900, now);
        released.released_at = Some(now - Duration::hours(1));
        let live = [
            (released.clone(), after(UpdatePhase::RolledBack, true)),
            (row("q1", "q", "complete", 900, now), quarantined()),
        ];
        assert_eq!(protection(&live[0].0, &live[0].1), None);
        // keep_last 1 keeps the released copy while it is young enough ...
        assert!(retention_victims(&live[..1], 1, Duration::days(365), now).is_empty());
        // ... and max_age deletes it once it is not.
        assert_eq!(
            names(&retention_victims(&live[..1], 1, Duration::hours(1), now)),
            ["a1"]
        );
        // A released snapshot of a quarantined workspace is not protected either.
        let mut q = live[1].0.clone();
        q.released_at = Some(now);
        assert_eq!(protection(&q, &quarantined()), None);
    }

    #[test]
    fn protected_snapshots_do_not_count_toward_keep_last() {
        let now = Utc::now();
        // The newest copy is protected (the last update was rolled back); keep_last 1 then
        // keeps one more unprotected copy, and max_age still removes the old ones.
        let live = vec![
            (
                row("a1", "a", "complete", 1, now),
                after(UpdatePhase::RolledBack, true),
            ),
            (
                row("a2", "a", "complete", 2, now),
                after(UpdatePhase::RolledBack, false),
            ),
            (
                row("a3", "a", "complete", 3, now),
                after(UpdatePhase::RolledBack, false),
            ),
            (
                row("a4", "a", "complete", 900, now),
                after(UpdatePhase::RolledBack, false),
            ),
        ];
        let v = retention_victims(&live, 1, Duration::hours(24), now);
        assert_eq!(names(&v), ["a3", "a4"]);
        let v = retention_victims(&live, 5, Duration::hours(24), now);
        assert_eq!(names(&v), ["a4"]);
    }

    #[test]
    fn facts_answer_with_the_same_rule() {
        let now = Utc::now();
        let r = row("a1", "a", "complete", 1, now);
        let f = after(UpdatePhase::Failed, true);
        assert_eq!(f.protection(&r), protection(&r, &f));
        assert!(f.protection(&r).is_some());
    }
}
