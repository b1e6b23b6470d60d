use chrono::{Duration, TimeZone};

use super::*;
use crate::config::{RolloutSettings, StrategyKind};
use crate::rollout::analysis::{Gate, Verdict};

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
        host: HostName::local(),
        host_state: HostState::Ready,
        host_down_since: None,
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

// ---- Rollouts across hosts ----

fn on(mut t: TargetView, host: &str, state: HostState) -> TargetView {
    t.host = HostName::parse(host).unwrap();
    t.host_state = state;
    t
}
fn down_since(mut t: TargetView, since: DateTime<Utc>) -> TargetView {
    t.host_state = HostState::Down;
    t.host_down_since = Some(since);
    t
}
fn skips(p: &Plan) -> Vec<(i64, String)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            TargetAction::SkipForHost {
                workspace_id,
                reason,
            } => Some((*workspace_id, reason.clone())),
            _ => None,
        })
        .collect()
}
fn prod() -> RolloutStatus {
    status(RolloutState::Production)
}

#[test]
fn per_host_limit_caps_the_updates_in_flight_on_each_host() {
    let mut s = strategy("6", 4);
    s.max_parallel_per_host = 1;
    // One wave: w0..w2 on host a, w3..w5 on host b.
    let ts: Vec<_> = (0..6)
        .map(|i| {
            let h = if i < 3 { "a" } else { "b" };
            on(target(i, Tier::Production, 0), h, HostState::Ready)
        })
        .collect();
    assert_eq!(starts(&plan(&prod(), &s, &ts, t0(), false)), vec![0, 3]);
    // An update in flight on a: only b gets one.
    let mut busy = ts.clone();
    busy[1].status = TargetStatus::Updating;
    assert_eq!(starts(&plan(&prod(), &s, &busy, t0(), false)), vec![3]);
    // max_parallel still bounds the whole rollout.
    s.max_parallel_per_host = 3;
    s.max_parallel = 3;
    assert_eq!(starts(&plan(&prod(), &s, &ts, t0(), false)), vec![0, 1, 3]);
}

#[test]
fn a_host_with_two_or_more_targets_never_has_all_of_them_in_flight() {
    let mut s = strategy("5", 10);
    s.max_parallel_per_host = 5;
    // Host a: w0, w1 (cap 1); host b: w2, w3, w4 (cap 2).
    let ts: Vec<_> = (0..5)
        .map(|i| {
            let h = if i < 2 { "a" } else { "b" };
            on(target(i, Tier::Production, 0), h, HostState::Ready)
        })
        .collect();
    assert_eq!(starts(&plan(&prod(), &s, &ts, t0(), false)), vec![0, 2, 3]);
    // A host with one target may update it.
    let mut one = ts.clone();
    one.truncate(3);
    assert_eq!(starts(&plan(&prod(), &s, &one, t0(), false)), vec![0, 2]);
}

#[test]
fn on_a_single_host_max_parallel_alone_governs() {
    let mut s = strategy("4", 3);
    s.max_parallel_per_host = 1;
    let ts: Vec<_> = (0..4)
        .map(|i| on(target(i, Tier::Production, 0), "solo", HostState::Ready))
        .collect();
    assert_eq!(starts(&plan(&prod(), &s, &ts, t0(), false)), vec![0, 1, 2]);
    // Not even the n-1 rule: both targets of a two-workspace host start together.
    let two = &ts[..2];
    assert_eq!(starts(&plan(&prod(), &s, two, t0(), false)), vec![0, 1]);
    // A host whose targets were all skipped does not make the rollout span two hosts.
    let mut with_skipped = ts.clone();
    with_skipped.push(on(
        target(9, Tier::Production, 0),
        "other",
        HostState::Ready,
    ));
    with_skipped[4].status = TargetStatus::Skipped;
    assert_eq!(
        starts(&plan(&prod(), &s, &with_skipped, t0(), false)),
        vec![0, 1, 2]
    );
}

#[test]
fn a_target_whose_host_is_not_ready_is_never_started() {
    let s = strategy("4", 4);
    for state in [
        HostState::Down,
        HostState::Unseen,
        HostState::Cordoned,
        HostState::Draining,
    ] {
        let ts = vec![
            on(target(0, Tier::Production, 0), "a", state),
            on(target(1, Tier::Production, 0), "b", HostState::Ready),
        ];
        let p = plan(&prod(), &s, &ts, t0(), false);
        assert_eq!(starts(&p), vec![1], "{state}");
        assert_eq!(p.event, None, "{state}: waiting is neither done nor failed");
    }
}

