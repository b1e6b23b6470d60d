//! The token a client command sends: `SLUICE_TOKEN`, or else the daemon's first-start
//! admin token (`<data dir>/admin.token`, see `crate::api::first_token`), read from the
//! data dir of the same configuration the daemon reads.
//!
//! The file is read only when it can be the token of the daemon called: no tokens are
//! configured, and the server is this configuration's own `[api] listen` or a loopback
//! address. So a `--server` pointing elsewhere is never sent this host's token.

use std::net::IpAddr;

use super::client::ClientError;
use crate::api::{AuthError, first_token};
use crate::config::Settings;

/// The token to send, if any. `env_token` is `SLUICE_TOKEN`; `server_given` is whether
/// `--server` (or `SLUICE_SERVER`) named the server rather than `[api] listen`.
pub fn client_token(
    settings: &Settings,
    env_token: Option<String>,
    server: &str,
    server_given: bool,
) -> Result<Option<String>, ClientError> {
    if let Some(t) = env_token.filter(|t| !t.is_empty()) {
        return Ok(Some(t));
    }
    if first_token::tokens_configured(&settings.auth) || (server_given && !is_loopback(server)) {
        return Ok(None);
    }
    let path = first_token::path(settings);
    match first_token::read(&path) {
        Ok(token) => Ok(Some(token.expose().to_owned())),
        Err(AuthError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(source) => Err(ClientError::LocalToken { source }),
    }
}

/// Whether `server` (`http://HOST:PORT` or `HOST:PORT`) names this machine's loopback.
fn is_loopback(server: &str) -> bool {
    let with_scheme = if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    };
    match url::Url::parse(&with_scheme)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn settings(dir: &std::path::Path) -> Settings {
        let mut s = Settings::default();
        s.data.dir = dir.to_owned();
        s
    }

    #[test]
    fn the_environment_wins_then_the_file_for_a_local_server_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let (token, _) = first_token::load_or_create(&first_token::path(&s)).unwrap();
        let token = Some(token.expose().to_owned());
        let t = |env: Option<&str>, server: &str, given: bool| {
            client_token(&s, env.map(str::to_owned), server, given).unwrap()
        };
        assert_eq!(
            t(Some("from-env"), "http://127.0.0.1:7878", false).as_deref(),
            Some("from-env")
        );
        assert_eq!(t(None, "http://127.0.0.1:7878", false), token);
        assert_eq!(
            t(Some(""), "http://10.1.2.3:7878", false),
            token,
            "[api] listen is this daemon"
        );
        assert_eq!(t(None, "http://127.0.0.2:9000", true), token);
        assert_eq!(t(None, "localhost:7878", true), token);
        assert_eq!(t(None, "http://[::1]:7878", true), token);
        assert_eq!(
            t(None, "https://sluice.example:7878", true),
            None,
            "never sent elsewhere"
        );
        assert_eq!(t(None, "http://10.1.2.3:7878", true), None);
    }

    #[test]
    fn configured_tokens_or_no_file_mean_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        assert_eq!(
            client_token(&s, None, "127.0.0.1:7878", false).unwrap(),
            None
        );
        first_token::load_or_create(&first_token::path(&s)).unwrap();
        s.auth.token_file = Some(dir.path().join("tokens.toml"));
        assert_eq!(
            client_token(&s, None, "127.0.0.1:7878", false).unwrap(),
            None
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        // Unreadable even for root: a directory where the file should be. (Permission
        // denied, as for a user who is not the daemon's, is `tests/it/first_start.rs`.)
        let path = first_token::path(&s);
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = client_token(&s, None, "127.0.0.1:7878", false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("admin.token") && e.contains("SLUICE_TOKEN") && e.contains("user"),
            "{e}"
        );
    }
}
