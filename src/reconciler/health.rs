//! The health gate: after a start, the container must pass its check and keep passing it
//! for `min_healthy_time`, all before `healthy_deadline`. The check is, in order of
//! preference: the workspace's HTTP probe (container IP on its network, else the
//! published host port), the image's HEALTHCHECK, or simply "still running".

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::spec::{HealthProbe, HttpProbe};
use crate::runtime::{ContainerInfo, ContainerRuntime};

#[derive(Clone, Copy, Debug)]
pub struct GateConfig {
    pub min_healthy: Duration,
    pub deadline: Duration,
    pub poll: Duration,
}

/// What the gate checks, from the workspace's `health`.
#[derive(Clone, Copy, Debug)]
pub enum Probe<'a> {
    Http(&'a HttpProbe),
    Tcp(u16),
    /// A command run inside the container must exit 0.
    Command(&'a [String]),
    /// The image's HEALTHCHECK must report healthy.
    Image,
    /// Still running, and healthy by the image's HEALTHCHECK if it has one.
    Running,
}

impl<'a> Probe<'a> {
    pub fn of(health: Option<&'a HealthProbe>) -> Self {
        match health {
            Some(HealthProbe { http: Some(p), .. }) => Probe::Http(p),
            Some(HealthProbe { tcp: Some(t), .. }) => Probe::Tcp(t.port),
            Some(HealthProbe {
                command: Some(c), ..
            }) => Probe::Command(c),
            Some(HealthProbe { image: true, .. }) => Probe::Image,
            _ => Probe::Running,
        }
    }
}

enum Check {
    Pass,
    Wait(String),
    Fail(String),
}

/// `host:port` that reaches `port` of the container: its IP on its network, else the
/// published host port (also used by the smoke-check adapter).
pub fn address(c: &ContainerInfo, port: u16) -> String {
    match (&c.ip, c.host_ports.get(&port)) {
        (Some(ip), _) => format!("{ip}:{port}"),
        (None, Some(hp)) => format!("127.0.0.1:{hp}"),
        // Host networking: the port is the host's own.
        (None, None) => format!("127.0.0.1:{port}"),
    }
}

async fn probe_http(http: &reqwest::Client, c: &ContainerInfo, p: &HttpProbe) -> Check {
    let url = format!("http://{}{}", address(c, p.port), p.path);
    match http.get(&url).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            let ok = p.status.map_or(r.status().is_success(), |s| s == code);
            if ok {
                Check::Pass
            } else {
                Check::Wait(format!("{url} answered {code}"))
            }
        }
        Err(e) => Check::Wait(format!("{url}: {e}")),
    }
}

async fn probe_tcp(c: &ContainerInfo, port: u16) -> Check {
    let addr = address(c, port);
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => Check::Pass,
        Ok(Err(e)) => Check::Wait(format!("tcp {addr}: {e}")),
        Err(_) => Check::Wait(format!("tcp {addr}: no answer within 2s")),
    }
}

async fn check<R: ContainerRuntime>(
    rt: &R,
    http: &reqwest::Client,
    name: &str,
    probe: Probe<'_>,
    restarts: &mut Option<i64>,
) -> Check {
    let c = match rt.inspect(name).await {
        Ok(Some(c)) => c,
        Ok(None) => return Check::Fail("container disappeared".into()),
        Err(e) => return Check::Wait(e.to_string()),
    };
    let first = *restarts.get_or_insert(c.restart_count);
    if c.restart_count > first {
        return Check::Fail(format!(
            "container restarted {} times (crashing)",
            c.restart_count - first
        ));
    }
    if !c.running {
        return Check::Fail(format!(
            "container exited (code {})",
            c.exit_code.unwrap_or(-1)
        ));
    }
    match probe {
        Probe::Http(p) => return probe_http(http, &c, p).await,
        Probe::Tcp(port) => return probe_tcp(&c, port).await,
        Probe::Command(cmd) => {
            return match rt.exec(name, cmd, Duration::from_secs(5)).await {
                Ok(Some(0)) => Check::Pass,
                Ok(Some(code)) => Check::Wait(format!("health command exited {code}")),
                Ok(None) => Check::Wait("health command did not exit within 5s".into()),
                Err(e) => Check::Wait(format!("health command: {e}")),
            };
        }
        Probe::Image => {
            return match c.health.as_deref() {
                Some("healthy") => Check::Pass,
                Some("unhealthy") => Check::Fail("image healthcheck reports unhealthy".into()),
                Some(other) => Check::Wait(format!("image healthcheck is {other}")),
                None => Check::Fail(
                    "health.image: the image declares no HEALTHCHECK to wait for".into(),
                ),
            };
        }
        Probe::Running => {}
    }
    match c.health.as_deref() {
        Some("healthy") | None => Check::Pass,
        Some("unhealthy") => Check::Fail("image healthcheck reports unhealthy".into()),
        Some(other) => Check::Wait(format!("image healthcheck is {other}")),
    }
}

/// Ok when healthy long enough in time; Err with the last reason otherwise.
pub async fn gate<R: ContainerRuntime>(
    rt: &R,
    http: &reqwest::Client,
    name: &str,
    probe: Probe<'_>,
    cfg: GateConfig,
) -> Result<(), String> {
    let start = Instant::now();
    let mut since: Option<Instant> = None;
    let mut last = String::from("never checked");
    let mut restarts = None;
    loop {
        let now = Instant::now();
        if now - start > cfg.deadline {
            return Err(format!(
                "not healthy for {:?} within {:?}: {last}",
                cfg.min_healthy, cfg.deadline
            ));
        }
        match check(rt, http, name, probe, &mut restarts).await {
            Check::Pass => {
                let s = *since.get_or_insert(now);
                if now - s >= cfg.min_healthy {
                    return Ok(());
                }
            }
            Check::Wait(why) => {
                since = None;
                last = why;
            }
            Check::Fail(why) => return Err(why),
        }
        tokio::time::sleep(cfg.poll).await;
    }
}
