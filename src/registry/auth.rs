//! Registry credentials: `[[registries.auth]]` entries, a TOML credentials file and a
//! Docker `config.json`, looked up by registry host. Files readable by everyone are
//! refused (they hold passwords). Nothing here prints a password: [`Credential`] keeps
//! it in a [`Secret`].

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::RegistryError;
use crate::config::{RegistryCredential, RegistrySettings, Secret};

/// A user name and password for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: Secret,
}

/// Credentials by registry host (`host` or `host:port`). The first source naming a
/// registry wins: config entries, then the credentials file, then Docker's config.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    by_registry: HashMap<String, Credential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    #[serde(default)]
    auth: Vec<RegistryCredential>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

fn file_err(path: &Path, message: impl Into<String>) -> RegistryError {
    RegistryError::CredentialsFile {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads a file holding secrets, refusing it when anyone may read it.
fn read_private(path: &Path) -> Result<String, RegistryError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o004 != 0 {
            return Err(file_err(
                path,
                format!(
                    "it is readable by every user (mode {:o}); run `chmod o-r` on it",
                    mode & 0o777
                ),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/` → `host:5000`.
fn normalise_host(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        h => h.to_owned(),
    }
}

impl Credentials {
    /// Loads every configured source. A missing or world-readable file, or one that does
    /// not parse, is an error naming the file (never its contents).
    pub fn load(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        let mut creds = Self::default();
        for a in &settings.auth {
            creds.add(&a.registry, &a.username, &a.password);
        }
        if let Some(path) = &settings.credentials_file {
            let text = read_private(path)?;
            let file: CredentialsFile = toml::from_str(&text).map_err(|e| {
                file_err(
                    path,
                    format!("not a valid [[auth]] TOML file: {}", e.message()),
                )
            })?;
            for (i, a) in file.auth.iter().enumerate() {
                if a.registry.is_empty() || a.registry.contains('/') {
                    return Err(file_err(
                        path,
                        format!("auth[{i}].registry: expected `host` or `host:port`"),
                    ));
                }
                creds.add(&a.registry, &a.username, &a.password);
            }
        }
        if let Some(path) = &settings.docker_config {
            let text = read_private(path)?;
            let config: DockerConfig = serde_json::from_str(&text).map_err(|e| {
                file_err(
                    path,
                    format!("not a Docker config.json (line {})", e.line()),
                )
            })?;
            for (key, entry) in &config.auths {
                let (user, pass) = match (&entry.username, &entry.password, &entry.auth) {
                    (Some(u), Some(p), _) => (u.clone(), p.clone()),
                    (_, _, Some(b64)) => {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .map_err(|_| {
                                file_err(path, format!("auths.{key}.auth is not base64"))
                            })?;
                        let raw = String::from_utf8(raw).map_err(|_| {
                            file_err(path, format!("auths.{key}.auth is not UTF-8"))
                        })?;
                        let Some((u, p)) = raw.split_once(':') else {
                            return Err(file_err(
                                path,
                                format!("auths.{key}.auth is not `user:password`"),
                            ));
                        };
                        (u.to_owned(), p.to_owned())
                    }
                    // Entries served by a credential helper carry nothing here.
                    _ => continue,
                };
                creds.add(&normalise_host(key), &user, &Secret::new(pass));
            }
        }
        Ok(creds)
    }

    fn add(&mut self, registry: &str, username: &str, password: &Secret) {
        self.by_registry
            .entry(registry.to_owned())
            .or_insert_with(|| Credential {
                username: username.to_owned(),
                password: password.clone(),
            });
    }

    pub fn get(&self, registry: &str) -> Option<&Credential> {
        self.by_registry.get(registry)
    }

    /// Registries with credentials (for logs: names only).
    pub fn registries(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_registry.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(mode: u32, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        f
    }

    #[test]
    fn config_file_and_docker_config_combine_first_wins() {
        let file = write(
            0o600,
            "[[auth]]\nregistry = \"reg.example:5000\"\nusername = \"a\"\npassword = \"pa\"\n",
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("dock:pd");
        let docker = write(
            0o600,
            &format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{b64}"}},
                    "reg.example:5000": {{"auth": "{b64}"}}, "helper.example": {{}}}}}}"#
            ),
        );
        let settings = RegistrySettings {
            auth: vec![RegistryCredential {
                registry: "cfg.example".into(),
                username: "c".into(),
                password: Secret::new("pc"),
            }],
            credentials_file: Some(file.path().to_owned()),
            docker_config: Some(docker.path().to_owned()),
            ..RegistrySettings::default()
        };
        let c = Credentials::load(&settings).unwrap();
        assert_eq!(c.get("cfg.example").unwrap().username, "c");
        assert_eq!(c.get("reg.example:5000").unwrap().username, "a");
        let hub = c.get("docker.io").unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.expose()),
            ("dock", "pd")
        );
        assert!(c.get("helper.example").is_none());
        assert!(!format!("{c:?}").contains("pd"), "passwords are redacted");
    }

    #[test]
    fn registry_secrets_are_redacted_in_config_output() {
        let s = crate::config::load_from_str(
            "[registries]\nwebhook_token = \"hook-token-0123456789\"\n\
             [[registries.auth]]\nregistry = \"r.example\"\nusername = \"u\"\n\
             password = \"registry-password\"\n",
            Vec::new(),
        )
        .unwrap();
        let shown = toml::to_string(&s).unwrap() + &format!("{s:?}");
        assert!(!shown.contains("hook-token-0123456789"), "{shown}");
        assert!(!shown.contains("registry-password"), "{shown}");
        assert_eq!(s.registries.auth[0].password.expose(), "registry-password");
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_credentials_are_refused() {
        let file = write(
            0o644,
            "[[auth]]\nregistry = \"r\"\nusername = \"u\"\npassword = \"secretpw\"\n",
        );
        let settings = RegistrySettings {
            credentials_file: Some(file.path().to_owned()),
            ..RegistrySettings::default()
        };
        let e = Credentials::load(&settings).unwrap_err().to_string();
        assert!(e.contains("readable by every user"), "{e}");
        assert!(e.contains(&file.path().display().to_string()), "{e}");
        assert!(!e.contains("secretpw"), "{e}");
    }

    #[test]
    fn bad_files_are_named_without_their_contents() {
        let file = write(
            0o600,
            "[[auth]]\nregistry = \"r/x\"\nusername = \"u\"\npassword = \"secretpw\"\n",
        );
        let settings = RegistrySettings {
            credentials_file: Some(file.path().to_owned()),
            ..RegistrySettings::default()
        };
        let e = Credentials::load(&settings).unwrap_err().to_string();
        assert!(e.contains("auth[0].registry"), "{e}");
        assert!(!e.contains("secretpw"), "{e}");
        let missing = RegistrySettings {
            docker_config: Some("/nonexistent/config.json".into()),
            ..RegistrySettings::default()
        };
        let e = Credentials::load(&missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/config.json"), "{e}");
    }
}
