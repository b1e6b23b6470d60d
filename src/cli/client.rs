//! A small HTTP client for the admin API with operator-friendly errors.

use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach sluice at {server}: {source} (is `sluice run` up? set --server or SLUICE_SERVER)"
    )]
    Unreachable {
        server: String,
        source: reqwest::Error,
    },
    #[error(
        "not authenticated: {message} (set SLUICE_TOKEN to a token from `[auth] tokens`; \
         with none configured, the daemon's first-start token is `<data dir>/admin.token`)"
    )]
    Unauthorized { message: String },
    #[error(
        "{source} (run the command as the user sluice runs as, e.g. with sudo, or set \
         SLUICE_TOKEN)"
    )]
    LocalToken { source: crate::api::AuthError },
    #[error("not allowed: {message} (use a token with role `admin`)")]
    Forbidden { message: String },
    #[error("not found: {message}")]
    NotFound { message: String },
    #[error("conflict ({code}): {message}")]
    Conflict { code: String, message: String },
    #[error("refused ({code}): {message}")]
    BadRequest { code: String, message: String },
    #[error("server error {status} ({code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    #[error("invalid argument `{arg}`: {message}")]
    InvalidArg { arg: String, message: String },
    #[error("rollout {id} ended `{state}`")]
    RolloutFailed { id: i64, state: String },
    #[error("host {host} still runs {updating} update(s) after {waited}; it stays draining")]
    DrainTimeout {
        host: String,
        updating: i64,
        waited: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

/// Talks to one daemon with one token.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Self {
        let base = if server.contains("://") {
            server.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", server.trim_end_matches('/'))
        };
        Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Calls the API; any non-2xx becomes a [`ClientError`] carrying the server's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                server: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|source| ClientError::Unreachable {
                server: self.base.clone(),
                source,
            })?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(json);
        }
        Err(error_from(status, &json))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }
}

fn error_from(status: StatusCode, body: &Value) -> ClientError {
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or("unknown")
        .to_owned();
    let message = match body["error"]["message"].as_str() {
        Some(m) => m.to_owned(),
        None if body.is_string() => body.as_str().unwrap_or_default().to_owned(),
        None => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    match status {
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized { message },
        StatusCode::FORBIDDEN => ClientError::Forbidden { message },
        StatusCode::NOT_FOUND => ClientError::NotFound { message },
        StatusCode::CONFLICT => ClientError::Conflict { code, message },
        s if s.is_client_error() => ClientError::BadRequest { code, message },
        s => ClientError::Server {
            status: s.as_u16(),
            code,
            message,
        },
    }
}
