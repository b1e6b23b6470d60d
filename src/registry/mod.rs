//! The registry seam: resolve a tracked `repo:tag` to the manifest digest Docker would
//! record in `RepoDigests`, cheaply (a HEAD request), and read an image's changelog
//! without running it.
//!
//! Architecture invariant: nothing here touches the store or workspaces; the watcher
//! decides what a digest means. Secrets (passwords, tokens) never reach a log line or an
//! error message: errors name the registry and what went wrong, never a credential.

mod auth;
#[cfg(any(test, feature = "test-support"))]
pub mod fake;
mod http;
mod metrics;
mod oci;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::{Credential, Credentials};
#[cfg(any(test, feature = "test-support"))]
pub use fake::FakeRegistry;
pub use http::parse_retry_after;
pub use metrics::RegistryMetrics;
pub use oci::OciRegistry;

use crate::domain::{Digest, ImageRef};

/// Which request found the digest. Registries that rate-limit count a GET of a manifest
/// against the quota but not a HEAD, so the two are counted apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `HEAD /v2/<repo>/manifests/<tag>` answered with `Docker-Content-Digest`.
    Head,
    /// The registry sent no digest on HEAD; the manifest was fetched and hashed.
    Get,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Head => "head",
            RequestKind::Get => "get",
        }
    }
}

/// A tag resolved to a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest (or index) digest: what Docker records in `RepoDigests`.
    pub digest: Digest,
    pub via: RequestKind,
}

/// Why a registry request failed. No variant carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} is rate limiting (retry after {retry_after:?})")]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "registry {registry} requires authentication and no credentials are configured for it \
         (add [[registries.auth]], a credentials_file or a docker_config entry)"
    )]
    NoCredentials { registry: String },
    #[error("registry {registry} refused the configured credentials for {image}")]
    CredentialsRefused { registry: String, image: String },
    #[error("image {image} not found in its registry (no such repository or tag)")]
    NotFound { image: String },
    #[error("registry {registry} answered {status} for {image}")]
    Status {
        registry: String,
        image: String,
        status: u16,
    },
    #[error("registry {registry} sent an invalid digest for {image}: {message}")]
    BadDigest {
        registry: String,
        image: String,
        message: String,
    },
    #[error("cannot read the changelog of {image}: {message}")]
    Changelog { image: String, message: String },
    #[error("cannot load registry credentials from {path}: {message}")]
    CredentialsFile { path: PathBuf, message: String },
}

impl RegistryError {
    /// The `Retry-After` a rate-limited registry asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable word for the `outcome` metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::RateLimited { .. } => "rate_limited",
            RegistryError::NoCredentials { .. } | RegistryError::CredentialsRefused { .. } => {
                "unauthorized"
            }
            RegistryError::NotFound { .. } => "not_found",
            _ => "error",
        }
    }
}

/// What the watcher needs from a registry. Implemented by [`OciRegistry`] (the real
/// distribution API) and `FakeRegistry` (in memory, for unit tests and scale benches).
pub trait Registry: Send + Sync + 'static {
    /// Resolves a tracked reference (`repo:tag`) to its current manifest digest.
    fn resolve(
        &self,
        image: &ImageRef,
    ) -> impl Future<Output = Result<Resolved, RegistryError>> + Send;

    /// The image's changelog (`org.opencontainers.image.description`, from the manifest's
    /// annotations or the image config's labels), read through the blob API.
    fn changelog(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send;
}

impl<R: Registry> Registry for std::sync::Arc<R> {
    fn resolve(
        &self,
        image: &ImageRef,
    ) -> impl Future<Output = Result<Resolved, RegistryError>> + Send {
        (**self).resolve(image)
    }
    fn changelog(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<String>, RegistryError>> + Send {
        (**self).changelog(image, digest)
    }
}

/// The label or annotation read as a release's changelog.
pub const CHANGELOG_KEY: &str = "org.opencontainers.image.description";
