use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use RolloutState as S;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn all_events() -> Vec<Event> {
    vec![
        Event::ApplyCanary,
        Event::ApplyProduction,
        Event::CanaryConverged { soak_ms: 60_000 },
        Event::Promote,
        Event::ProductionConverged,
        Event::Pause,
        Event::Resume,
        Event::Abort,
        Event::Rollback,
    ]
}

/// A status in `state` as the machine would have produced it.
fn status_in(state: RolloutState) -> RolloutStatus {
    let mut s = RolloutStatus::pending();
    s.state = state;
    if state == S::Paused {
        s.paused_from = Some(S::Production);
    }
    s
}

/// The complete table: (from, event) → Some(to) when legal, None when illegal.
fn expected(from: RolloutState, ev: &Event) -> Option<RolloutState> {
    match (from, ev) {
        (S::Pending, Event::ApplyCanary) => Some(S::Canary),
        (S::Pending | S::Canary | S::Soaking, Event::ApplyProduction) => Some(S::Production),
        (S::Canary, Event::CanaryConverged { .. }) => Some(S::Soaking),
        (S::Soaking, Event::Promote) => Some(S::Production),
        (S::Production, Event::ProductionConverged) => Some(S::Completed),
        (S::Pending | S::Canary | S::Soaking | S::Production, Event::Pause) => Some(S::Paused),
        (S::Paused, Event::Resume) => Some(S::Production), // status_in(Paused) paused production
        (S::Pending | S::Canary | S::Soaking | S::Production | S::Paused, Event::Abort) => {
            Some(S::Aborted)
        }
        (S::Canary | S::Soaking | S::Production | S::Paused | S::Aborted, Event::Rollback) => {
            Some(S::RolledBack)
        }
        _ => None,
    }
}

#[test]
fn transition_table_every_state_every_event() {
    let mut legal = 0;
    let mut illegal = 0;
    for from in RolloutState::ALL {
        for ev in all_events() {
            let got = next(&status_in(*from), &ev, t0());
            match expected(*from, &ev) {
                Some(to) => {
                    legal += 1;
                    assert_eq!(got.unwrap().state, to, "{from} --{}-->", ev.name());
                }
                None => {
                    illegal += 1;
                    let e = got.unwrap_err();
                    assert_eq!((e.state, e.event), (*from, ev.name()));
                    assert!(e.to_string().contains("is not allowed in rollout state"));
                }
            }
        }
    }
    // 8 states × 9 events, all covered; the counts pin the table's shape.
    assert_eq!((legal, illegal), (22, 50));
}

#[test]
fn terminal_states_have_no_way_out() {
    for from in [S::Completed, S::RolledBack] {
        for ev in all_events() {
            assert!(next(&status_in(from), &ev, t0()).is_err(), "{from} {ev:?}");
        }
    }
}

#[test]
fn resume_returns_to_exactly_the_paused_state() {
    for st in [S::Pending, S::Canary, S::Soaking, S::Production] {
        let p = next(&status_in(st), &Event::Pause, t0()).unwrap();
        assert_eq!((p.state, p.paused_from), (S::Paused, Some(st)));
        assert_eq!(p.effective_state(), st);
        let r = next(&p, &Event::Resume, t0()).unwrap();
        assert_eq!((r.state, r.paused_from), (st, None));
    }
    // Pausing twice is refused rather than forgetting where to return.
    let p = next(&status_in(S::Canary), &Event::Pause, t0()).unwrap();
    assert!(next(&p, &Event::Pause, t0()).is_err());
}

#[test]
fn soak_times_come_from_now_and_the_event() {
    let s = next(
        &status_in(S::Canary),
        &Event::CanaryConverged { soak_ms: 600_000 },
        t0(),
    )
    .unwrap();
    assert_eq!(s.soak_started_at, Some(t0()));
    assert_eq!(s.soak_ends_at, Some(t0() + Duration::minutes(10)));
    assert!(!s.soak_passed(t0() + Duration::minutes(9)));
    assert!(s.soak_passed(t0() + Duration::minutes(10)));
    let bad = next(
        &status_in(S::Canary),
        &Event::CanaryConverged { soak_ms: -1 },
        t0(),
    );
    assert!(bad.is_err());
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::ApplyCanary),
        Just(Event::ApplyProduction),
        (0i64..1_000_000).prop_map(|soak_ms| Event::CanaryConverged { soak_ms }),
        Just(Event::Promote),
        Just(Event::ProductionConverged),
        Just(Event::Pause),
        Just(Event::Resume),
        Just(Event::Abort),
        Just(Event::Rollback),
    ]
}

proptest! {
    #[test]
    fn no_event_sequence_leaves_a_terminal_state(events in prop::collection::vec(arb_event(), 0..40)) {
        let mut s = RolloutStatus::pending();
        let mut seen_terminal: Option<RolloutState> = None;
        for (i, e) in events.iter().enumerate() {
            let at = t0() + Duration::seconds(i as i64);
            if let Ok(n) = next(&s, e, at) {
                s = n;
            }
            if let Some(t) = seen_terminal {
                prop_assert_eq!(s.state, t);
            } else if s.state.is_terminal() {
                seen_terminal = Some(s.state);
            }
            // Invariant: paused_from is set exactly while paused.
            prop_assert_eq!(s.paused_from.is_some(), s.state == S::Paused);
        }
    }

    #[test]
    fn replaying_the_accepted_events_reproduces_the_status(events in prop::collection::vec(arb_event(), 0..40)) {
        let mut s = RolloutStatus::pending();
        let mut log = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let at = t0() + Duration::seconds(i as i64);
            if let Ok(n) = next(&s, e, at) {
                s = n;
                log.push((e.clone(), at));
            }
        }
        let replayed = replay(log.iter().map(|(e, at)| (e, *at))).unwrap();
        prop_assert_eq!(replayed, s);
    }
}
