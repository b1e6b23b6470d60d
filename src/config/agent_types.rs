//! `[agent]`: which Docker host this process converges. `sluice run` converges its
//! `host` in-process (the single-host default: one process does everything) unless
//! `in_process = false` (a control plane whose hosts each run `sluice agent`);
//! `sluice agent` converges only `host`, authenticated by the token `sluice host add`
//! printed for it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;
use crate::domain::HostName;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSettings {
    /// The host's name in the fleet (`hosts.name`, `workspaces.host`).
    pub host: HostName,
    /// `sluice run` also converges `host` (false: control plane only).
    pub in_process: bool,
    /// How many workspaces the host may run (0: not limited). Reported with every
    /// heartbeat; a workspace is not placed on a host that is full.
    pub capacity: u32,
    /// How often the agent records that it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// `sluice agent` only: the host's token (prefer `token_file`).
    pub token: Option<Secret>,
    /// `sluice agent` only: a file holding the host's token.
    pub token_file: Option<PathBuf>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            host: HostName::local(),
            in_process: true,
            capacity: 0,
            heartbeat_interval: Duration::from_secs(5),
            token: None,
            token_file: None,
        }
    }
}

/// Bounds of `agent.heartbeat_interval`.
pub const HEARTBEAT_MIN: Duration = Duration::from_millis(200);
pub const HEARTBEAT_MAX: Duration = Duration::from_secs(60);

impl AgentSettings {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(HEARTBEAT_MIN..=HEARTBEAT_MAX).contains(&self.heartbeat_interval) {
            return Err((
                "agent.heartbeat_interval",
                format!(
                    "must be between {} and {}",
                    humantime::format_duration(HEARTBEAT_MIN),
                    humantime::format_duration(HEARTBEAT_MAX)
                ),
            ));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err((
                "agent.token_file",
                "set either agent.token or agent.token_file, not both".to_owned(),
            ));
        }
        Ok(())
    }
}
