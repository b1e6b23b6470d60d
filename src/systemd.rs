//! systemd integration (`Type=notify`): `READY=1` once the store and Docker answer,
//! `STATUS=` lines while waiting and when serving, `WATCHDOG=1` at half the watchdog
//! interval while the store answers, `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::config::DockerSettings;
use crate::metrics::TaskMetrics;
use crate::store::Store;
use crate::task::{Action, Driver, Pass, Task};

const RETRY: Duration = Duration::from_secs(2);
const PROBE: Duration = Duration::from_secs(3);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

async fn store_answers(store: &Store) -> Result<(), String> {
    match tokio::time::timeout(PROBE, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

async fn docker_answers(
    docker: &mut Option<Arc<crate::runtime::Engine>>,
    settings: &DockerSettings,
) -> Result<(), String> {
    if docker.is_none() {
        *docker = Some(Arc::new(
            crate::runtime::connect(settings)
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    let d = docker.as_ref().ok_or("not connected")?;
    match tokio::time::timeout(PROBE, crate::runtime::engine_answers(d)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Readiness, then the watchdog, as a [`Task`]: until the store and Docker answer, a
/// pass every [`RETRY`] checks both (and updates `STATUS=` when it changed); the pass
/// that finds both answering sends `READY=1`. With a watchdog, a pass every half
/// interval pings it while the store answers; without one the task waits for the stop.
/// Stopping sends `STOPPING=1`.
pub struct Systemd {
    store: Store,
    docker: Option<Arc<crate::runtime::Engine>>,
    docker_settings: DockerSettings,
    listen: std::net::SocketAddr,
    /// The last `STATUS=` sent while not ready (sent again only when it changes).
    last_status: String,
    /// `READY=1` was sent; from then on the passes are watchdog pings, this often.
    watchdog_every: Option<Duration>,
    ready: bool,
}

impl Systemd {
    pub fn new(
        store: Store,
        docker: Option<Arc<crate::runtime::Engine>>,
        docker_settings: DockerSettings,
        listen: std::net::SocketAddr,
    ) -> Self {
        Self {
            store,
            docker,
            docker_settings,
            listen,
            last_status: String::new(),
            watchdog_every: None,
            ready: false,
        }
    }

    /// The task on the driver, ready to run.
    pub fn driver(self, metrics: TaskMetrics) -> Driver<Self> {
        Driver::new(self, metrics)
    }

    async fn until_ready(&mut self) -> Action {
        let store_ok = store_answers(&self.store).await;
        let docker_ok = docker_answers(&mut self.docker, &self.docker_settings).await;
        let status = match (store_ok, docker_ok) {
            (Ok(()), Ok(())) => None,
            (Err(e), _) => Some(format!("waiting for the store: {e}")),
            (_, Err(e)) => Some(format!("waiting for docker: {e}")),
        };
        if let Some(status) = status {
            if status != self.last_status {
                tracing::warn!(status = %status, "not ready yet");
                send(&[NotifyState::Status(&status)]);
                self.last_status = status;
            }
            return Action::requeue(RETRY);
        }
        let status = format!("ready: API on {}; store and docker answer", self.listen);
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        tracing::info!("ready (store and docker answer)");
        self.ready = true;
        self.watchdog_every = sd_notify::watchdog_enabled().map(|period| period / 2);
        match self.watchdog_every {
            Some(every) => Action::requeue(every),
            None => Action::await_change(),
        }
    }
}

impl Task for Systemd {
    const NAME: &'static str = "systemd";
    type Error = std::convert::Infallible;

    async fn pass(&mut self, _cx: &mut Pass) -> Result<Action, Self::Error> {
        if !self.ready {
            return Ok(self.until_ready().await);
        }
        let Some(every) = self.watchdog_every else {
            return Ok(Action::await_change());
        };
        // A wedged store must let systemd restart us: only ping when it answers.
        match store_answers(&self.store).await {
            Ok(()) => send(&[NotifyState::Watchdog]),
            Err(e) => {
                tracing::error!(error = %e, "store does not answer; withholding the watchdog ping");
            }
        }
        Ok(Action::requeue(every))
    }

    async fn stopped(&mut self) {
        stopping();
    }
}

fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
