//! The driver on paused time: requeue timing, wake-ups, backoff, shutdown, metrics.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Action, Backoff, Driver, Pass, Task};
use crate::metrics::TaskMetrics;

#[derive(Clone, Debug, thiserror::Error)]
#[error("scripted failure")]
struct Failure;

/// Plays a script of pass results, recording when each pass started; cancels `stop`
/// when the script is over.
struct Scripted {
    script: VecDeque<Result<Action, Failure>>,
    started: Vec<Instant>,
    stop: CancellationToken,
    /// How long each pass takes.
    work: Duration,
    finished_passes: usize,
    stopped: bool,
}

impl Scripted {
    fn new(script: Vec<Result<Action, Failure>>, stop: &CancellationToken) -> Self {
        Self {
            script: script.into(),
            started: Vec::new(),
            stop: stop.clone(),
            work: Duration::ZERO,
            finished_passes: 0,
            stopped: false,
        }
    }

    /// Seconds between consecutive passes.
    fn gaps(&self) -> Vec<u64> {
        self.started
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs())
            .collect()
    }
}

impl Task for Scripted {
    const NAME: &'static str = "scripted";
    type Error = Failure;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Failure> {
        self.started.push(Instant::now());
        cx.worked_on(self.started.len());
        tokio::time::sleep(self.work).await;
        self.finished_passes += 1;
        let next = self
            .script
            .pop_front()
            .unwrap_or(Ok(Action::await_change()));
        if self.script.is_empty() {
            self.stop.cancel();
        }
        next
    }

