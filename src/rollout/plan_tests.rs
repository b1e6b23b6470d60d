use chrono::TimeZone;

use super::*;
use crate::config::{RolloutSettings, StrategyKind};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}
fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}
fn strategy(batch: &str, max_parallel: u32) -> Strategy {
    let mut s = Strategy::for_image(&RolloutSettings::default(), "x");
    s.batch = batch.to_owned();
    s.max_parallel = max_parallel;
    s.pause_between_waves_ms = 30_000;
    s.max_failures = 1;
    s.max_failure_ratio = 0.5;
    s
}
fn target(id: i64, tier: Tier, wave: i64) -> TargetView {
    TargetView {
        workspace_id: id,
        name: format!("w{id:03}"),
        tier,
        wave,
        status: TargetStatus::Pending,
        attempts: 0,
        to_digest: d(2),
        seen_update_id: None,
        updated_at: t0(),
        latest_update: None,
        actual_digest: Some(d(1)),
        health: Health::Healthy,
        ws_state: WorkspaceState::Running,
        outside_window: false,
        smoke_failure: None,
        stand_in: false,
    }
}
fn status(state: RolloutState) -> RolloutStatus {
    RolloutStatus {
        state,
        ..RolloutStatus::pending()
    }
}
fn starts(p: &Plan) -> Vec<i64> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            TargetAction::Start { workspace_id } => Some(*workspace_id),
            _ => None,
        })
        .collect()
}
fn updated(t: &mut TargetView, at: DateTime<Utc>) {
    t.status = TargetStatus::Updated;
    t.actual_digest = Some(d(2));
    t.updated_at = at;
}

#[test]
fn a_wave_starts_at_most_max_parallel_and_only_its_own_members() {
    // 6 production targets, waves of 3, 2 at once.
    let ts: Vec<_> = (0..6).map(|i| target(i, Tier::Production, i / 3)).collect();
    let p = plan(
        &status(RolloutState::Production),
        &strategy("3", 2),
        &ts,
        t0(),
        false,
    );
    assert_eq!(starts(&p), vec![0, 1]);
    assert_eq!(p.event, None);
}

#[test]
fn the_next_wave_waits_for_the_previous_one_healthy_and_the_pause() {
    let s = strategy("2", 4);
    let mut ts: Vec<_> = (0..4).map(|i| target(i, Tier::Production, i / 2)).collect();
    updated(&mut ts[0], t0());
    ts[1].status = TargetStatus::Updating;
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert!(starts(&p).is_empty(), "wave 0 still running");
    updated(&mut ts[1], t0());
    ts[1].health = Health::Unknown;
    let later = t0() + Duration::minutes(5);
    assert!(
        starts(&plan(
            &status(RolloutState::Production),
            &s,
            &ts,
            later,
            false
        ))
        .is_empty()
    );
    ts[1].health = Health::Healthy;
    let early = t0() + Duration::seconds(10);
    assert!(
        starts(&plan(
            &status(RolloutState::Production),
            &s,
            &ts,
            early,
            false
        ))
        .is_empty()
    );
    let p = plan(
        &status(RolloutState::Production),
        &s,
        &ts,
        t0() + Duration::seconds(30),
        false,
    );
    assert_eq!(starts(&p), vec![2, 3]);
}

#[test]
fn outcomes_retry_then_fail_and_past_the_threshold_abort() {
    let mut s = strategy("1", 1);
    s.retries = 1;
    let mut ts = vec![target(0, Tier::Canary, 0)];
    ts[0].status = TargetStatus::Updating;
    ts[0].attempts = 1;
    ts[0].latest_update = Some((7, UpdatePhase::RolledBack));
    let p = plan(&status(RolloutState::Canary), &s, &ts, t0(), false);
    assert_eq!(
        p.actions,
        vec![TargetAction::Retry {
            workspace_id: 0,
            update_id: 7
        }]
    );
    assert_eq!(p.event, None);
    // The retried attempt fails too: out of retries, the one canary failed → abort, block.
    ts[0].attempts = 2;
    ts[0].seen_update_id = Some(7);
    ts[0].latest_update = Some((9, UpdatePhase::RolledBack));
    let p = plan(&status(RolloutState::Canary), &s, &ts, t0(), false);
    assert!(matches!(
        p.actions[0],
        TargetAction::Failed {
            status: TargetStatus::RolledBack,
            ..
        }
    ));
    assert_eq!(p.event.as_ref().map(|e| e.0.clone()), Some(Event::Abort));
    assert!(p.block_release);
    // An old row already accounted for is not an outcome.
    ts[0].seen_update_id = Some(9);
    assert!(
        plan(&status(RolloutState::Canary), &s, &ts, t0(), false)
            .actions
            .is_empty()
    );
}

