//! systemd integration (`Type=notify`): `READY=1` once the store and Docker answer,
//! `STATUS=` lines while waiting and when serving, `WATCHDOG=1` at half the watchdog
//! interval while the store answers, `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET`
//! every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::DockerSettings;
use crate::store::Store;

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
    docker: &mut Option<Arc<bollard::Docker>>,
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
    match tokio::time::timeout(PROBE, d.ping()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// Spawns the readiness-then-watchdog task.
pub fn spawn(
    store: Store,
    docker: Option<Arc<bollard::Docker>>,
    docker_settings: DockerSettings,
    listen: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut docker = docker;
        let mut last_status = String::new();
        loop {
            let store_ok = store_answers(&store).await;
            let docker_ok = docker_answers(&mut docker, &docker_settings).await;
            if store_ok.is_ok() && docker_ok.is_ok() {
                break;
            }
            let status = match (store_ok, docker_ok) {
                (Err(e), _) => format!("waiting for the store: {e}"),
                (_, Err(e)) => format!("waiting for docker: {e}"),
                _ => String::new(),
            };
            if status != last_status {
                tracing::warn!(status = %status, "not ready yet");
                send(&[NotifyState::Status(&status)]);
                last_status = status;
            }
            tokio::select! {
                () = shutdown.cancelled() => return stopping(),
                () = tokio::time::sleep(RETRY) => {}
            }
        }
        let status = format!("ready: API on {listen}; store and docker answer");
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        tracing::info!("ready (store and docker answer)");
        let Some(period) = sd_notify::watchdog_enabled() else {
            shutdown.cancelled().await;
            return stopping();
        };
        let every = period / 2;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return stopping(),
                () = tokio::time::sleep(every) => {}
            }
            // A wedged store must let systemd restart us: only ping when it answers.
            match store_answers(&store).await {
                Ok(()) => send(&[NotifyState::Watchdog]),
                Err(e) => {
                    tracing::error!(error = %e, "store does not answer; withholding the watchdog ping")
                }
            }
        }
    })
}

fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
