//! Which workspaces a tier of a rollout covers, and in which wave. Pure.

use std::collections::{BTreeMap, HashMap};

use super::strategy::Strategy;
use crate::domain::{Digest, NewTarget, TargetStatus, Tier, UpdateMode};
use crate::store::CandidateRow;

/// Targets for `tiers` among `candidates` (sorted by name), skipping workspaces that are
/// already targets (`existing`). Pinned workspaces — and, in an automatic rollout, manual
/// ones — are listed as `skipped`. Waves are numbered per call from `first_wave`, cut
/// from the live workspaces taken round-robin across their hosts (hosts by name, each
/// host's workspaces by name), so consecutive waves mix hosts instead of emptying one
/// host first. On one host that is plain name order.
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
    let live: Vec<&CandidateRow> = chosen.iter().copied().filter(|c| !skip(c)).collect();
    let wave_len = i64::try_from(strategy.wave_len(live.len()))
        .unwrap_or(i64::MAX)
        .max(1);
    let position = spread_across_hosts(&live);
    chosen
        .into_iter()
        .map(|c| {
            let skipped = skip(c);
            let wave = match position.get(&c.workspace_id) {
                Some(n) if !skipped => first_wave + n / wave_len,
                _ => first_wave,
            };
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

/// Each live workspace's place in the round-robin order across hosts.
fn spread_across_hosts(live: &[&CandidateRow]) -> HashMap<i64, i64> {
    let mut by_host: BTreeMap<&crate::domain::HostName, Vec<&CandidateRow>> = BTreeMap::new();
    for c in live {
        by_host.entry(&c.host).or_default().push(c);
    }
    for list in by_host.values_mut() {
        list.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.workspace_id.cmp(&b.workspace_id))
        });
    }
    let mut out = HashMap::new();
    let mut n = 0i64;
    let rounds = by_host.values().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        for list in by_host.values() {
            if let Some(c) = list.get(round) {
                out.insert(c.workspace_id, n);
                n += 1;
            }
        }
    }
    out
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
            host: crate::domain::HostName::local(),
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

    #[test]
    fn waves_take_hosts_in_turn() {
        let mut s = Strategy::for_image(&RolloutSettings::default(), "x");
        s.batch = "2".to_owned();
        let host = |h: &str| crate::domain::HostName::parse(h).unwrap();
        // Names sort one host's workspaces together; waves must still mix hosts.
        let hosts = ["a", "a", "a", "b", "b", "c"];
        let cs: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| CandidateRow {
                host: host(h),
                ..cand(i64::try_from(i).unwrap(), Tier::Production)
            })
            .collect();
        let t = build_targets(&cs, &[Tier::Production], &d(2), &s, false, &[], 0);
        let wave_of = |id: i64| t.iter().find(|t| t.workspace_id == id).unwrap().wave;
        // Round-robin a, b, c, a, b, a: w0 w3 | w5 w1 | w4 w2.
        assert_eq!(
            (0..6).map(wave_of).collect::<Vec<_>>(),
            [0, 1, 2, 0, 2, 1],
            "waves: {t:?}"
        );
        for w in 0..2 {
            let on: Vec<_> = (0..6)
                .filter(|&i| wave_of(i) == w)
                .map(|i| hosts[usize::try_from(i).unwrap()])
                .collect();
            assert_ne!(on[0], on[1], "wave {w} mixes hosts: {on:?}");
        }
        // The output keeps the candidates' order.
        let ids: Vec<_> = t.iter().map(|t| t.workspace_id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    }
}
