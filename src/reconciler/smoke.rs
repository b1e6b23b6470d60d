//! The HTTP adapter of the controller's canary smoke checks ([`SmokeProbe`]): a GET with
//! a timeout, sent to the workspace's container the way the health gate reaches it
//! (its IP on its network, else the published host port; [`super::health::address`]).
//! The port is the workspace's HTTP health-probe port, else its first mapped container
//! port.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::domain::WorkspaceName;
use crate::rollout::smoke::{SmokeProbe, SmokeResponse};
use crate::runtime::ContainerRuntime;
use crate::store::Store;

/// Default time limit of one smoke request (connect + answer + body).
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bodies are kept up to this many bytes (checks look for a short marker).
const MAX_BODY: usize = 64 * 1024;

/// Reaches workspaces through the container runtime's inspect.
pub struct HttpSmokeProbe<R> {
    rt: R,
    store: Store,
    http: reqwest::Client,
}

impl<R: ContainerRuntime> HttpSmokeProbe<R> {
    pub fn new(rt: R, store: Store, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self { rt, store, http }
    }

    async fn request(&self, workspace: &str, path: &str) -> Result<SmokeResponse, String> {
        let name = WorkspaceName::parse(workspace).map_err(|e| e.to_string())?;
        let w = self
            .store
            .workspace(&name)
            .await
            .map_err(|e| e.to_string())?;
        let port = w
            .spec
            .health
            .as_ref()
            .and_then(|h| h.http.as_ref())
            .map(|p| p.port)
            .or_else(|| w.spec.ports.first().map(|p| p.container))
            .ok_or_else(|| {
                format!("workspace {workspace} has no HTTP health probe or port to reach")
            })?;
        let cname = w.container_name();
        let c = self
            .rt
            .inspect(&cname)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("container {cname} does not exist"))?;
        if !c.running {
            return Err(format!("container {cname} is not running"));
        }
        let url = format!("http://{}{path}", super::health::address(&c, port));
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
        Ok(SmokeResponse { status, body })
    }
}

impl<R: ContainerRuntime> SmokeProbe for HttpSmokeProbe<R> {
    fn get<'a>(
        &'a self,
        workspace: &'a str,
        path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SmokeResponse, String>> + Send + 'a>> {
        Box::pin(self.request(workspace, path))
    }
}

/// The daemon's smoke probe: reaches containers through Docker once it is connected.
/// Until then every check fails ("docker is not connected"), so a soak never passes on
/// smoke checks that could not run.
pub struct DockerSmokeProbe {
    docker: crate::runtime::DockerHandle,
    store: Store,
    timeout: Duration,
}

impl DockerSmokeProbe {
    pub fn new(docker: crate::runtime::DockerHandle, store: Store, timeout: Duration) -> Self {
        Self {
            docker,
            store,
            timeout,
        }
    }
}

impl SmokeProbe for DockerSmokeProbe {
    fn get<'a>(
        &'a self,
        workspace: &'a str,
        path: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<SmokeResponse, String>> + Send + 'a>> {
        Box::pin(async move {
            let docker = self
                .docker
                .get()
                .ok_or_else(|| "docker is not connected; smoke check not run".to_owned())?;
            let rt = crate::runtime::DockerRuntime::new(docker.as_ref().clone());
            HttpSmokeProbe::new(rt, self.store.clone(), self.timeout)
                .request(workspace, path)
                .await
        })
    }
}