#[test]
fn production_failures_within_tolerance_continue_and_past_it_abort() {
    let mut s = strategy("10", 10);
    s.max_failures = 1;
    s.max_failure_ratio = 1.0;
    let mut ts: Vec<_> = (0..4).map(|i| target(i, Tier::Production, 0)).collect();
    ts[0].status = TargetStatus::Failed;
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert_eq!(p.event, None);
    assert_eq!(starts(&p), vec![1, 2, 3]);
    ts[1].status = TargetStatus::Failed;
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert_eq!(p.event.map(|e| e.0), Some(Event::Abort));
    assert!(
        !p.block_release,
        "production failures do not block the release"
    );
    // `immediate` skips failures and finishes.
    s.kind = StrategyKind::Immediate;
    for t in &mut ts[2..] {
        updated(t, t0());
    }
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert_eq!(p.event.map(|e| e.0), Some(Event::ProductionConverged));
}

#[test]
fn canaries_converge_into_the_soak_and_unhealthy_canaries_fail_it() {
    let s = strategy("25%", 4);
    let mut ts = vec![target(0, Tier::Canary, 0), target(1, Tier::Production, 0)];
    updated(&mut ts[0], t0());
    let p = plan(&status(RolloutState::Canary), &s, &ts, t0(), false);
    assert!(matches!(
        p.event,
        Some((Event::CanaryConverged { soak_ms: 600_000 }, _))
    ));
    assert!(
        starts(&p).is_empty(),
        "production is not touched by the canary tier"
    );
    // During the soak a canary turning unhealthy fails the rollout.
    let soaking = RolloutStatus {
        state: RolloutState::Soaking,
        soak_started_at: Some(t0()),
        soak_ends_at: Some(t0() + Duration::minutes(10)),
        ..RolloutStatus::pending()
    };
    ts[0].health = Health::Unhealthy;
    let p = plan(&soaking, &s, &ts, t0(), false);
    assert_eq!(p.event.map(|e| e.0), Some(Event::Abort));
    assert!(p.block_release);
    // A failed smoke check counts the same.
    ts[0].health = Health::Healthy;
    ts[0].smoke_failure = Some("GET /version: 500".to_owned());
    assert_eq!(
        plan(&soaking, &s, &ts, t0(), false).event.map(|e| e.0),
        Some(Event::Abort)
    );
}

#[test]
fn the_soak_promotes_by_itself_only_with_auto_promote_and_after_its_time() {
    let mut s = strategy("1", 1);
    let soaking = RolloutStatus {
        state: RolloutState::Soaking,
        soak_started_at: Some(t0()),
        soak_ends_at: Some(t0() + Duration::minutes(10)),
        ..RolloutStatus::pending()
    };
    let mut ts = vec![target(0, Tier::Canary, 0)];
    updated(&mut ts[0], t0());
    let later = t0() + Duration::minutes(10);
    assert_eq!(plan(&soaking, &s, &ts, later, false).event, None);
    s.auto_promote = true;
    assert_eq!(
        plan(&soaking, &s, &ts, t0() + Duration::minutes(9), false).event,
        None
    );
    assert_eq!(
        plan(&soaking, &s, &ts, later, false).event.map(|e| e.0),
        Some(Event::Promote)
    );
}

#[test]
fn paused_and_skipped_and_window_and_already_there() {
    let s = strategy("10", 10);
    let mut ts: Vec<_> = (0..4).map(|i| target(i, Tier::Production, 0)).collect();
    ts[0].status = TargetStatus::Skipped;
    ts[1].outside_window = true;
    ts[2].actual_digest = Some(d(2));
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert_eq!(starts(&p), vec![3]);
    assert!(
        p.actions
            .contains(&TargetAction::AlreadyThere { workspace_id: 2 })
    );
    let paused = RolloutStatus {
        state: RolloutState::Paused,
        paused_from: Some(RolloutState::Production),
        ..RolloutStatus::pending()
    };
    assert!(plan(&paused, &s, &ts, t0(), false).actions.is_empty());
    // Fleet mode `paused` holds new starts the same way.
    assert!(
        starts(&plan(
            &status(RolloutState::Production),
            &s,
            &ts,
            t0(),
            true
        ))
        .is_empty()
    );
    // Outcomes still arrive while paused, but nothing is retried or started.
    ts[3].status = TargetStatus::Updating;
    ts[3].latest_update = Some((1, UpdatePhase::Succeeded));
    assert_eq!(
        plan(&paused, &s, &ts, t0(), false).actions,
        vec![TargetAction::Succeeded {
            workspace_id: 3,
            update_id: 1
        }]
    );
}

#[test]
fn wave_lengths_per_strategy() {
    let mut s = strategy("25%", 4);
    assert_eq!(s.wave_len(10), 3);
    s.kind = StrategyKind::OneAtATime;
    assert_eq!((s.wave_len(10), s.parallel()), (1, 1));
    s.kind = StrategyKind::Immediate;
    assert_eq!(s.wave_len(10), 10);
    assert!(!s.aborts_on_failure());
}
