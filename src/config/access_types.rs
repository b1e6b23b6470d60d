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

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    /// Image reference prefixes that may be tracked, probed and pulled; empty = all.
    pub allow: Vec<String>,
    /// Absolute path of a changelog file inside each release's image (a symlink there is
    /// followed inside the image); empty: no file is read, only the label changelog.
    pub changelog_file: String,
    /// Bytes of the changelog file kept; a larger file is cut there and kept as text.
    pub changelog_file_max_bytes: usize,
    /// Pull a release's image by digest to read its changelog file as soon as the release
    /// is found. `false`: read it only once the image is on the engine (a workspace's
    /// update pulled it).
    pub changelog_pull: bool,
}

impl ImageSettings {
    /// Most a changelog file may be configured to keep.
    pub const MAX_CHANGELOG_FILE_BYTES: usize = 1024 * 1024;

    /// The first invalid setting: its key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.changelog_file.is_empty() && !self.changelog_file.starts_with('/') {
            return Err((
                "images.changelog_file",
                "expected an absolute path inside the image, or empty".to_owned(),
            ));
        }
        if self.changelog_file_max_bytes == 0
            || self.changelog_file_max_bytes > Self::MAX_CHANGELOG_FILE_BYTES
        {
            return Err((
                "images.changelog_file_max_bytes",
                format!("expected 1 to {}", Self::MAX_CHANGELOG_FILE_BYTES),
            ));
        }
        Ok(())
    }
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            changelog_file: "/app/changelogs/latest.json".to_owned(),
            changelog_file_max_bytes: 64 * 1024,
            changelog_pull: true,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::ImageSettings;

    #[test]
    fn the_changelog_file_is_an_absolute_path_and_its_limit_is_bounded() {
        let ok = ImageSettings::default();
        assert_eq!(ok.validate(), Ok(()));
        let off = ImageSettings {
            changelog_file: String::new(),
            ..ImageSettings::default()
        };
        assert_eq!(off.validate(), Ok(()));
        let relative = ImageSettings {
            changelog_file: "app/changelog.json".to_owned(),
            ..ImageSettings::default()
        };
        assert_eq!(
            relative.validate().map_err(|e| e.0),
            Err("images.changelog_file")
        );
        for bytes in [0, ImageSettings::MAX_CHANGELOG_FILE_BYTES + 1] {
            let s = ImageSettings {
                changelog_file_max_bytes: bytes,
                ..ImageSettings::default()
            };
            assert_eq!(
                s.validate().map_err(|e| e.0),
                Err("images.changelog_file_max_bytes")
            );
        }
    }
}