    async fn stopped(&mut self) {
        self.stopped = true;
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn a_pass_runs_again_after_its_requested_requeue() {
    let stop = CancellationToken::new();
    let task = Scripted::new(
        vec![
            Ok(Action::requeue(secs(10))),
            Ok(Action::requeue(secs(3))),
            Ok(Action::requeue(secs(7))),
            Ok(Action::await_change()),
        ],
        &stop,
    );
    let t = Driver::new(task, TaskMetrics::unregistered())
        .run(stop)
        .await;
    assert_eq!(t.gaps(), [10, 3, 7]);
    assert!(t.stopped);
}

#[tokio::test(start_paused = true)]
async fn a_notify_wakes_the_task_before_its_requeue_and_none_is_lost() {
    let stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let mut task = Scripted::new(vec![Ok(Action::requeue(secs(100))); 4], &stop);
    task.work = secs(1);
    let driver = Driver::new(task, TaskMetrics::unregistered()).wake_on(wake.clone());
    let run = tokio::spawn(driver.run(stop.clone()));
    // During the first pass: kept by the notifier, so the second pass follows at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    wake.notify_one();
    tokio::time::sleep(secs(10)).await;
    // Waiting: the third pass starts on the wake-up, not after 100 s.
    wake.notify_one();
    tokio::time::sleep(secs(10)).await;
    stop.cancel();
    let t = run.await.unwrap();
    let ms: Vec<u128> = t
        .started
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(ms, [1000, 9500]);
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_up_to_the_cap_and_a_success_resets_it() {
    let stop = CancellationToken::new();
    let task = Scripted::new(
        vec![
            Err(Failure),
            Err(Failure),
            Err(Failure),
            Err(Failure),
            Ok(Action::requeue(secs(60))),
            Err(Failure),
            Ok(Action::await_change()),
        ],
        &stop,
    );
    let metrics = TaskMetrics::unregistered();
    let t = Driver::new(task, metrics.clone())
        .backoff(Backoff::new(secs(1), secs(4)))
        .run(stop)
        .await;
    assert_eq!(t.gaps(), [1, 2, 4, 4, 60, 1]);
    assert_eq!(metrics.errors.with_label_values(&["scripted"]).get(), 5);
    assert_eq!(
        metrics
            .pass_seconds
            .with_label_values(&["scripted"])
            .get_sample_count(),
        7
    );
}

#[tokio::test(start_paused = true)]
async fn the_error_policy_decides_the_wait_after_a_failure() {
    struct Fixed(Scripted);
    impl Task for Fixed {
        const NAME: &'static str = "fixed";
        type Error = Failure;
        async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Failure> {
            self.0.pass(cx).await
        }
        fn error_policy(&self, _: &Failure, backoff: Duration) -> Action {
            Action::requeue(backoff + secs(10))
        }
    }
    let stop = CancellationToken::new();
    let task = Fixed(Scripted::new(
        vec![Err(Failure), Err(Failure), Ok(Action::await_change())],
        &stop,
    ));
    let t = Driver::new(task, TaskMetrics::unregistered())
        .run(stop)
        .await;
    assert_eq!(t.0.gaps(), [11, 12]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_running_pass_and_starts_no_other() {
    let stop = CancellationToken::new();
    let mut task = Scripted::new(vec![Ok(Action::requeue(Duration::ZERO)); 10], &stop);
    task.work = secs(5);
    let metrics = TaskMetrics::unregistered();
    let run = tokio::spawn(Driver::new(task, metrics.clone()).run(stop.clone()));
    tokio::time::sleep(secs(1)).await;
    let asked = Instant::now();
    stop.cancel();
    let t = run.await.unwrap();
    assert!(asked.elapsed() >= secs(4), "the pass was cut short");
    assert_eq!(t.started.len(), 1);
    assert_eq!(t.finished_passes, 1);
    assert!(t.stopped);
    let took = metrics
        .pass_seconds
        .with_label_values(&["scripted"])
        .get_sample_sum();
    assert!((5.0..5.1).contains(&took), "{took}");
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_watches_the_stop_token_may_end_early() {
    struct Follower;
    impl Task for Follower {
        const NAME: &'static str = "follower";
        type Error = Failure;
        async fn pass(&mut self, cx: &mut Pass) -> Result<Action, Failure> {
            tokio::select! {
                () = cx.stop().cancelled() => Ok(Action::await_change()),
                () = tokio::time::sleep(secs(3600)) => Err(Failure),
            }
        }
    }
    let stop = CancellationToken::new();
    let run = tokio::spawn(Driver::new(Follower, TaskMetrics::unregistered()).run(stop.clone()));
    tokio::time::sleep(secs(1)).await;
    let asked = Instant::now();
    stop.cancel();
    run.await.unwrap();
    assert!(asked.elapsed() < secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_tasks_own_change_wakes_it() {
    struct Changes {
        passes: usize,
        rx: tokio::sync::mpsc::Receiver<()>,
        stop: CancellationToken,
    }
    impl Task for Changes {
        const NAME: &'static str = "changes";
        type Error = Failure;
        async fn pass(&mut self, _: &mut Pass) -> Result<Action, Failure> {
            self.passes += 1;
            if self.passes == 3 {
                self.stop.cancel();
            }
            Ok(Action::await_change())
        }
        async fn changed(&mut self) {
            if self.rx.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stop = CancellationToken::new();
    let task = Changes {
        passes: 0,
        rx,
        stop: stop.clone(),
    };
    tx.send(()).await.unwrap();
    tx.send(()).await.unwrap();
    let t = Driver::new(task, TaskMetrics::unregistered())
        .run(stop)
        .await;
    assert_eq!(t.passes, 3);
}

#[test]
fn backoff_doubles_from_initial_to_the_cap() {
    let b = Backoff::new(Duration::from_millis(100), secs(1));
    let d: Vec<_> = (1..=6).map(|n| b.delay(n).as_millis()).collect();
    assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(b.delay(u32::MAX), secs(1));
    assert_eq!(Backoff::new(secs(5), secs(1)).delay(1), secs(5));
}

#[test]
fn a_new_driver_exports_its_error_counter_at_zero() {
    let metrics = TaskMetrics::unregistered();
    let _driver = Driver::new(
        Scripted::new(Vec::new(), &CancellationToken::new()),
        metrics.clone(),
    );
    let families = prometheus::core::Collector::collect(&metrics.errors);
    let samples: Vec<_> = families.iter().flat_map(|f| f.get_metric()).collect();
    assert_eq!(samples.len(), 1, "one series, before any pass");
    assert_eq!(samples[0].get_label()[0].value(), "scripted");
    assert_eq!(samples[0].get_counter().get_value(), 0.0);
}
