//! The pass's reduced read (unsettled targets in full, settled ones as groups, only the
//! start window of the current wave) plans exactly what planning on every target does,
//! over many generated rollouts in real SQLite, for operator and automatic rollouts.

use std::time::Duration;

use chrono::TimeZone;

use super::*;
use crate::config::{RolloutSettings, StrategyKind};
use crate::domain::Digest;
use crate::rollout::machine::RolloutStatus;
use crate::rollout::strategy::Strategy;
use crate::store::Store;

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

fn d(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// One generated rollout: a current wave `c`; earlier waves mostly done, wave `c` mixed,
/// later waves mostly pending; every field sometimes off the usual path.
async fn generate(store: &Store, rng: &mut Rng, seed: u64) -> i64 {
    let pool = store.raw_pool();
    let rel: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, updated_at) VALUES ($1, $2, 0, 0) RETURNING id",
    )
    .bind(format!("img{seed}"))
    .bind(d(2))
    .fetch_one(pool)
    .await
    .unwrap();
    let rollout: i64 = sqlx::query_scalar(
        "INSERT INTO rollouts (release_id, state, started_by, created_at, updated_at) \
         VALUES ($1, 'production', 'op', 0, 0) RETURNING id",
    )
    .bind(rel)
    .fetch_one(pool)
    .await
    .unwrap();
    let n = 5 + rng.below(60);
    let current = i64::try_from(rng.below(4)).unwrap();
    for i in 0..n {
        let noisy = rng.below(5) == 0;
        let tier = if rng.below(6) == 0 {
            "canary"
        } else {
            "production"
        };
        let wave = i64::try_from(rng.below(5)).unwrap();
        let status = if noisy {
            *rng.pick(&[
                "pending",
                "updating",
                "updated",
                "failed",
                "rolled_back",
                "skipped",
            ])
        } else if wave < current {
            *rng.pick(&["updated", "updated", "updated", "failed", "skipped"])
        } else if wave == current {
            *rng.pick(&["pending", "updating", "updated"])
        } else {
            "pending"
        };
        let good = !noisy || rng.below(2) == 0;
        let actual = match status {
            "updated" if good => Some(d(2)),
            "pending" if rng.below(6) == 0 => Some(d(2)),
            _ => rng.pick(&[Some(d(1)), Some(d(2)), None]).clone(),
        };
        let health = if good {
            "healthy"
        } else {
            *rng.pick(&["healthy", "unhealthy", "unknown"])
        };
        let state = if good {
            "running"
        } else {
            *rng.pick(&[
                "running",
                "updating",
                "rolling_back",
                "quarantined",
                "stopped",
                "missing",
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
        let ws: i64 = sqlx::query_scalar(
            "INSERT INTO workspaces (name, image, update_tier, pinned_digest, desired_digest, \
             actual_digest, state, health, maintenance_window, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, 0, 0) RETURNING id",
        )
        .bind(format!("s{seed}-w{:02}", rng.below(100)) + &format!("-{i}"))
        .bind(format!("img{seed}"))
        .bind(tier)
        .bind(&pinned)
        .bind(&actual)
        .bind(state)
        .bind(health)
        .bind(window)
        .fetch_one(pool)
        .await
        .unwrap();
        let mut last = None;
        for _ in 0..rng.below(3) {
            let phase = *rng.pick(&[
                "succeeded",
                "rolled_back",
                "failed",
                "pulling",
                "health_checking",
            ]);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO workspace_updates (workspace_id, rollout_id, to_digest, phase, \
                 started_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0) RETURNING id",
            )
            .bind(ws)
            .bind(rollout)
            .bind(d(2))
            .bind(phase)
            .fetch_one(pool)
            .await
            .unwrap();
            last = Some(id);
        }
        let seen = if rng.below(2) == 0 { last } else { None };
        sqlx::query(
            "INSERT INTO rollout_targets (rollout_id, workspace_id, tier, wave, status, \
             to_digest, attempts, update_id, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(rollout)
        .bind(ws)
        .bind(tier)
        .bind(if rng.below(20) == 0 { None } else { Some(wave) })
        .bind(status)
        .bind(d(2))
        .bind(i64::try_from(rng.below(3)).unwrap())
        .bind(seen)
        .bind(i64::try_from(rng.below(100_000)).unwrap())
        .execute(pool)
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
    let store = Store::open("sqlite::memory:", 1, Duration::from_secs(5))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let digest = Digest::parse(&d(2)).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut compared = 0;
    let mut acting = 0;
    let (mut read, mut total) = (0usize, 0usize);
    for seed in 0..60 {
        let id = generate(&store, &mut rng, seed).await;
        let all = store.rollout_targets(id).await.unwrap();
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
                let full: Vec<TargetView> =
                    all.iter().map(|t| view(t, automatic, now, None)).collect();
                let mut reduced: Vec<TargetView> =
                    rows.iter().map(|t| view(t, automatic, now, None)).collect();
                reduced.extend(settled_views(&settled, &digest));
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
