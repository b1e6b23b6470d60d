//! The traffic switch of a start-first update (`[router]`): tells the proxy in front of a
//! workspace which container now serves it. `file` writes the workspace's upstream file
//! atomically (a temporary file beside it, synced, then renamed over it: a proxy never
//! reads half a file) and runs the reload command; `webhook` POSTs the route and wants a
//! 2xx. Both are idempotent: routing to the same container twice changes nothing. The
//! webhook URL is a secret and never logged; errors name only its host.
//!
//! A container can get another address without sluice recreating it (Docker restarts it
//! after a crash or a daemon restart, an operator reconnects its network). Every pass
//! follows the running container's address ([`Router::follow`]): the route is sent again
//! only when it differs from the last one this process sent, so the proxy never keeps
//! pointing at an address that another container may take next.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::config::{RouterKind, RouterSettings};
use crate::domain::spec::WorkspaceSpec;

/// The container port a route points at: the health probe's, else the first mapped one.
pub fn route_port(spec: &WorkspaceSpec) -> Option<u16> {
    let h = spec.health.as_ref();
    h.and_then(|h| h.http.as_ref().map(|p| p.port))
        .or_else(|| h.and_then(|h| h.tcp.as_ref().map(|p| p.port)))
        .or_else(|| spec.ports.first().map(|p| p.container))
}

/// Where a workspace's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Route<'a> {
    pub workspace: &'a str,
    pub container: &'a str,
    /// The container's address on its network.
    pub address: &'a str,
    pub port: u16,
    pub digest: &'a str,
}

#[derive(Clone, Debug)]
pub struct Router {
    settings: RouterSettings,
    http: reqwest::Client,
    /// The last route sent for each workspace (container, address, port).
    sent: Arc<Mutex<HashMap<String, Sent>>>,
}

impl Router {
    pub fn new(settings: RouterSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            sent: Arc::default(),
        }
    }

    /// How long the old container keeps running after the switch.
    pub fn drain(&self) -> std::time::Duration {
        self.settings.drain
    }

    /// True when a route has somewhere to go besides the network aliases.
    pub fn is_configured(&self) -> bool {
        self.settings.kind != RouterKind::None
    }

    /// The upstream file of `workspace` (`file` routers).
    pub fn file_of(&self, workspace: &str) -> Option<PathBuf> {
        let f = self.settings.file.as_ref()?;
        Some(PathBuf::from(
            f.to_string_lossy().replace("{workspace}", workspace),
        ))
    }

    /// Sends `route` to the proxy; the error says what failed.
    pub async fn switch(&self, route: &Route<'_>) -> Result<(), String> {
        let sent = match self.settings.kind {
            RouterKind::None => Ok(()),
            RouterKind::File => self.write_file(route).await,
            RouterKind::Webhook => self.post(route).await,
        };
        let mut memo = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        match sent {
            Ok(()) => memo.insert(route.workspace.to_owned(), key(route)),
            // Unknown now: the next `follow` sends it again.
            Err(_) => memo.remove(route.workspace),
        };
        sent
    }

    /// Sends `route` unless it is the last one sent for its workspace; true when sent.
    pub async fn follow(&self, route: &Route<'_>) -> Result<bool, String> {
        if !self.is_configured() {
            return Ok(false);
        }
        let same = {
            let memo = self.sent.lock().unwrap_or_else(|p| p.into_inner());
            memo.get(route.workspace) == Some(&key(route))
        };
        if same {
            return Ok(false);
        }
        self.switch(route).await.map(|()| true)
    }

    async fn write_file(&self, r: &Route<'_>) -> Result<(), String> {
        let path = self.file_of(r.workspace).ok_or("router.file is not set")?;
        let text = self
            .settings
            .template
            .replace("{workspace}", r.workspace)
            .replace("{container}", r.container)
            .replace("{address}", r.address)
            .replace("{port}", &r.port.to_string());
        if tokio::fs::read_to_string(&path).await.ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let tmp = path.with_extension("sluice-tmp");
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, text.as_bytes()).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write
            .await
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        self.reload().await
    }

    async fn reload(&self) -> Result<(), String> {
        let Some((program, args)) = self.settings.reload.split_first() else {
            return Ok(());
        };
        let run = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(self.settings.timeout, run)
            .await
            .map_err(|_| format!("reload `{program}` took longer than router.timeout"))?
            .map_err(|e| format!("reload `{program}`: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "reload `{program}` exited with {}: {}",
                out.status,
                stderr.trim().chars().take(400).collect::<String>()
            ))
        }
    }

    async fn post(&self, r: &Route<'_>) -> Result<(), String> {
        let url = self.settings.url.as_ref().ok_or("router.url is not set")?;
        let resp = self
            .http
            .post(url.expose().clone())
            .json(r)
            .send()
            .await
            .map_err(|e| format!("route webhook {}: {}", url.host(), e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "route webhook {} answered {}",
                url.host(),
                resp.status()
            ))
        }
    }
}

/// A route as remembered: container, address, port.
type Sent = (String, String, u16);

fn key(r: &Route<'_>) -> Sent {
    (r.container.to_owned(), r.address.to_owned(), r.port)
}
