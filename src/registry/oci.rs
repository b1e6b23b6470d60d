//! The real registry: the distribution API over HTTP(S). A probe is one `HEAD` of the
//! tag's manifest, read for `Docker-Content-Digest`; only a registry that sends no digest
//! on HEAD gets a GET (counted as kind `get`). The bearer-token flow and changelog reads
//! go through `oci-client`. Plain HTTP is used only for registries listed in
//! `[registries] insecure`, or on the loopback when `allow_loopback_http` is set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use super::http::{Authorization, MANIFEST_TYPES, api_host, outcome_of, parse_retry_after};
use super::{
    CHANGELOG_KEY, Credential, Credentials, Registry, RegistryError, RegistryMetrics, RequestKind,
    Resolved,
};
use crate::clock::{Clock, SystemClock};
use crate::config::{RegistrySettings, Secret};
use crate::domain::{Digest, ImageRef};

/// The distribution-API registry client. Cheap to share behind an `Arc`.
pub struct OciRegistry {
    http: reqwest::Client,
    credentials: Credentials,
    insecure: Vec<String>,
    allow_loopback_http: bool,
    timeout: Duration,
    /// Authorization per `registry/repository`, learnt from a 401 challenge.
    authorized: Mutex<HashMap<String, Authorization>>,
    /// One oci-client per registry (it caches the first credentials per registry).
    oci: Mutex<HashMap<String, Arc<oci_client::Client>>>,
    metrics: RegistryMetrics,
    /// "Now" for an HTTP-date `Retry-After` (the daemon's one clock; the wall clock by
    /// default).
    clock: Arc<dyn Clock>,
}

impl OciRegistry {
    /// Builds the client; loads credentials (refusing world-readable files).
    pub fn new(
        settings: &RegistrySettings,
        request_timeout: Duration,
        metrics: RegistryMetrics,
    ) -> Result<Self, RegistryError> {
        let credentials = Credentials::load(settings)?;
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Unreachable {
                registry: "*".to_owned(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        tracing::debug!(registries = ?credentials.registries(), "registry credentials loaded");
        Ok(Self {
            http,
            credentials,
            insecure: settings.insecure.clone(),
            allow_loopback_http: settings.allow_loopback_http,
            timeout: request_timeout,
            authorized: Mutex::new(HashMap::new()),
            oci: Mutex::new(HashMap::new()),
            metrics,
            clock: Arc::new(SystemClock),
        })
    }

    /// Reads time from `clock` instead of the wall clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Plain HTTP only for listed registries and (when allowed) the loopback.
    pub fn plain_http(&self, image: &ImageRef) -> bool {
        self.insecure.iter().any(|r| r == image.registry())
            || (self.allow_loopback_http && image.is_loopback_registry())
    }

    fn scheme(&self, image: &ImageRef) -> &'static str {
        if self.plain_http(image) {
            "http"
        } else {
            "https"
        }
    }

    fn oci_client(&self, image: &ImageRef) -> Arc<oci_client::Client> {
        let mut map = self.oci.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(image.registry().to_owned())
            .or_insert_with(|| {
                Arc::new(oci_client::Client::new(ClientConfig {
                    protocol: if self.plain_http(image) {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    read_timeout: Some(self.timeout),
                    connect_timeout: Some(self.timeout),
                    ..ClientConfig::default()
                }))
            })
            .clone()
    }

    fn credential(&self, image: &ImageRef) -> Option<&Credential> {
        self.credentials.get(image.registry())
    }

    fn oci_auth(&self, image: &ImageRef) -> RegistryAuth {
        match self.credential(image) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.expose().to_owned()),
            None => RegistryAuth::Anonymous,
        }
    }

