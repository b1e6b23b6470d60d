//! The Prometheus HTTP API, as metric analysis needs it: an instant query reduced to one
//! [`Sample`], and a syntax check of a query (Prometheus parses it: `format_query`).
//! Failures are samples too (`Sample::Error`), so an unreachable Prometheus is
//! inconclusive, never a pass. The URL is not logged (it may name an internal host).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Deserialize;

use super::analysis::Sample;

/// Where the controller's metric checks get their numbers: [`Prometheus`].
pub trait MetricSource: Send + Sync + 'static {
    /// Runs `query` now; one number, or why there is none.
    fn sample<'a>(&'a self, query: &'a str) -> Pin<Box<dyn Future<Output = Sample> + Send + 'a>>;
}

impl MetricSource for Prometheus {
    fn sample<'a>(&'a self, query: &'a str) -> Pin<Box<dyn Future<Output = Sample> + Send + 'a>> {
        Box::pin(self.query(query))
    }
}

/// A Prometheus server's query API.
#[derive(Clone, Debug)]
pub struct Prometheus {
    base: reqwest::Url,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error("rollout.prometheus.url: {0}")]
    Url(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

#[derive(Deserialize)]
struct Reply {
    status: String,
    /// A query's result (`Data`), or `format_query`'s formatted text.
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

/// `[timestamp, "value"]` → the value.
fn number(pair: &serde_json::Value) -> Option<f64> {
    pair.get(1)?.as_str()?.parse().ok()
}

impl Prometheus {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, PrometheusError> {
        let base = reqwest::Url::parse(url).map_err(|e| PrometheusError::Url(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(PrometheusError::Client)?;
        Ok(Self { base, http })
    }

    /// The API's reply; `Err((refused, message))`, `refused` when Prometheus answered that
    /// the query is wrong.
    async fn get(&self, path: &str, query: &str) -> Result<Reply, (bool, String)> {
        let mut url = self.base.clone();
        url.set_path(path);
        let r = self
            .http
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| {
                (
                    false,
                    format!("Prometheus does not answer: {}", e.without_url()),
                )
            })?;
        let status = r.status();
        let reply: Reply = r.json().await.map_err(|e| {
            (
                false,
                format!(
                    "Prometheus answered {status} with no API reply: {}",
                    e.without_url()
                ),
            )
        })?;
        if reply.status != "success" {
            // 400 (bad_data) and 422 (execution): the query; anything else: the server.
            let query_wrong = status.as_u16() == 400 || status.as_u16() == 422;
            return Err((
                query_wrong,
                format!(
                    "Prometheus refused the query: {}",
                    reply.error.unwrap_or_else(|| status.to_string())
                ),
            ));
        }
        Ok(reply)
    }

    /// Runs `query` now; one number, or why there is none.
    pub async fn query(&self, query: &str) -> Sample {
        let data = match self.get("/api/v1/query", query).await {
            Ok(Reply { data: Some(d), .. }) => d,
            Ok(_) => return Sample::Error("Prometheus answered without data".to_owned()),
            Err((true, e)) => return Sample::Refused(e),
            Err((false, e)) => return Sample::Error(e),
        };
        let Ok(data) = serde_json::from_value::<Data>(data) else {
            return Sample::Error("Prometheus answered an unreadable result".to_owned());
        };
        match data.result_type.as_str() {
            "scalar" => number(&data.result).map_or_else(
                || Sample::Error("an unreadable scalar".to_owned()),
                Sample::Value,
            ),
            "vector" => match data.result.as_array().map(Vec::as_slice) {
                Some([]) => Sample::NoData,
                Some([one]) => one.get("value").and_then(number).map_or_else(
                    || Sample::Error("an unreadable sample".to_owned()),
                    Sample::Value,
                ),
                Some(many) => Sample::Error(format!(
                    "the query returned {} series; aggregate it to one (sum, max, ...)",
                    many.len()
                )),
                None => Sample::Error("an unreadable vector".to_owned()),
            },
            other => Sample::Error(format!(
                "the query returned a {other}; it must return one number"
            )),
        }
    }

    /// Whether Prometheus can parse `query` (an `Err` carries its message).
    pub async fn check_syntax(&self, query: &str) -> Result<(), String> {
        self.get("/api/v1/format_query", query)
            .await
            .map(|_| ())
            .map_err(|(_, e)| e)
    }
}
