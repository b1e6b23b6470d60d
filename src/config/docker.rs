//! How `[docker]` says the engine is reached, decided in one place for configuration
//! validation and for `runtime::connect`.
//!
//! Whoever can call the Docker API is root on that host, so a remote engine (`tcp://`,
//! `https://`) is reached over TLS with a client certificate (`dockerd --tlsverify`), and
//! plain HTTP only when `allow_insecure_tcp = true` says so. TLS files next to a
//! `unix://` host (or no host) are refused rather than ignored: they would suggest a
//! protection that the socket does not have.

use std::path::{Path, PathBuf};

use super::{ConfigError, DockerSettings};

/// How sluice talks to the Docker engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerTransport<'a> {
    /// Docker's local defaults: `DOCKER_HOST` when it is a `unix://` path, else
    /// `/var/run/docker.sock`.
    LocalDefaults,
    /// A unix socket, `unix:///path`.
    Unix(&'a str),
    /// HTTPS to `host` (`tcp://` or `https://`), the engine verified against `ca`, sluice
    /// presenting `cert` and `key`.
    Tls {
        host: &'a str,
        ca: &'a Path,
        cert: &'a Path,
        key: &'a Path,
    },
    /// Plain HTTP to a remote engine (`allow_insecure_tcp = true`).
    InsecureTcp(&'a str),
}

const TLS_KEYS: [&str; 3] = ["docker.tls_ca", "docker.tls_cert", "docker.tls_key"];

fn value(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_owned(),
        message: message.into(),
    }
}