    fn unreachable(image: &ImageRef, e: &impl std::fmt::Display) -> RegistryError {
        RegistryError::Unreachable {
            registry: image.registry().to_owned(),
            message: e.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        image: &ImageRef,
        auth: Option<&Authorization>,
        kind: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut req = self
            .http
            .request(method, url)
            .header(ACCEPT, HeaderValue::from_static(MANIFEST_TYPES));
        req = match auth {
            Some(Authorization::Basic(u, p)) => req.basic_auth(u, Some(p.expose())),
            Some(Authorization::Bearer(t)) => req.bearer_auth(t.expose()),
            None => req,
        };
        match req.send().await {
            Ok(res) => {
                self.metrics
                    .request(image.registry(), kind, outcome_of(res.status()));
                Ok(res)
            }
            Err(e) => {
                self.metrics.request(image.registry(), kind, "unreachable");
                // reqwest's message names the URL, which carries no credential.
                Err(Self::unreachable(image, &e))
            }
        }
    }

    /// Answers a 401 challenge: a bearer token through oci-client's token flow, or basic
    /// credentials when the registry asks for them.
    async fn authorize(
        &self,
        image: &ImageRef,
        challenge: Option<String>,
    ) -> Result<Authorization, RegistryError> {
        let registry = image.registry().to_owned();
        let cred = self.credential(image).cloned();
        let challenge = challenge.unwrap_or_default();
        let scheme = challenge
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if scheme == "bearer" {
            let reference = Reference::with_tag(
                registry.clone(),
                image.repository().to_owned(),
                image.tag().unwrap_or("latest").to_owned(),
            );
            let result = self
                .oci_client(image)
                .auth(&reference, &self.oci_auth(image), RegistryOperation::Pull)
                .await;
            let outcome = if result.is_ok() { "ok" } else { "unauthorized" };
            self.metrics.request(&registry, "token", outcome);
            return match result {
                Ok(Some(token)) => Ok(Authorization::Bearer(Secret::new(token))),
                Ok(None) => match cred {
                    Some(c) => Ok(Authorization::Basic(c.username, c.password)),
                    None => Err(RegistryError::NoCredentials { registry }),
                },
                Err(oci_client::errors::OciDistributionError::AuthenticationFailure(_)) => {
                    Err(match cred {
                        Some(_) => RegistryError::CredentialsRefused {
                            registry,
                            image: image.to_string(),
                        },
                        None => RegistryError::NoCredentials { registry },
                    })
                }
                Err(e) => Err(Self::unreachable(image, &e)),
            };
        }
        match cred {
            Some(c) => Ok(Authorization::Basic(c.username, c.password)),
            None => Err(RegistryError::NoCredentials { registry }),
        }
    }

    /// Sends with the repository's known authorization; on a 401 answers the challenge
    /// once and retries.
    async fn send_authorized(
        &self,
        method: Method,
        url: &str,
        image: &ImageRef,
        kind: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let key = image.name();
        let known = self
            .authorized
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let res = self
            .send(method.clone(), url, image, known.as_ref(), kind)
            .await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let challenge = res
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let auth = self.authorize(image, challenge).await?;
        let res = self.send(method, url, image, Some(&auth), kind).await?;
        let mut cache = self
            .authorized
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if res.status() == StatusCode::UNAUTHORIZED {
            cache.remove(&key);
            return Err(match self.credential(image) {
                Some(_) => RegistryError::CredentialsRefused {
                    registry: image.registry().to_owned(),
                    image: image.to_string(),
                },
                None => RegistryError::NoCredentials {
                    registry: image.registry().to_owned(),
                },
            });
        }
        cache.insert(key, auth);
        Ok(res)
    }

    fn check_status(&self, image: &ImageRef, res: &reqwest::Response) -> Result<(), RegistryError> {
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        Err(match status.as_u16() {
            404 => RegistryError::NotFound {
                image: image.to_string(),
            },
            429 => RegistryError::RateLimited {
                registry: image.registry().to_owned(),
                retry_after: res
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, self.clock.now())),
            },
            code => RegistryError::Status {
                registry: image.registry().to_owned(),
                image: image.to_string(),
                status: code,
            },
        })
    }

    async fn resolve_inner(&self, image: &ImageRef) -> Result<Resolved, RegistryError> {
        let reference = match (image.tag(), image.digest()) {
            (_, Some(d)) => d.as_str().to_owned(),
            (Some(t), None) => t.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let url = format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme(image),
            api_host(image.registry()),
            image.repository(),
            reference
        );
        let bad_digest = |message: String| RegistryError::BadDigest {
            registry: image.registry().to_owned(),
            image: image.to_string(),
            message,
        };
        let res = self
            .send_authorized(Method::HEAD, &url, image, RequestKind::Head.as_str())
            .await?;
        self.check_status(image, &res)?;
        if let Some(h) = res.headers().get("docker-content-digest") {
            let text = h.to_str().map_err(|e| bad_digest(e.to_string()))?;
            let digest = Digest::parse(text).map_err(|e| bad_digest(e.to_string()))?;
            return Ok(Resolved {
                digest,
                via: RequestKind::Head,
            });
        }
        let res = self
            .send_authorized(Method::GET, &url, image, RequestKind::Get.as_str())
            .await?;
        self.check_status(image, &res)?;
        let header = res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = res
            .bytes()
            .await
            .map_err(|e| Self::unreachable(image, &e))?;
        let digest = Digest::of_bytes(&body);
        if let Some(h) = header
            && h != digest.as_str()
        {
            return Err(bad_digest(format!(
                "header says {h}, manifest hashes to {digest}"
            )));
        }
        Ok(Resolved {
            digest,
            via: RequestKind::Get,
        })
    }
}

