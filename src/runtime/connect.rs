//! Connecting to the configured Docker engine: the local socket, a unix socket, or a
//! remote engine over TLS with a client certificate. A remote engine is spoken to in the
//! clear only when `docker.allow_insecure_tcp = true` says so (see
//! [`DockerSettings::transport`]).
//!
//! TLS uses rustls with the aws-lc-rs provider, the one the registry and webhook clients
//! already use. The engine's certificate is verified against `docker.tls_ca` and, as
//! bollard builds its trust store, the system's roots. The client certificate and key are
//! read again at each connection (bollard keeps none idle), so a renewed client
//! certificate takes effect without a restart; the CA is read once, here.

use std::path::Path;

use bollard::{API_DEFAULT_VERSION, Docker};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::RuntimeError;
use crate::config::{DockerSettings, DockerTransport};

/// Connects to the configured Docker host and negotiates the API version.
pub async fn connect(settings: &DockerSettings) -> Result<Docker, RuntimeError> {
    let timeout = settings.timeout.as_secs().max(1);
    let host = settings
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local defaults".to_owned());
    let transport = settings.transport().map_err(|e| RuntimeError::Refused {
        op: "connect to docker",
        target: host.clone(),
        message: e.to_string(),
    })?;
    let err = |source| RuntimeError::Connect {
        host: host.clone(),
        source,
    };
    let docker = match transport {
        DockerTransport::LocalDefaults => Docker::connect_with_local_defaults().map_err(err)?,
        DockerTransport::Unix(h) => {
            Docker::connect_with_unix(h, timeout, API_DEFAULT_VERSION).map_err(err)?
        }
        DockerTransport::InsecureTcp(h) => {
            Docker::connect_with_http(h, timeout, API_DEFAULT_VERSION).map_err(err)?
        }
        DockerTransport::Tls {
            host: h,
            ca,
            cert,
            key,
        } => {
            check_tls_files(ca, cert, key)?;
            install_crypto_provider();
            Docker::connect_with_ssl(h, key, cert, ca, timeout, API_DEFAULT_VERSION).map_err(err)?
        }
    };
    docker.negotiate_version().await.map_err(err)
}

/// Makes aws-lc-rs the process's rustls provider unless one is installed already.
/// bollard builds its TLS client from the process default; were a second provider ever
/// compiled in (sqlx's PostgreSQL TLS brings ring), rustls could not pick one itself.
fn install_crypto_provider() {
    // An error only says that a provider is installed already: that one is used.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn tls_file_error(path: &Path, message: String) -> RuntimeError {
    RuntimeError::Refused {
        op: "read docker TLS file",
        target: path.display().to_string(),
        message,
    }
}

/// Reads the three PEM files once, so that a missing or malformed file is reported with
/// its path. bollard loads the client key only during the handshake and, when that fails,
/// connects without a certificate: the engine then answers with a bare TLS alert.
fn check_tls_files(ca: &Path, cert: &Path, key: &Path) -> Result<(), RuntimeError> {
    for path in [ca, cert] {
        let pem = std::fs::read(path).map_err(|e| tls_file_error(path, e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_file_error(path, format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(tls_file_error(path, "holds no PEM certificate".to_owned()));
        }
    }
    let pem = std::fs::read(key).map_err(|e| tls_file_error(key, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| tls_file_error(key, format!("holds no PEM private key: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_tls_files_are_named_before_any_connection() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        std::fs::write(&cert, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let settings = DockerSettings {
            host: Some("tcp://127.0.0.1:9".into()),
            tls_ca: Some(ca.clone()),
            tls_cert: Some(cert.clone()),
            tls_key: Some(key.clone()),
            ..DockerSettings::default()
        };
        let e = connect(&settings).await.unwrap_err().to_string();
        assert!(e.contains(&ca.display().to_string()), "{e}");
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[tokio::test]
    async fn a_remote_host_without_tls_is_refused_without_the_opt_out() {
        let settings = DockerSettings {
            host: Some("tcp://127.0.0.1:9".into()),
            ..DockerSettings::default()
        };
        let e = connect(&settings).await.unwrap_err().to_string();
        assert!(e.contains("docker.tls_ca"), "{e}");
    }
}