impl DockerSettings {
    fn tls_paths(&self) -> [(&'static str, Option<&PathBuf>); 3] {
        [
            (TLS_KEYS[0], self.tls_ca.as_ref()),
            (TLS_KEYS[1], self.tls_cert.as_ref()),
            (TLS_KEYS[2], self.tls_key.as_ref()),
        ]
    }

    /// The transport these settings ask for, or the key at fault. Reads no file.
    pub fn transport(&self) -> Result<DockerTransport<'_>, ConfigError> {
        let first_tls_key = self
            .tls_paths()
            .into_iter()
            .find(|(_, p)| p.is_some())
            .map(|(k, _)| k);
        let local_with_tls = |key| {
            value(
                key,
                "only used with a remote docker.host (`tcp://` or `https://`); \
                 the local socket takes no TLS files",
            )
        };
        let Some(host) = self.host.as_deref().filter(|h| !h.is_empty()) else {
            return match first_tls_key {
                Some(k) => Err(local_with_tls(k)),
                None => Ok(DockerTransport::LocalDefaults),
            };
        };
        let scheme = match host.split_once("://") {
            Some((s @ ("unix" | "tcp" | "https" | "http"), rest)) if !rest.is_empty() => s,
            _ => {
                return Err(value(
                    "docker.host",
                    "expected `unix:///path`, `tcp://host:port` or `https://host:port`",
                ));
            }
        };
        if scheme == "unix" {
            return match first_tls_key {
                Some(k) => Err(local_with_tls(k)),
                None => Ok(DockerTransport::Unix(host)),
            };
        }
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                if scheme == "http" {
                    return Err(value(
                        "docker.host",
                        "`http://` is plain HTTP; use `tcp://` or `https://` with TLS",
                    ));
                }
                if self.allow_insecure_tcp {
                    return Err(value(
                        "docker.allow_insecure_tcp",
                        "contradicts docker.tls_ca, docker.tls_cert and docker.tls_key: \
                         set the TLS files or the opt-out, not both",
                    ));
                }
                Ok(DockerTransport::Tls {
                    host,
                    ca,
                    cert,
                    key,
                })
            }
            (None, None, None) if self.allow_insecure_tcp && scheme != "https" => {
                Ok(DockerTransport::InsecureTcp(host))
            }
            (None, None, None) => Err(value(
                "docker.tls_ca",
                format!(
                    "a remote docker.host (`{scheme}://`) needs docker.tls_ca, docker.tls_cert \
                     and docker.tls_key{}",
                    if scheme == "https" {
                        ""
                    } else {
                        " (or docker.allow_insecure_tcp = true for plain HTTP)"
                    }
                ),
            )),
            _ => {
                let missing = self
                    .tls_paths()
                    .into_iter()
                    .find(|(_, p)| p.is_none())
                    .map_or(TLS_KEYS[0], |(k, _)| k);
                Err(value(
                    missing,
                    "docker.tls_ca, docker.tls_cert and docker.tls_key go together: set all three",
                ))
            }
        }
    }

    /// [`Self::transport`], then every TLS file it names must be readable.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let DockerTransport::Tls { .. } = self.transport()? {
            for (key, path) in self.tls_paths() {
                if let Some(path) = path {
                    std::fs::read(path)
                        .map_err(|e| value(key, format!("cannot read {}: {e}", path.display())))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: Option<&str>, tls: [Option<&str>; 3], insecure: bool) -> DockerSettings {
        let p = |s: Option<&str>| s.map(PathBuf::from);
        DockerSettings {
            host: host.map(Into::into),
            tls_ca: p(tls[0]),
            tls_cert: p(tls[1]),
            tls_key: p(tls[2]),
            allow_insecure_tcp: insecure,
            ..DockerSettings::default()
        }
    }

    const ALL: [Option<&str>; 3] = [Some("/c/ca.pem"), Some("/c/cert.pem"), Some("/c/key.pem")];
    const NONE: [Option<&str>; 3] = [None, None, None];

    fn refused_key(s: &DockerSettings) -> String {
        match s.transport() {
            Err(ConfigError::Value { key, .. }) => key,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn local_and_unix_hosts_need_nothing() {
        assert_eq!(
            settings(None, NONE, false).transport().unwrap(),
            DockerTransport::LocalDefaults
        );
        assert_eq!(
            settings(Some("unix:///run/d.sock"), NONE, true)
                .transport()
                .unwrap(),
            DockerTransport::Unix("unix:///run/d.sock"),
            "the opt-out means nothing for a socket"
        );
    }

    #[test]
    fn a_remote_host_needs_tls_or_the_opt_out() {
        let tls = settings(Some("tcp://10.0.0.5:2376"), ALL, false);
        assert!(matches!(
            tls.transport().unwrap(),
            DockerTransport::Tls {
                host: "tcp://10.0.0.5:2376",
                ..
            }
        ));
        assert!(matches!(
            settings(Some("https://d.example:2376"), ALL, false).transport(),
            Ok(DockerTransport::Tls { .. })
        ));
        assert_eq!(
            settings(Some("tcp://10.0.0.5:2375"), NONE, true)
                .transport()
                .unwrap(),
            DockerTransport::InsecureTcp("tcp://10.0.0.5:2375")
        );
        for s in [
            settings(Some("tcp://10.0.0.5:2375"), NONE, false),
            settings(Some("http://10.0.0.5:2375"), NONE, false),
            settings(Some("https://d.example:2376"), NONE, true),
        ] {
            assert_eq!(refused_key(&s), "docker.tls_ca", "{s:?}");
        }
    }

    #[test]
    fn incomplete_or_contradictory_tls_names_the_key() {
        let s = settings(
            Some("tcp://h:2376"),
            [Some("/c/ca.pem"), None, Some("/c/key.pem")],
            false,
        );
        assert_eq!(refused_key(&s), "docker.tls_cert");
        assert_eq!(
            refused_key(&settings(Some("tcp://h:2376"), ALL, true)),
            "docker.allow_insecure_tcp"
        );
        assert_eq!(
            refused_key(&settings(Some("http://h:2376"), ALL, false)),
            "docker.host"
        );
        assert_eq!(
            refused_key(&settings(Some("unix:///run/d.sock"), ALL, false)),
            "docker.tls_ca"
        );
        assert_eq!(
            refused_key(&settings(None, [None, None, Some("/k")], false)),
            "docker.tls_key"
        );
        assert_eq!(
            refused_key(&settings(Some("ssh://h"), NONE, false)),
            "docker.host"
        );
    }
}
