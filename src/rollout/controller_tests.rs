//! The pass's reduced read (unsettled targets in full, settled ones as groups, only the
//! start window of the current wave) plans exactly what planning on every target does,
//! over many generated rollouts in real SQLite, for operator and automatic rollouts.

use chrono::TimeZone;

use chrono::{DateTime, Utc};

use crate::config::{RolloutSettings, StrategyKind};
use crate::domain::{
    Change, Digest, Health, RolloutChange, RolloutRowKey, RolloutState, TargetStatus, Tier,
    UpdatePhase, WorkspaceState,
};
use crate::rollout::decide::{settled_views, view};
use crate::rollout::machine::RolloutStatus;
use crate::rollout::plan::{TargetView, plan};
use crate::rollout::strategy::Strategy;
use crate::store::Store;
use crate::store::fixtures::{SeedTarget, SeedWorkspace};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
}

fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// One generated rollout: a current wave `c`; earlier waves mostly done, wave `c` mixed,
/// later waves mostly pending; every field sometimes off the usual path.
async fn generate(store: &Store, rng: &mut Rng, seed: u64, hosts: &[&str]) -> i64 {
    use TargetStatus as S;
    let image = format!("img{seed}");
    let rel = store.seed_release(&image, &d(2)).await.unwrap();
    // The rollout row through the production write path.
    let rollout = store
        .apply_rollout_changes(
            &[Change::Rollout(RolloutChange {
                key: RolloutRowKey::New {
                    release_id: rel,
                    strategy: "{}".to_owned(),
                    started_by: "op".to_owned(),
                },
                state: RolloutState::Production,
                state_data: "{}".to_owned(),
                strategy: None,
                soak_started_at: None,
                soak_ends_at: None,
                finished_at: None,
                reason: None,
            })],
            t0(),
        )
        .await
        .unwrap();
    let n = 5 + rng.below(60);
    let current = i64::try_from(rng.below(4)).unwrap();
    for i in 0..n {
        let noisy = rng.below(5) == 0;
        let tier = if rng.below(6) == 0 {
            Tier::Canary
        } else {
            Tier::Production
        };
        let wave = i64::try_from(rng.below(5)).unwrap();
        let status = if noisy {
            *rng.pick(&[
                S::Pending,
                S::Updating,
                S::Updated,
                S::Failed,
                S::RolledBack,
                S::Skipped,
            ])
        } else if wave < current {
            *rng.pick(&[S::Updated, S::Updated, S::Updated, S::Failed, S::Skipped])
        } else if wave == current {
            *rng.pick(&[S::Pending, S::Updating, S::Updated])
        } else {
            S::Pending
        };
        let good = !noisy || rng.below(2) == 0;
        let actual = match status {
            S::Updated if good => Some(d(2)),
            S::Pending if rng.below(6) == 0 => Some(d(2)),
            _ => rng.pick(&[Some(d(1)), Some(d(2)), None]).clone(),
        };
        let health = if good {
            Health::Healthy
        } else {
            *rng.pick(&[Health::Healthy, Health::Unhealthy, Health::Unknown])
        };
        let state = if good {
            WorkspaceState::Running
        } else {
            *rng.pick(&[
                WorkspaceState::Running,
                WorkspaceState::Updating,
                WorkspaceState::RollingBack,
                WorkspaceState::Quarantined,
                WorkspaceState::Stopped,
                WorkspaceState::Missing,
            ])
        };
        let pinned = if rng.below(8) == 0 {
            rng.pick(&[Some(d(1)), Some(d(2))]).clone()
        } else {
            None
        };
        // Passes run at 00:00-00:02 UTC: the first window is open, the second closed.
        let window = match rng.below(6) {
            0 => Some("00:00-01:00"),
            1 => Some("02:00-03:00"),
            _ => None,
        };
        let name = format!("s{seed}-w{:02}", rng.below(100)) + &format!("-{i}");
        let host = *rng.pick(hosts);
        let ws = store
            .seed_workspace(&SeedWorkspace {
                name: &name,
                image: &image,
                tier,
                pinned: pinned.as_ref(),
                digest: actual.as_ref(),
                state,
                health,
                maintenance_window: window,
                host,
            })
            .await
            .unwrap();
        let mut last = None;
        for _ in 0..rng.below(3) {
            let phase = *rng.pick(&[
                UpdatePhase::Succeeded,
                UpdatePhase::RolledBack,
                UpdatePhase::Failed,
                UpdatePhase::Pulling,
                UpdatePhase::HealthChecking,
            ]);
            last = Some(store.seed_update(ws, rollout, &d(2), phase).await.unwrap());
        }
        let seen = if rng.below(2) == 0 { last } else { None };
        store
            .seed_target(&SeedTarget {
                rollout_id: rollout,
                workspace_id: ws,
                tier,
                wave: if rng.below(20) == 0 { None } else { Some(wave) },
                status,
                to_digest: d(2),
                attempts: i64::try_from(rng.below(3)).unwrap(),
                update_id: seen,
                updated_at_ms: i64::try_from(rng.below(100_000)).unwrap(),
            })
            .await
            .unwrap();
    }
    rollout
}

