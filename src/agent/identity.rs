//! Which host an agent is, proven at start before it touches Docker: the host must be
//! registered, `[agent] token` (or `token_file`) must be the token `sluice host add`
//! printed for it, and no other agent may have heartbeated for it recently. Each
//! refusal is one line naming what to fix.

use chrono::{DateTime, Utc};

use crate::config::AgentSettings;
use crate::domain::{HostName, HostState, host_state};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "agent.token: `sluice agent` needs the token `sluice host add {0}` printed (agent.token or agent.token_file)"
    )]
    NoToken(HostName),
    #[error("agent.token_file: cannot read {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "agent.host: host `{0}` is not registered; run `sluice host add {0}` on the control plane"
    )]
    Unregistered(HostName),
    #[error(
        "agent.host: host `{0}` has no agent token (it is the built-in host of `sluice run`); register agent hosts with `sluice host add`"
    )]
    Builtin(HostName),
    #[error(
        "agent.token: the token is not the one registered for host `{0}` (wrong host name or another host's token)"
    )]
    WrongToken(HostName),
    #[error(
        "agent.host: host `{host}` already has a live agent (instance `{instance}`, last heartbeat {age_s:.1} s ago); stop it first"
    )]
    Taken {
        host: HostName,
        instance: String,
        age_s: f64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The token from `agent.token` or `agent.token_file` (trimmed).
pub fn configured_token(s: &AgentSettings) -> Result<String, IdentityError> {
    if let Some(t) = &s.token {
        return Ok(t.expose().trim().to_owned());
    }
    if let Some(path) = &s.token_file {
        let raw = std::fs::read_to_string(path).map_err(|source| IdentityError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        return Ok(raw.trim().to_owned());
    }
    Err(IdentityError::NoToken(s.host.clone()))
}

/// Refuses an agent that is not who it says (see the module docs). `instance` is this
/// agent's name: a heartbeat of its own (a restart) does not count as another agent.
pub async fn check(
    store: &Store,
    s: &AgentSettings,
    instance: &str,
    now: DateTime<Utc>,
    down_after: chrono::Duration,
) -> Result<(), IdentityError> {
    let token = configured_token(s)?;
    let host = &s.host;
    let stored = match store.host_token_sha256(host).await {
        Ok(t) => t,
        Err(StoreError::NotFound { .. }) => return Err(IdentityError::Unregistered(host.clone())),
        Err(e) => return Err(e.into()),
    };
    let Some(stored) = stored else {
        return Err(IdentityError::Builtin(host.clone()));
    };
    if !constant_time_eq(
        crate::api::hosts::token_sha256(&token).as_bytes(),
        stored.as_bytes(),
    ) {
        return Err(IdentityError::WrongToken(host.clone()));
    }
    let row = store.host(host).await?;
    let live = host_state(row.schedule, row.heartbeat_at, now, down_after) != HostState::Down
        && row.heartbeat_at.is_some();
    if let (true, Some(other), Some(at)) = (live, row.agent_instance, row.heartbeat_at)
        && other != instance
    {
        #[allow(clippy::cast_precision_loss)] // reason: ages in ms are far below 2^52
        let age_s = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
        return Err(IdentityError::Taken {
            host: host.clone(),
            instance: other,
            age_s,
        });
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
