//! Who runs the loops: `Loops` spawns notifier, watcher, reconciler and controller on the
//! store it is handed; `Leadership` hands it that store once this instance leads (at once
//! on SQLite, after winning the lease on PostgreSQL, then with the fenced store).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{spawn_task, track};
use crate::api::AppState;
use crate::clock::Clock;
use crate::config::Settings;
use crate::registry::OciRegistry;
use crate::store::Store;
use crate::task::Driver;

/// The loops this instance runs once it leads, built on the store it is handed (the
/// fenced one on PostgreSQL).
pub(super) struct Loops {
    pub(super) settings: Settings,
    pub(super) state: AppState,
    pub(super) watcher: crate::watcher::Watcher<Arc<OciRegistry>>,
    pub(super) rollout_ops: crate::rollout::ops::Ops,
    pub(super) tasks: TaskTracker,
    pub(super) shutdown: CancellationToken,
}

impl Loops {
    /// Spawns notifier, watcher, reconciler (or the task that waits for Docker) and
    /// controller, each writing through `store`.
    pub(super) fn start(self, store: Store) {
        let Loops {
            settings,
            mut state,
            watcher,
            rollout_ops,
            tasks,
            shutdown,
        } = self;
        state.store = store.clone();
        let metrics = state.metrics.tasks().clone();
        if let Some(notifier) = crate::notify::spawn(
            store.clone(),
            &settings.notifications,
            &settings.email,
            &state.metrics,
            state.clock.clone(),
            shutdown.clone(),
        ) {
            track(&tasks, "notifier", notifier);
        }
        let watcher =
            crate::watcher::WatcherTask::driver(watcher.on_store(store.clone()), metrics.clone());
        spawn_task(&tasks, watcher, &shutdown);
        // The changelog file inside each new release's image, read beside the watcher so
        // that a pull never holds up a probe.
        if !settings.images.changelog_file.is_empty() {
            let reader = crate::watcher::ChangelogReader::new(
                store.clone(),
                state.docker.clone(),
                state.clock.clone(),
                settings.images.clone(),
            );
            spawn_task(
                &tasks,
                crate::watcher::ChangelogTask::driver(reader, metrics.clone()),
                &shutdown,
            );
        }
        // This host's loops, unless every host runs an agent of its own.
        if settings.agent.in_process {
            super::agent::start_host_loops(&settings, &state, &tasks, &shutdown, true);
        }
        let mut deps = rollout_ops.deps().clone();
        deps.store = store.clone();
        let controller =
            crate::rollout::controller::Controller::new(deps, settings.rollout.tick_interval);
        let controller = controller.with_hosts(settings.hosts.clone());
        // Canary smoke checks reach containers through Docker, like the health gate; they
        // fail (never silently pass) while Docker is not connected.
        let controller =
            controller.with_smoke(Arc::new(crate::reconciler::smoke::DockerSmokeProbe::new(
                state.docker.clone(),
                store,
                crate::reconciler::smoke::SMOKE_TIMEOUT,
            )));
        // Metric checks ask `[rollout.prometheus]`; without a client every evaluation is
        // inconclusive (the rollout pauses or fails), never a pass.
        let controller = match &settings.rollout.prometheus.url {
            Some(url) if !settings.rollout.analysis.is_empty() => {
                match crate::rollout::prometheus::Prometheus::new(
                    url,
                    settings.rollout.prometheus.timeout,
                ) {
                    Ok(p) => {
                        tasks.spawn(check_queries(p.clone(), settings.rollout.analysis.clone()));
                        controller.with_analysis(Arc::new(p))
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build the Prometheus client; metric checks will be inconclusive");
                        controller
                    }
                }
            }
            _ => controller,
        };
        let controller =
            crate::rollout::controller_task::ControllerTask::driver(controller, metrics.clone());
        spawn_task(&tasks, controller, &shutdown);
        // Operators' writes through the other instances' APIs wake these loops too.
        if state.store.engine() == crate::store::Engine::Postgres {
            let (store, wakers) = (state.store.clone(), state.wakers.clone());
            tasks.spawn(async move {
                match store.wake_listener().await {
                    Ok(Some(listener)) => {
                        let relay = crate::leader::WakeRelay::new(listener, wakers);
                        Driver::new(relay, metrics).run(shutdown).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cannot listen for other instances' wake-ups; their API writes are acted on at the loops' next timer"
                    ),
                }
            });
        }
    }
}

/// This instance's part in the election (see `leader`): on SQLite it leads at once; on
/// PostgreSQL the leader task starts the loops when it wins, and the daemon exits at once
/// if it loses the lease.
pub(super) struct Leadership {
    keeper: Option<(TaskTracker, CancellationToken, crate::leader::Released)>,
    instance: String,
    clock: Arc<dyn Clock>,
}

impl Leadership {
    pub(super) fn start(
        loops: Loops,
        settings: &Settings,
        leader_metrics: &crate::leader::LeaderMetrics,
    ) -> Self {
        let view = loops.state.leader.clone();
        let instance = view.instance().to_owned();
        let clock = loops.state.clock.clone();
        let store = loops.state.store.clone();
        let task_metrics = loops.state.metrics.tasks().clone();
        if store.engine() == crate::store::Engine::Sqlite {
            view.set(crate::leader::Role::Leader { epoch: 0 });
            leader_metrics.lead(true);
            loops.start(store);
            return Self {
                keeper: None,
                instance,
                clock,
            };
        }
        let lost = CancellationToken::new();
        let exit_on = lost.clone();
        tokio::spawn(async move {
            exit_on.cancelled().await;
            std::process::exit(crate::leader::EXIT_LOST_LEADERSHIP);
        });
        let (task, released) = crate::leader::LeaderTask::new(
            store,
            clock.clone(),
            settings.leader.clone(),
            view,
            leader_metrics.clone(),
            Box::new(move |fenced, _epoch| loops.start(fenced)),
            lost,
            settings.database.max_connections,
        );
        let keeper_tasks = TaskTracker::new();
        let keeper_stop = CancellationToken::new();
        // The keeper outlives the loops: it renews the lease until every loop has ended.
        spawn_task(&keeper_tasks, Driver::new(task, task_metrics), &keeper_stop);
        Self {
            keeper: Some((keeper_tasks, keeper_stop, released)),
            instance,
            clock,
        }
    }

    pub(super) async fn hand_back(self) {
        if let Some((keeper_tasks, keeper_stop, released)) = self.keeper {
            keeper_stop.cancel();
            keeper_tasks.close();
            keeper_tasks.wait().await;
            crate::leader::release(&released, &self.instance, self.clock.as_ref()).await;
        }
    }
}

/// Asks Prometheus to parse every metric check's query once at start: a query it refuses
/// would make each evaluation inconclusive, so say so now, naming the check.
async fn check_queries(
    p: crate::rollout::prometheus::Prometheus,
    checks: Vec<crate::config::AnalysisCheck>,
) {
    let digest = format!("sha256:{}", "0".repeat(64));
    for c in checks {
        let q = match crate::rollout::analysis::render(&c.query, &["canary"], &digest) {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(check = %c.name, error = %e, "a metric check's query cannot be filled in");
                continue;
            }
        };
        match p.check_syntax(&q).await {
            Ok(()) => {
                tracing::debug!(check = %c.name, "Prometheus parses the metric check's query")
            }
            Err(e) => tracing::error!(
                check = %c.name,
                error = %e,
                "Prometheus does not accept a metric check's query; its evaluations will be inconclusive until it does"
            ),
        }
    }
}