fn strategies() -> Vec<Strategy> {
    let base = Strategy::for_image(&RolloutSettings::default(), "x");
    let mut out = Vec::new();
    for (kind, max_parallel) in [
        (StrategyKind::Rolling, 1),
        (StrategyKind::Rolling, 3),
        (StrategyKind::Rolling, 8),
        (StrategyKind::OneAtATime, 3),
        (StrategyKind::Immediate, 3),
    ] {
        for (max_failures, ratio, pause) in [(1, 0.5, 30_000), (1000, 1.0, 0), (1000, 1.0, 60_000)]
        {
            let mut s = base.clone();
            s.kind = kind;
            s.max_parallel = max_parallel;
            s.retries = 1;
            s.max_failures = max_failures;
            s.max_failure_ratio = ratio;
            s.pause_between_waves_ms = pause;
            out.push(s);
        }
    }
    out
}

fn statuses() -> Vec<RolloutStatus> {
    let at = |state, paused_from| RolloutStatus {
        state,
        paused_from,
        soak_started_at: Some(t0()),
        soak_ends_at: Some(t0()),
        finished_at: None,
    };
    vec![
        at(RolloutState::Canary, None),
        at(RolloutState::Soaking, None),
        at(RolloutState::Production, None),
        at(RolloutState::Paused, Some(RolloutState::Production)),
        at(RolloutState::Aborted, None),
    ]
}

#[tokio::test]
async fn the_reduced_read_plans_exactly_like_the_full_one() {
    let db = crate::store::TestDb::new().await;
    let store = db.store(1).await;
    let digest = d(2);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compared = 0;
    let mut acting = 0;
    let (mut read, mut total) = (0usize, 0usize);
    for seed in 0..60 {
        let id = generate(&store, &mut rng, seed, &["local"]).await;
        let all = store.rollout_targets(id).await.unwrap();
        // No host registered, or the one host of a single-host daemon, registered and up.
        let hosts = if seed % 2 == 0 {
            crate::rollout::hosts::HostStates::default()
        } else {
            let local = crate::store::HostRow {
                name: crate::domain::HostName::local(),
                labels: Default::default(),
                capacity: None,
                schedule: crate::domain::HostSchedule::Active,
                has_token: false,
                agent_instance: None,
                agent_version: None,
                heartbeat_at: Some(t0() + chrono::Duration::seconds(130)),
                created_at: t0(),
            };
            let hs = crate::rollout::hosts::HostStates::from_rows(
                &[local],
                t0() + chrono::Duration::seconds(130),
                chrono::Duration::hours(1),
            );
            assert!(hs.registered() && hs.at_most_one_ready());
            hs
        };
        for s in strategies() {
            let later = s.aborts_on_failure();
            let (rows, settled) = store
                .rollout_targets_for_pass(id, later, s.start_window())
                .await
                .unwrap();
            let settled_n: i64 = settled.iter().map(|g| g.count).sum();
            assert_eq!(rows.len() + usize::try_from(settled_n).unwrap(), all.len());
            read += rows.len();
            total += all.len();
            let now =
                t0() + chrono::Duration::milliseconds(i64::try_from(rng.below(130_000)).unwrap());
            for automatic in [false, true] {
                let full: Vec<TargetView> = all
                    .iter()
                    .map(|t| view(t, automatic, now, None, &hosts))
                    .collect();
                let mut reduced: Vec<TargetView> = rows
                    .iter()
                    .map(|t| view(t, automatic, now, None, &hosts))
                    .collect();
                reduced.extend(settled_views(&settled, &digest, &hosts));
                for st in statuses() {
                    for hold in [false, true] {
                        let a = plan(&st, &s, &full, now, hold);
                        let b = plan(&st, &s, &reduced, now, hold);
                        assert_eq!(
                            a, b,
                            "seed {seed}, {st:?}, {s:?}, hold {hold}, automatic {automatic}"
                        );
                        compared += 1;
                        acting += usize::from(!a.actions.is_empty() || a.event.is_some());
                    }
                }
            }
        }
    }
    // The generated rollouts exercise real decisions, not only no-ops.
    assert!(acting > compared / 4, "{acting} of {compared} plans act");
    // ... and the reduced read leaves a good share of targets unread.
    assert!(
        read * 10 < total * 8,
        "read {read} of {total} targets in full"
    );
}

