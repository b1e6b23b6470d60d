//! Which workspaces a tier of a rollout covers, and in which wave. Pure.

use super::strategy::Strategy;
use crate::domain::{Digest, NewTarget, TargetStatus, Tier, UpdateMode};
use crate::store::CandidateRow;

/// Targets for `tiers` among `candidates` (sorted by name), skipping workspaces that are
/// already targets (`existing`). Pinned workspaces — and, in an automatic rollout, manual
/// ones — are listed as `skipped`. Waves are numbered per call from `first_wave`.
pub fn build_targets(
    candidates: &[CandidateRow],
    tiers: &[Tier],
    digest: &Digest,
    strategy: &Strategy,
    automatic: bool,
    existing: &[i64],
    first_wave: i64,
) -> Vec<NewTarget> {
    let chosen: Vec<&CandidateRow> = candidates
        .iter()
        .filter(|c| tiers.contains(&c.tier) && !existing.contains(&c.workspace_id))
        .collect();
    let skip = |c: &CandidateRow| {
        c.pinned_digest.as_ref().is_some_and(|p| p != digest)
            || (automatic && c.update_mode == UpdateMode::Manual)
    };
    let live = chosen.iter().filter(|c| !skip(c)).count();
    let wave_len = i64::try_from(strategy.wave_len(live))
        .unwrap_or(i64::MAX)
        .max(1);
    let mut n = 0i64;
    chosen
        .into_iter()
        .map(|c| {
            let skipped = skip(c);
            let wave = if skipped {
                first_wave
            } else {
                first_wave + n / wave_len
            };
            if !skipped {
                n += 1;
            }
            NewTarget {
                workspace_id: c.workspace_id,
                tier: c.tier,
                wave,
                status: if skipped {
                    TargetStatus::Skipped
                } else {
                    TargetStatus::Pending
                },
                from_digest: c.actual_digest.clone().or_else(|| c.desired_digest.clone()),
                to_digest: digest.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RolloutSettings;

    fn d(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }
    fn cand(id: i64, tier: Tier) -> CandidateRow {
        CandidateRow {
            workspace_id: id,
            name: format!("w{id}"),
            tier,
            update_mode: UpdateMode::Auto,
            pinned_digest: None,
            actual_digest: Some(d(1)),
            desired_digest: Some(d(1)),
        }
    }

    #[test]
    fn tiers_waves_pins_and_manual_workspaces() {
        let mut s = Strategy::for_image(&RolloutSettings::default(), "x");
        s.batch = "2".to_owned();
        let mut cs: Vec<_> = (0..6).map(|i| cand(i, Tier::Production)).collect();
        cs[0].tier = Tier::Canary;
        cs[1].pinned_digest = Some(d(1));
        cs[2].update_mode = UpdateMode::Manual;
        let t = build_targets(&cs, &[Tier::Production], &d(2), &s, false, &[], 0);
        let view: Vec<_> = t
            .iter()
            .map(|t| (t.workspace_id, t.wave, t.status.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (1, 0, "skipped"),
                (2, 0, "pending"),
                (3, 0, "pending"),
                (4, 1, "pending"),
                (5, 1, "pending")
            ]
        );
        assert_eq!(t[0].from_digest, Some(d(1)));
        // Automatic rollouts leave manual workspaces alone; existing targets are not repeated.
        let t = build_targets(
            &cs,
            &[Tier::Canary, Tier::Production],
            &d(2),
            &s,
            true,
            &[3],
            5,
        );
        let view: Vec<_> = t
            .iter()
            .map(|t| (t.workspace_id, t.wave, t.status.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (0, 5, "pending"),
                (1, 5, "skipped"),
                (2, 5, "skipped"),
                (4, 5, "pending"),
                (5, 6, "pending")
            ]
        );
    }
}
