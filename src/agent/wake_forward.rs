//! Publishes this process's local wake-ups to the other processes sharing the database
//! (PostgreSQL `NOTIFY`, `Store::publish_wake`): an agent's finished update wakes the
//! leader's controller, which scores it at once instead of at its next timer. Only
//! where no local loop consumes the notifier (the controller's, on an agent).

use std::sync::Arc;

use tokio::sync::Notify;

use crate::store::{Store, StoreError};
use crate::task::{Action, Pass, Task};

pub struct WakeForward {
    store: Store,
    from: Arc<Notify>,
    pending: bool,
}

impl WakeForward {
    pub fn new(store: Store, from: Arc<Notify>) -> Self {
        Self {
            store,
            from,
            pending: false,
        }
    }
}

impl Task for WakeForward {
    const NAME: &'static str = "wake_forward";
    type Error = StoreError;

    async fn pass(&mut self, _cx: &mut Pass) -> Result<Action, StoreError> {
        if std::mem::take(&mut self.pending) {
            self.store.publish_wake().await?;
        }
        Ok(Action::await_change())
    }

    async fn changed(&mut self) {
        self.from.notified().await;
        self.pending = true;
    }
}
