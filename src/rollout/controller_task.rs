//! The rollout controller as a [`Task`]: each pass is one [`Controller::tick`]; it runs
//! again after `[rollout] tick_interval` or when `Wakers::controller` is notified (API
//! writes, reconciler results, new releases). A failed pass is retried with backoff,
//! never later than the interval.

use crate::metrics::TaskMetrics;
use crate::task::{Action, Backoff, Driver, Pass, Task};

use super::controller::{Controller, ControllerError};

/// Drives [`Controller::tick`].
pub struct ControllerTask {
    controller: Controller,
}

impl ControllerTask {
    pub fn new(controller: Controller) -> Self {
        Self { controller }
    }

    /// The task with its wake-up (`Wakers::controller`) and backoff, ready to run.
    pub fn driver(controller: Controller, metrics: TaskMetrics) -> Driver<Self> {
        let wake = controller.wakers().controller.clone();
        let backoff = Backoff::new(Backoff::default().initial, controller.interval());
        Driver::new(Self::new(controller), metrics)
            .wake_on(wake)
            .backoff(backoff)
    }
}

impl Task for ControllerTask {
    const NAME: &'static str = "rollout_controller";
    type Error = ControllerError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, ControllerError> {
        let report = self.controller.tick().await?;
        for (rollout, _) in &report.transitions {
            cx.worked_on(format_args!("rollout:{rollout}"));
        }
        for rollout in &report.started_rollouts {
            cx.worked_on(format_args!("rollout:{rollout}"));
        }
        Ok(Action::requeue(self.controller.interval()))
    }
}
