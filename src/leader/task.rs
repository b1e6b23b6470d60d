//! The election and the lease's renewal as one task: standby → claimed (waiting for the
//! previous lease to run out) → leading → lost (the daemon exits).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{LeaderMetrics, LeaderView, Role};
use crate::clock::Clock;
use crate::config::LeaderSettings;
use crate::store::{LeaseSession, NewEvent, Store, StoreError};
use crate::task::{Action, Pass, Task};

/// Called once when this instance starts leading, with the fenced store and the epoch:
/// spawns the loops.
pub type OnLead = Box<dyn FnOnce(Store, i64) + Send>;

/// The session and epoch of a leader that stopped cleanly, for handing the lease back
/// once every loop has ended ([`super::release`]).
pub type Released = Arc<tokio::sync::Mutex<Option<(LeaseSession, i64, Store)>>>;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("renewing the lease took longer than {0:?}")]
    RenewTimeout(Duration),
}

enum Phase {
    Standby,
    /// Won; the previous lease runs out at `ready_at`.
    Claimed {
        epoch: i64,
        ready_at: Instant,
        previous: Option<String>,
    },
    Leading {
        epoch: i64,
        renewed: Instant,
        store: Store,
    },
    Lost,
}

/// The election and, once won, the lease's renewal.
pub struct LeaderTask {
    store: Store,
    settings: LeaderSettings,
    view: LeaderView,
    metrics: LeaderMetrics,
    session: Option<LeaseSession>,
    phase: Phase,
    on_lead: Option<OnLead>,
    /// Cancelled when the lease is lost: the daemon exits at once.
    lost: CancellationToken,
    /// Connections of the fenced pool.
    pool_size: u32,
    released: Released,
    clock: Arc<dyn Clock>,
}

impl LeaderTask {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: LeaderSettings,
        view: LeaderView,
        metrics: LeaderMetrics,
        on_lead: OnLead,
        lost: CancellationToken,
        pool_size: u32,
    ) -> (Self, Released) {
        let released: Released = Arc::new(tokio::sync::Mutex::new(None));
        let task = Self {
            store,
            settings,
            view,
            metrics,
            session: None,
            phase: Phase::Standby,
            on_lead: Some(on_lead),
            lost,
            pool_size,
            released: released.clone(),
            clock,
        };
        (task, released)
    }

    async fn session(&mut self) -> Result<&mut LeaseSession, LeaderError> {
        if self.session.is_none() {
            self.session = Some(self.store.lease_session().await?);
        }
        match self.session.as_mut() {
            Some(s) => Ok(s),
            None => Err(LeaderError::Store(StoreError::NotFound {
                what: "leadership session",
                key: String::new(),
            })),
        }
    }

    /// Renews within half a renewal period; a session that errs is dropped (and with it
    /// the lock, if the database still had it).
    async fn renew(&mut self, epoch: i64) -> Result<bool, LeaderError> {
        let ttl = self.settings.lease_ttl;
        let limit = self.settings.renew_every() / 2;
        let session = self.session().await?;
        let r = match tokio::time::timeout(limit, session.renew(epoch, ttl)).await {
            Ok(r) => r.map_err(LeaderError::from),
            Err(_) => Err(LeaderError::RenewTimeout(limit)),
        };
        if r.is_err() {
            self.session = None;
        }
        r
    }

    async fn standby(&mut self) -> Result<Action, LeaderError> {
        let instance = self.view.instance().to_owned();
        let ttl = self.settings.lease_ttl;
        let grace = self.settings.renew_every();
        let poll = self.settings.standby_poll();
        let session = self.session().await?;
        if !session.try_lock().await? {
            let ended = session.end_expired_holder(grace).await?;
            if ended > 0 {
                tracing::warn!(
                    sessions = ended,
                    "the leader's lease ran out while its session held the lock; ended that session"
                );
            }
            return Ok(Action::requeue(poll));
        }
        let claim = session.claim(&instance, ttl).await?;
        let wait = claim
            .previous
            .as_ref()
            .map(|(_, ends)| Duration::from_millis(u64::try_from(ends - claim.now).unwrap_or(0)))
            .unwrap_or_default();
        tracing::info!(
            epoch = claim.epoch,
            previous = claim.previous.as_ref().map(|(h, _)| h.as_str()),
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "won the leader lock; leading once the previous lease has run out"
        );
        self.view.set(Role::Starting { epoch: claim.epoch });
        self.phase = Phase::Claimed {
            epoch: claim.epoch,
            ready_at: Instant::now() + wait,
            previous: claim.previous.map(|(h, _)| h),
        };
        Ok(Action::requeue(Duration::ZERO))
    }

    async fn claimed(
        &mut self,
        epoch: i64,
        ready_at: Instant,
        previous: Option<String>,
    ) -> Result<Action, LeaderError> {
        if !self.renew(epoch).await? {
            self.lose(
                epoch,
                "the lease was taken before this instance started leading",
            );
            return Ok(Action::await_change());
        }
        let now = Instant::now();
        if now < ready_at {
            self.phase = Phase::Claimed {
                epoch,
                ready_at,
                previous,
            };
            return Ok(Action::requeue(
                (ready_at - now).min(self.settings.renew_every()),
            ));
        }
        let fenced = self.store.fenced(epoch, self.pool_size).await?;
        let event = NewEvent {
            actor: "system".to_owned(),
            subject: "fleet".to_owned(),
            action: "leader.acquired".to_owned(),
            detail: serde_json::json!({
                "instance": self.view.instance(),
                "epoch": epoch,
                "previous": previous,
            }),
            rollout_id: None,
            workspace: None,
        };
        fenced.append_event(&event, self.clock.now()).await?;
        self.view.set(Role::Leader { epoch });
        self.metrics.lead(true);
        tracing::info!(
            epoch,
            instance = self.view.instance(),
            "leading: starting the loops"
        );
        if let Some(start) = self.on_lead.take() {
            start(fenced.clone(), epoch);
        }
        self.phase = Phase::Leading {
            epoch,
            renewed: Instant::now(),
            store: fenced,
        };
        Ok(Action::requeue(self.settings.renew_every()))
    }

    fn lose(&mut self, epoch: i64, why: &str) {
        tracing::error!(
            epoch,
            instance = self.view.instance(),
            reason = why,
            "lost leadership: stopping at once so that only the new leader acts"
        );
        self.view.set(Role::Standby);
        self.metrics.lead(false);
        self.phase = Phase::Lost;
        self.lost.cancel();
    }
}

