//! Which snapshots retention deletes: pure, so every rule is unit-tested.

use chrono::{DateTime, Duration, Utc};

use crate::domain::SnapshotId;
use crate::store::SnapshotRow;

/// `live` is every non-deleted snapshot, newest first per (workspace, volume), paired with
/// whether an unfinished update still needs it. Deleted: complete snapshots beyond the
/// newest `keep_last` of their volume or older than `max_age`, and leftovers of
/// interrupted writes. Never one an unfinished update needs.
pub fn retention_victims(
    live: &[(SnapshotRow, bool)],
    keep_last: usize,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Vec<SnapshotId> {
    let mut victims = Vec::new();
    let mut kept: std::collections::HashMap<(i64, &str), usize> = Default::default();
    for (s, needed) in live {
        if *needed {
            continue;
        }
        if s.state != "complete" {
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
            state: state.into(),
            created_at: now - Duration::hours(age_h),
            mount_path: None,
            method: None,
            manifest_sha256: None,
            entries: None,
            released_at: None,
        }
    }

    #[test]
    fn keeps_newest_per_volume_and_drops_old_and_partial() {
        let now = Utc::now();
        let live = vec![
            (row("a1", "a", "complete", 1, now), false),
            (row("a2", "a", "complete", 2, now), false),
            (row("a3", "a", "complete", 3, now), false),
            (row("b1", "b", "complete", 1, now), false),
            (row("b2", "b", "complete", 500, now), false),
            (row("w", "b", "writing", 0, now), false),
        ];
        let v = retention_victims(&live, 2, Duration::hours(24), now);
        let names: Vec<_> = v.iter().map(|i| i.as_str()).collect();
        assert_eq!(names, ["a3", "b2", "w"]);
    }

    #[test]
    fn never_deletes_what_an_open_update_needs() {
        let now = Utc::now();
        let live = vec![
            (row("a1", "a", "complete", 1, now), false),
            (row("a2", "a", "complete", 900, now), true),
            (row("w", "a", "writing", 0, now), true),
        ];
        assert!(retention_victims(&live, 1, Duration::hours(1), now).is_empty());
    }
}