#[test]
fn waiting_targets_do_not_hold_back_later_waves_but_keep_the_tier_open() {
    let s = strategy("2", 4);
    let later = t0() + Duration::minutes(5);
    // Wave 0: w0 on a (down), w1 on b updated; wave 1: w2 on b.
    let mut ts = vec![
        on(target(0, Tier::Production, 0), "a", HostState::Down),
        on(target(1, Tier::Production, 0), "b", HostState::Ready),
        on(target(2, Tier::Production, 1), "b", HostState::Ready),
    ];
    updated(&mut ts[1], t0());
    let p = plan(&prod(), &s, &ts, later, false);
    assert_eq!(starts(&p), vec![2]);
    // Everything but the waiting target done: production does not converge.
    updated(&mut ts[2], t0());
    let p = plan(&prod(), &s, &ts, later, false);
    assert_eq!(p, Plan::default());
    // Canaries waiting for their host keep the canary tier from converging, too.
    let mut cs = vec![
        on(target(0, Tier::Canary, 0), "a", HostState::Unseen),
        on(target(1, Tier::Canary, 0), "b", HostState::Ready),
    ];
    updated(&mut cs[1], t0());
    assert_eq!(
        plan(&status(RolloutState::Canary), &s, &cs, later, false).event,
        None
    );
    // Once the host is back, its target starts first (its wave is the earliest).
    ts[0].host_state = HostState::Ready;
    let p = plan(&prod(), &s, &ts, later, false);
    assert_eq!(starts(&p), vec![0]);
}

#[test]
fn waiting_targets_never_count_as_failures() {
    let mut s = strategy("4", 4);
    s.max_failures = 0;
    s.max_failure_ratio = 0.0;
    let mut ts: Vec<_> = (0..4)
        .map(|i| on(target(i, Tier::Production, 0), "a", HostState::Down))
        .collect();
    ts.push(on(target(4, Tier::Production, 0), "b", HostState::Ready));
    ts[0].status = TargetStatus::Updating;
    ts[0].attempts = 1;
    let p = plan(&prod(), &s, &ts, t0() + Duration::hours(5), false);
    assert_eq!(p.event, None, "no abort: {p:?}");
    assert!(!p.block_release);
    assert_eq!(starts(&p), vec![4]);
}

#[test]
fn an_update_in_flight_on_a_down_host_waits_for_its_outcome() {
    let s = strategy("2", 4);
    let mut ts = vec![
        down_since(
            on(target(0, Tier::Production, 0), "a", HostState::Ready),
            t0(),
        ),
        on(target(1, Tier::Production, 0), "b", HostState::Ready),
    ];
    ts[0].status = TargetStatus::Updating;
    ts[0].attempts = 1;
    updated(&mut ts[1], t0());
    // With `wait`, however long: no action on it, no convergence.
    let p = plan(&prod(), &s, &ts, t0() + Duration::days(2), false);
    assert_eq!(p, Plan::default());
    // Its outcome, once the agent journals it, is taken as usual.
    ts[0].latest_update = Some((7, UpdatePhase::Succeeded));
    let p = plan(&prod(), &s, &ts, t0() + Duration::days(2), false);
    assert!(p.actions.contains(&TargetAction::Succeeded {
        workspace_id: 0,
        update_id: 7
    }));
}

#[test]
fn targets_of_a_host_down_past_host_timeout_are_skipped_only_with_policy_skip() {
    let mut s = strategy("3", 4);
    s.host_timeout_ms = 600_000;
    s.on_host_timeout = crate::config::HostTimeoutPolicy::Skip;
    let mut ts = vec![
        down_since(
            on(target(0, Tier::Production, 0), "a", HostState::Ready),
            t0(),
        ),
        down_since(
            on(target(1, Tier::Production, 0), "a", HostState::Ready),
            t0(),
        ),
        on(target(2, Tier::Production, 0), "b", HostState::Ready),
    ];
    ts[1].status = TargetStatus::Updating;
    updated(&mut ts[2], t0());
    // Not yet past the timeout: waiting.
    let p = plan(&prod(), &s, &ts, t0() + Duration::minutes(10), false);
    assert_eq!(p, Plan::default());
    // Past it: both targets of a are skipped, and production converges in the same pass.
    let p = plan(&prod(), &s, &ts, t0() + Duration::minutes(11), false);
    let sk = skips(&p);
    assert_eq!(sk.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1]);
    assert!(
        sk[0].1.contains("host a") && sk[0].1.contains("2026-01-01T00:00:00Z"),
        "{}",
        sk[0].1
    );
    assert!(matches!(p.event, Some((Event::ProductionConverged, _))));
    // With `wait`, nothing is skipped however long the host stays down.
    s.on_host_timeout = crate::config::HostTimeoutPolicy::Wait;
    assert!(skips(&plan(&prod(), &s, &ts, t0() + Duration::days(3), false)).is_empty());
    // Nor for a host never seen (nothing says it is gone), nor in a paused rollout.
    s.on_host_timeout = crate::config::HostTimeoutPolicy::Skip;
    let mut unseen = ts.clone();
    for t in &mut unseen[..2] {
        t.host_state = HostState::Unseen;
        t.host_down_since = None;
    }
    assert!(skips(&plan(&prod(), &s, &unseen, t0() + Duration::days(3), false)).is_empty());
    let paused = RolloutStatus {
        paused_from: Some(RolloutState::Production),
        ..status(RolloutState::Paused)
    };
    assert!(skips(&plan(&paused, &s, &ts, t0() + Duration::days(3), false)).is_empty());
}

