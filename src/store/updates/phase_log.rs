//! Table `update_phases`: the phase log of the update journal, one row per phase a
//! `workspace_updates` row entered, in order. Written only by [`log_phase_in`], inside the
//! transaction of every write that sets a journal row's phase (`journal`: open, advance,
//! rollback, quarantine, finish; `restore_queue`: a queued restore or recovery), so the
//! log never disagrees with the row. Read for people by [`Store::update_phases`]. Rows go
//! with their update row (`ON DELETE CASCADE`).

use chrono::{DateTime, Duration, Utc};
use sqlx::{AnyConnection, Row};

use super::corrupt;
use crate::clock::{from_millis, to_millis};
use crate::domain::UpdatePhase;
use crate::store::{QueryContext, Store, StoreError};

/// One phase an attempt went through and how long it stayed there.
#[derive(Clone, Debug, PartialEq)]
pub struct PhaseSpan {
    pub seq: i64,
    pub phase: UpdatePhase,
    pub entered_at: DateTime<Utc>,
    /// Until the next phase began; the last phase runs to the attempt's end, or to the
    /// caller's `now` while the attempt is open. Zero for a terminal phase.
    pub duration: Duration,
}

/// Appends `phase` to update `update_id`'s log as its next entry, on the caller's
/// transaction.
pub(crate) async fn log_phase_in(
    conn: &mut AnyConnection,
    update_id: i64,
    phase: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO update_phases (update_id, seq, phase, entered_at) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3 FROM update_phases WHERE update_id = $1",
    )
    .bind(update_id)
    .bind(phase)
    .bind(to_millis(at))
    .execute(conn)
    .await
    .ctx("log update phase")?;
    Ok(())
}

/// The spans of a log read in order: each phase lasts until the next one was entered; the
/// last until `end` (never negative).
pub(crate) fn spans(
    log: Vec<(i64, UpdatePhase, DateTime<Utc>)>,
    end: DateTime<Utc>,
) -> Vec<PhaseSpan> {
    let ends: Vec<DateTime<Utc>> = log.iter().skip(1).map(|(_, _, at)| *at).collect();
    log.into_iter()
        .enumerate()
        .map(|(i, (seq, phase, entered_at))| {
            let until = if phase.is_terminal() {
                entered_at
            } else {
                ends.get(i).copied().unwrap_or(end)
            };
            PhaseSpan {
                seq,
                phase,
                entered_at,
                duration: (until - entered_at).max(Duration::zero()),
            }
        })
        .collect()
}

impl Store {
    /// Every phase update `update_id` entered, in order, with the time spent in each; a
    /// phase still running (the attempt is open) counts up to `now`.
    pub async fn update_phases(
        &self,
        update_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<PhaseSpan>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, phase, entered_at FROM update_phases WHERE update_id = $1 ORDER BY seq",
        )
        .bind(update_id)
        .fetch_all(&self.pool)
        .await
        .ctx("read update phases")?;
        let log = rows
            .iter()
            .map(|r| {
                let phase: String = r.try_get("phase").map_err(corrupt)?;
                Ok((
                    r.try_get::<i64, _>("seq").map_err(corrupt)?,
                    UpdatePhase::parse(&phase).map_err(corrupt)?,
                    from_millis(r.try_get("entered_at").map_err(corrupt)?),
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(spans(log, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        from_millis(s * 1000)
    }

    #[test]
    fn each_phase_lasts_until_the_next_and_the_open_one_until_now() {
        let log = vec![
            (1, UpdatePhase::Pulling, at(10)),
            (2, UpdatePhase::Stopping, at(13)),
            (3, UpdatePhase::Succeeded, at(20)),
        ];
        let d: Vec<i64> = spans(log, at(99))
            .iter()
            .map(|s| s.duration.num_seconds())
            .collect();
        assert_eq!(d, vec![3, 7, 0]);
        let open = spans(vec![(1, UpdatePhase::Pulling, at(10))], at(15));
        assert_eq!(open[0].duration.num_seconds(), 5);
        let skewed = spans(vec![(1, UpdatePhase::Pulling, at(10))], at(5));
        assert_eq!(skewed[0].duration, Duration::zero());
    }
}
