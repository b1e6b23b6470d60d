//! The distribution API's HTTP vocabulary: the manifest media types sluice accepts, the
//! host an API lives on, a response's outcome label for metrics, and `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

use crate::config::Secret;

pub(super) const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(&value.replace("GMT", "+0000")).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The host the API lives on (Docker Hub's is not `docker.io`).
pub(super) fn api_host(registry: &str) -> &str {
    if registry == crate::domain::DEFAULT_REGISTRY {
        "registry-1.docker.io"
    } else {
        registry
    }
}

pub(super) fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        401 | 403 => "unauthorized",
        404 => "not_found",
        429 => "rate_limited",
        _ => "error",
    }
}

/// How a request to one repository is authorised once the registry asked.
#[derive(Clone)]
pub(super) enum Authorization {
    Basic(String, Secret),
    Bearer(Secret),
}