fn gate(passed_since: Option<DateTime<Utc>>) -> Gate {
    Gate {
        decided: None,
        gated: true,
        passed_since,
    }
}

#[test]
fn metric_checks_hold_the_promotion_until_every_one_passed() {
    let mut s = strategy("1", 1);
    s.auto_promote = true;
    let soaking = RolloutStatus {
        state: RolloutState::Soaking,
        soak_started_at: Some(t0()),
        soak_ends_at: Some(t0() + Duration::minutes(10)),
        ..RolloutStatus::pending()
    };
    let mut ts = vec![target(0, Tier::Canary, 0)];
    updated(&mut ts[0], t0());
    let later = t0() + Duration::minutes(10);
    // A check that has not passed (failed below its limit, or never evaluated) holds it.
    assert_eq!(
        plan_gated(&soaking, &s, &ts, later, false, &gate(None)).event,
        None
    );
    let p = plan_gated(&soaking, &s, &ts, later, false, &gate(Some(later)));
    assert_eq!(p.event.map(|e| e.0), Some(Event::Promote));
    // An abort decided by a check ends the soak, and the release is blocked.
    let abort = Gate {
        decided: Some(Verdict::Abort("analysis `e`: 0.4 is not < 0.05".into())),
        ..gate(None)
    };
    let p = plan_gated(&soaking, &s, &ts, t0(), false, &abort);
    assert_eq!(
        p.event,
        Some((Event::Abort, "analysis `e`: 0.4 is not < 0.05".to_owned()))
    );
    assert!(p.block_release);
    // An inconclusive check pauses it, once.
    let pause = Gate {
        decided: Some(Verdict::Pause("no data".into())),
        ..gate(None)
    };
    let p = plan_gated(&soaking, &s, &ts, later, false, &pause);
    assert_eq!(p.event.map(|e| e.0), Some(Event::Pause));
    let paused = RolloutStatus {
        state: RolloutState::Paused,
        paused_from: Some(RolloutState::Soaking),
        ..soaking
    };
    assert_eq!(
        plan_gated(&paused, &s, &ts, later, false, &pause).event,
        None
    );
}

#[test]
fn a_production_wave_waits_for_a_pass_made_after_the_previous_wave() {
    let s = strategy("2", 4);
    let mut ts: Vec<_> = (0..4).map(|i| target(i, Tier::Production, i / 2)).collect();
    let done = t0();
    updated(&mut ts[0], done);
    updated(&mut ts[1], done);
    let later = done + Duration::minutes(5);
    let prod = status(RolloutState::Production);
    // Without checks the pause alone paces it.
    assert_eq!(starts(&plan(&prod, &s, &ts, later, false)), vec![2, 3]);
    // A pass from before the wave finished does not count.
    let stale = gate(Some(done - Duration::seconds(1)));
    assert!(starts(&plan_gated(&prod, &s, &ts, later, false, &stale)).is_empty());
    assert!(starts(&plan_gated(&prod, &s, &ts, later, false, &gate(None))).is_empty());
    let fresh = gate(Some(done + Duration::seconds(40)));
    assert_eq!(
        starts(&plan_gated(&prod, &s, &ts, later, false, &fresh)),
        vec![2, 3]
    );
}

#[test]
fn the_pause_between_waves_counts_from_an_outcome_recorded_in_this_pass() {
    let s = strategy("1", 4);
    let mut ts: Vec<_> = (0..2).map(|i| target(i, Tier::Production, i)).collect();
    // Started ten minutes ago; its success is observed now.
    ts[0].status = TargetStatus::Updating;
    ts[0].updated_at = t0() - Duration::minutes(10);
    ts[0].latest_update = Some((5, UpdatePhase::Succeeded));
    ts[0].actual_digest = Some(d(2));
    let p = plan(&status(RolloutState::Production), &s, &ts, t0(), false);
    assert!(p.actions.contains(&TargetAction::Succeeded {
        workspace_id: 0,
        update_id: 5
    }));
    assert!(starts(&p).is_empty(), "the 30 s pause starts now: {p:?}");
}
