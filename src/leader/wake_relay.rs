//! On the leader: relays the wake-ups other instances publish after an operator's write
//! (`store::WakeListener`) to this process's loops.

use crate::store::{StoreError, WakeListener};
use crate::task::{Action, Pass, Task};
use crate::wake::Wakers;

/// Wakes the watcher, the controller and the reconciler at each wake-up received. The
/// loops are level triggered, so waking all three for any write costs a pass at most.
pub struct WakeRelay {
    listener: WakeListener,
    wakers: Wakers,
    /// What the last wait for a wake-up ended with; reported by the next pass.
    received: Option<Result<(), StoreError>>,
}

impl WakeRelay {
    pub fn new(listener: WakeListener, wakers: Wakers) -> Self {
        Self {
            listener,
            wakers,
            received: None,
        }
    }
}

impl Task for WakeRelay {
    const NAME: &'static str = "wake_relay";
    type Error = StoreError;

    async fn pass(&mut self, _cx: &mut Pass) -> Result<Action, StoreError> {
        if let Some(received) = self.received.take() {
            received?;
            self.wakers.watcher.notify_one();
            self.wakers.controller.notify_one();
            self.wakers.reconciler.notify_one();
        }
        Ok(Action::await_change())
    }

    async fn changed(&mut self) {
        let r = self.listener.next().await;
        self.received = Some(r);
    }
}
