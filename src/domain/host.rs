//! Where a Docker host stands. Pure: the caller passes `now`.

use chrono::{DateTime, Duration, Utc};

use super::{HostSchedule, HostState};

/// A host is `Down` when its agent has not heartbeated for `down_after`, and `Unseen` when
/// no agent has ever heartbeated for it. A live host reports its schedule. Down wins over
/// a cordon: a cordoned host that vanished cannot finish its running updates either.
pub fn host_state(
    schedule: HostSchedule,
    heartbeat_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    down_after: Duration,
) -> HostState {
    match heartbeat_at {
        None => HostState::Unseen,
        Some(at) if now - at > down_after => HostState::Down,
        Some(_) => match schedule {
            HostSchedule::Active => HostState::Ready,
            HostSchedule::Cordoned => HostState::Cordoned,
            HostSchedule::Draining => HostState::Draining,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_age_decides_before_the_schedule() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let d = Duration::seconds(30);
        let fresh = Some(now - Duration::seconds(30));
        let stale = Some(now - Duration::seconds(31));
        assert_eq!(
            host_state(HostSchedule::Active, fresh, now, d),
            HostState::Ready
        );
        assert_eq!(
            host_state(HostSchedule::Cordoned, fresh, now, d),
            HostState::Cordoned
        );
        assert_eq!(
            host_state(HostSchedule::Draining, fresh, now, d),
            HostState::Draining
        );
        assert_eq!(
            host_state(HostSchedule::Cordoned, stale, now, d),
            HostState::Down
        );
        assert_eq!(
            host_state(HostSchedule::Active, None, now, d),
            HostState::Unseen
        );
    }
}
