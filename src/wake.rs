//! Wake-ups between the loops. Every loop is level-triggered (it re-reads the whole
//! desired and observed state on each pass), so a wake-up only shortens the wait: a
//! missed one delays work until the next timer tick, it never loses it.

use std::sync::Arc;

use tokio::sync::Notify;

/// One notifier per loop; cheap to clone and share.
#[derive(Clone, Default, Debug)]
pub struct Wakers {
    /// The registry watcher: a push notification arrived, or the tracked set changed.
    pub watcher: Arc<Notify>,
    /// The rollout controller: a release, an API write, or a reconciler result.
    pub controller: Arc<Notify>,
    /// The workspace reconciler: a desired digest or a workspace changed.
    pub reconciler: Arc<Notify>,
}

impl Wakers {
    pub fn new() -> Self {
        Self::default()
    }
}
