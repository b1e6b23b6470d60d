//! How sluice reaches and is reached: `[registry]` credentials, `[auth]` tokens, `[images]`
//! allowlist, `[notifications]` webhooks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Secret, WebhookUrl};
use crate::domain::Role;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Registries (`host:port`) reached over plain HTTP. Loopback registries are allowed
    /// plain HTTP when `allow_loopback_http` is true.
    pub insecure: Vec<String>,
    pub allow_loopback_http: bool,
    /// Credentials, one table per registry.
    pub auth: Vec<RegistryCredential>,
    /// A TOML file with more `[[auth]]` entries; refused when world-readable.
    pub credentials_file: Option<PathBuf>,
    /// A Docker `config.json` whose `auths` entries are used.
    pub docker_config: Option<PathBuf>,
    /// Token the registry's push notifications must carry (`Authorization: Bearer …`).
    pub webhook_token: Option<Secret>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            allow_loopback_http: true,
            auth: Vec::new(),
            credentials_file: None,
            docker_config: None,
            webhook_token: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    pub registry: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// API bearer tokens; the name is the actor in the audit trail.
    pub tokens: Vec<ApiToken>,
    /// A TOML file with more `[[tokens]]` entries; refused when world-readable.
    pub token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub token: Secret,
}

/// `[workspaces]`: what a workspace's spec may reach on its host.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceSettings {
    /// Host path prefixes a workspace's `binds` may come from (strictly below one);
    /// empty: no host paths at all. Never `/`; the Docker socket is refused regardless.
    pub allowed_bind_prefixes: Vec<std::path::PathBuf>,
    /// Allows privileged-equivalent `cap_add` (SYS_ADMIN, ALL, ...) and `security_opt`
    /// (seccomp=unconfined, ...).
    pub allow_privileged: bool,
}

impl WorkspaceSettings {
    pub fn policy(&self) -> crate::domain::spec::Policy {
        crate::domain::spec::Policy {
            allowed_bind_prefixes: self.allowed_bind_prefixes.clone(),
            allow_privileged: self.allow_privileged,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    /// Image reference prefixes that may be tracked, probed and pulled; empty = all.
    pub allow: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    pub webhooks: Vec<WebhookSink>,
    /// Notifications waiting per sink; when full, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Extra delivery attempts after a failure (network error or non-2xx).
    pub retries: u32,
    /// Delay before the first retry; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Timeout of one delivery attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How often the audit trail is read for new events.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            queue_capacity: 1024,
            retries: 5,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSink {
    /// Where notifications are posted; a secret (printed as `scheme://host[:port]/<redacted>`).
    pub url: WebhookUrl,
    /// Event kinds to send; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// HMAC-SHA256 key for the signature header.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<String>,
}
