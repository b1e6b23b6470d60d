//! Wake-ups between instances (PostgreSQL only; marked engine-specific): no table. Any
//! instance that takes an operator's write publishes on the channel `sluice_wake`
//! (`pg_notify`); the leader listens on a connection of its own and wakes its loops, so
//! a write through a standby's API is acted on at once rather than at the loops' next
//! timer. A lost notification only delays work until that timer: the loops are level
//! triggered. On SQLite (one instance) publishing does nothing and nobody listens.

use sqlx::postgres::PgListener;

use super::dialect::Engine;
use super::{QueryContext, Store, StoreError};

/// The notification channel.
const CHANNEL: &str = "sluice_wake";

/// The leader's subscription to [`CHANNEL`].
pub struct WakeListener {
    listener: PgListener,
}

impl Store {
    /// Tells the leader, wherever it runs, that desired state changed.
    pub async fn publish_wake(&self) -> Result<(), StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify('sluice_wake', '')")
            .execute(&self.pool)
            .await
            .ctx("publish a wake-up")?;
        Ok(())
    }

    /// Subscribes to the wake-ups of every instance (`None` on SQLite).
    pub async fn wake_listener(&self) -> Result<Option<WakeListener>, StoreError> {
        if self.engine != Engine::Postgres {
            return Ok(None);
        }
        let url = self.pool.connect_options().database_url.clone();
        let mut listener = PgListener::connect(url.as_str())
            .await
            .ctx("open the wake-up listener")?;
        listener.listen(CHANNEL).await.ctx("listen for wake-ups")?;
        Ok(Some(WakeListener { listener }))
    }
}

impl WakeListener {
    /// Waits for the next wake-up (cancel-safe). A lost connection is re-opened by the
    /// listener; what was published meanwhile is lost, which only delays work.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        self.listener
            .recv()
            .await
            .map(|_| ())
            .ctx("receive a wake-up")
    }
}