impl Registry for OciRegistry {
    async fn resolve(&self, image: &ImageRef) -> Result<Resolved, RegistryError> {
        // Measures the probe's duration for the histogram; it reads no wall-clock time.
        let start = Instant::now();
        let result = self.resolve_inner(image).await;
        self.metrics
            .probe_duration
            .observe(start.elapsed().as_secs_f64());
        result
    }

    async fn changelog(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        let reference = Reference::with_digest(
            image.registry().to_owned(),
            image.repository().to_owned(),
            digest.as_str().to_owned(),
        );
        let result = self
            .oci_client(image)
            .pull_manifest_and_config(&reference, &self.oci_auth(image))
            .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.request(image.registry(), "changelog", outcome);
        let (manifest, _, config) = result.map_err(|e| RegistryError::Changelog {
            image: image.to_string(),
            message: e.to_string(),
        })?;
        if let Some(text) = manifest
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGELOG_KEY))
        {
            return Ok(Some(text.clone()));
        }
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| RegistryError::Changelog {
                image: image.to_string(),
                message: format!("image config is not JSON: {e}"),
            })?;
        Ok(config
            .pointer("/config/Labels")
            .and_then(|l| l.get(CHANGELOG_KEY))
            .and_then(|v| v.as_str())
            .map(str::to_owned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn plain_http_only_for_insecure_or_loopback() {
        let settings = RegistrySettings {
            insecure: vec!["reg.internal:5000".into()],
            ..RegistrySettings::default()
        };
        let m = RegistryMetrics::unregistered().unwrap();
        let r = OciRegistry::new(&settings, Duration::from_secs(1), m.clone()).unwrap();
        let img = |s: &str| ImageRef::parse(s).unwrap();
        assert!(r.plain_http(&img("127.0.0.1:5000/a:b")));
        assert!(r.plain_http(&img("localhost:5000/a:b")));
        assert!(r.plain_http(&img("reg.internal:5000/a:b")));
        assert!(!r.plain_http(&img("reg.internal/a:b")));
        assert!(!r.plain_http(&img("ghcr.io/a/b:c")));
        let strict = RegistrySettings {
            allow_loopback_http: false,
            ..RegistrySettings::default()
        };
        let r = OciRegistry::new(&strict, Duration::from_secs(1), m).unwrap();
        assert!(!r.plain_http(&img("127.0.0.1:5000/a:b")));
    }
}