impl Task for LeaderTask {
    const NAME: &'static str = "leader";
    type Error = LeaderError;

    async fn pass(&mut self, _cx: &mut Pass) -> Result<Action, LeaderError> {
        match std::mem::replace(&mut self.phase, Phase::Standby) {
            Phase::Standby => self.standby().await,
            Phase::Claimed {
                epoch,
                ready_at,
                previous,
            } => {
                let r = self.claimed(epoch, ready_at, previous.clone()).await;
                if r.is_err() && matches!(self.phase, Phase::Standby) {
                    // Not leading yet: try again from the claim's state.
                    self.phase = Phase::Claimed {
                        epoch,
                        ready_at,
                        previous,
                    };
                }
                r
            }
            Phase::Leading {
                epoch,
                renewed,
                store,
            } => {
                let r = self.renew(epoch).await;
                match r {
                    Ok(true) => {
                        self.phase = Phase::Leading {
                            epoch,
                            renewed: Instant::now(),
                            store,
                        };
                        Ok(Action::requeue(self.settings.renew_every()))
                    }
                    Ok(false) => {
                        self.lose(epoch, "a newer epoch holds the lease");
                        Ok(Action::await_change())
                    }
                    Err(e) if renewed.elapsed() >= self.settings.step_down_after() => {
                        self.lose(epoch, &format!("the lease was not renewed in time: {e}"));
                        Ok(Action::await_change())
                    }
                    Err(e) => {
                        self.phase = Phase::Leading {
                            epoch,
                            renewed,
                            store,
                        };
                        Err(e)
                    }
                }
            }
            Phase::Lost => {
                self.phase = Phase::Lost;
                Ok(Action::await_change())
            }
        }
    }

    fn error_policy(&self, _error: &LeaderError, backoff: Duration) -> Action {
        // A leader retries well within its lease; a standby backs off as usual.
        match self.phase {
            Phase::Leading { .. } | Phase::Claimed { .. } => {
                Action::requeue(backoff.min(self.settings.renew_every() / 4))
            }
            _ => Action::requeue(backoff.min(self.settings.standby_poll() * 5)),
        }
    }

    async fn stopped(&mut self) {
        // Keep the session (and the lock) for the hand-back after the loops have ended.
        if let (Phase::Leading { epoch, store, .. }, Some(session)) = (
            std::mem::replace(&mut self.phase, Phase::Lost),
            self.session.take(),
        ) {
            *self.released.lock().await = Some((session, epoch, store));
        }
    }
}

/// At a clean stop, after every loop has ended: records the hand-back and releases the
/// lease and lock so a standby need not wait for the lease to run out.
pub async fn release(released: &Released, instance: &str, clock: &dyn Clock) {
    let Some((mut session, epoch, store)) = released.lock().await.take() else {
        return;
    };
    let event = NewEvent {
        actor: "system".to_owned(),
        subject: "fleet".to_owned(),
        action: "leader.released".to_owned(),
        detail: serde_json::json!({ "instance": instance, "epoch": epoch }),
        rollout_id: None,
        workspace: None,
    };
    if let Err(e) = store.append_event(&event, clock.now()).await {
        tracing::warn!(error = %e, "could not record the lease's hand-back");
    }
    match session.release(epoch).await {
        Ok(()) => tracing::info!(epoch, "lease handed back"),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand the lease back; it runs out by itself")
        }
    }
    session.close().await;
    store.close().await;
}
