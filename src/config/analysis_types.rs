//! `[rollout.prometheus]` and `[[rollout.analysis]]`: metric checks that gate a rollout.
//! Each check is a PromQL query (with `{{ canary_workspaces }}` and `{{ digest }}`
//! filled in), compared with a threshold every `interval`; `failure_limit` consecutive
//! failures abort the rollout, and a query that returns nothing (or a Prometheus that
//! does not answer) is `inconclusive`: the rollout pauses for an operator, or it counts
//! as a failure — never as a success. The verdicts are `rollout::analysis`; the rollout
//! controller evaluates the checks during the canary soak (and between production waves
//! for those with `after_waves`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::load::ConfigError;
use crate::domain::ImageRef;

/// Where the analysis queries go.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusSettings {
    /// `http(s)://host:port` of the Prometheus HTTP API; none: no analysis may be set.
    pub url: Option<String>,
    /// How long one query may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for PrometheusSettings {
    fn default() -> Self {
        Self {
            url: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// How a value must compare with the threshold to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = "<")]
    Below,
    #[serde(rename = "<=")]
    AtMost,
    #[serde(rename = ">")]
    Above,
    #[serde(rename = ">=")]
    AtLeast,
}

/// What a query without data (or a Prometheus that does not answer) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Inconclusive {
    /// The rollout pauses for an operator, with the reason.
    #[default]
    Pause,
    /// It counts as a failed evaluation.
    Fail,
}

/// One metric check.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisCheck {
    /// Shown in results and audit events.
    pub name: String,
    /// The tracked image it applies to; every image when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// PromQL returning one number; `{{ canary_workspaces }}` becomes `a|b|c` (for
    /// `=~`), `{{ digest }}` the digest rolled out.
    pub query: String,
    pub comparison: Comparison,
    pub threshold: f64,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Consecutive failed evaluations that abort the rollout.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
    #[serde(default)]
    pub inconclusive: Inconclusive,
    /// Also evaluated after each production wave (always during the canary soak).
    #[serde(default)]
    pub after_waves: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_failure_limit() -> u32 {
    1
}

/// The variables a query may name.
pub const QUERY_VARIABLES: &[&str] = &["canary_workspaces", "digest"];

fn value(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Checks what serde cannot, naming the key.
pub(super) fn validate(
    p: &PrometheusSettings,
    checks: &[AnalysisCheck],
) -> Result<(), ConfigError> {
    if let Some(url) = &p.url {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| value("rollout.prometheus.url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(value(
                "rollout.prometheus.url",
                "expected http(s)://HOST[:PORT]",
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(value(
                "rollout.prometheus.url",
                "must not carry credentials (they would end up in logs)",
            ));
        }
    }
    if p.timeout.is_zero() {
        return Err(value(
            "rollout.prometheus.timeout",
            "must be longer than 0s",
        ));
    }
    if !checks.is_empty() && p.url.is_none() {
        return Err(value(
            "rollout.prometheus.url",
            "[[rollout.analysis]] needs the Prometheus to ask",
        ));
    }
    for (i, c) in checks.iter().enumerate() {
        let key = |f: &str| format!("rollout.analysis[{i}].{f}");
        if c.name.trim().is_empty() {
            return Err(value(&key("name"), "must not be empty"));
        }
        if let Some(image) = &c.image {
            ImageRef::parse(image).map_err(|e| value(&key("image"), e.to_string()))?;
        }
        crate::rollout::analysis::check_template(&c.query).map_err(|e| value(&key("query"), e))?;
        if !c.threshold.is_finite() {
            return Err(value(&key("threshold"), "must be a finite number"));
        }
        if c.interval < Duration::from_secs(1) {
            return Err(value(&key("interval"), "must be at least 1s"));
        }
        if c.failure_limit == 0 {
            return Err(value(&key("failure_limit"), "must be at least 1"));
        }
    }
    Ok(())
}