/// With hosts registered the controller reads every unfinished target in full (waiting
/// targets and per-host limits defeat the start window): planning on that read equals
/// planning on every target, hosts ready, down past the timeout and never seen alike.
#[tokio::test]
async fn with_hosts_the_pass_read_plans_exactly_like_the_full_one() {
    use crate::domain::{HostName, HostSchedule};
    use crate::rollout::hosts::HostStates;
    use crate::store::HostRow;
    let db = crate::store::TestDb::new().await;
    let store = db.store(1).await;
    let digest = d(2);
    let row = |name: &str, heartbeat_at| HostRow {
        name: HostName::parse(name).unwrap(),
        labels: Default::default(),
        capacity: None,
        schedule: HostSchedule::Active,
        has_token: true,
        agent_instance: None,
        agent_version: None,
        heartbeat_at,
        created_at: t0(),
    };
    // h1 ready, h2 down for an hour, h3 has no row (unseen).
    let rows = [
        row("h1", Some(t0() + chrono::Duration::minutes(2))),
        row("h2", Some(t0() - chrono::Duration::hours(1))),
    ];
    let mut rng = Rng(0x51_7CC1_B727_220A);
    let (mut compared, mut acting, mut skipping) = (0, 0, 0);
    for seed in 0..30 {
        let id = generate(&store, &mut rng, 1000 + seed, &["h1", "h1", "h2", "h3"]).await;
        let all = store.rollout_targets(id).await.unwrap();
        let (rows_read, settled) = store
            .rollout_targets_for_pass(id, false, None)
            .await
            .unwrap();
        let now = t0() + chrono::Duration::milliseconds(i64::try_from(rng.below(130_000)).unwrap());
        let hosts = HostStates::from_rows(&rows, now, chrono::Duration::seconds(30));
        assert!(hosts.registered());
        for mut s in strategies() {
            s.max_parallel_per_host = *rng.pick(&[1, 2, 5]);
            s.on_host_timeout = *rng.pick(&[
                crate::config::HostTimeoutPolicy::Wait,
                crate::config::HostTimeoutPolicy::Skip,
            ]);
            for automatic in [false, true] {
                let full: Vec<TargetView> = all
                    .iter()
                    .map(|t| view(t, automatic, now, None, &hosts))
                    .collect();
                let mut reduced: Vec<TargetView> = rows_read
                    .iter()
                    .map(|t| view(t, automatic, now, None, &hosts))
                    .collect();
                reduced.extend(settled_views(&settled, &digest, &hosts));
                for st in statuses() {
                    let a = plan(&st, &s, &full, now, false);
                    let b = plan(&st, &s, &reduced, now, false);
                    assert_eq!(a, b, "seed {seed}, {st:?}, {s:?}, automatic {automatic}");
                    compared += 1;
                    acting += usize::from(!a.actions.is_empty() || a.event.is_some());
                    skipping += usize::from(a.actions.iter().any(|x| {
                        matches!(x, crate::rollout::plan::TargetAction::SkipForHost { .. })
                    }));
                }
            }
        }
    }
    assert!(acting > compared / 4, "{acting} of {compared} plans act");
    assert!(skipping > 0, "no plan skipped for a host");
}
