//! The API's error type: `{"error": {"code": "...", "message": "..."}}` with a stable
//! `code` per failure and a status from 400/401/403/404/408/409/413/500/503.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: `invalid_tier`, `not_found`, `forbidden`, ...
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// Bad input (400); `message` names the field.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, error = %self.message, "request failed");
        }
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::AlreadyExists { .. } => ApiError::conflict("already_exists", e.to_string()),
            StoreError::Conflict { .. } => ApiError::conflict("conflict", e.to_string()),
            StoreError::VolumeInUse { .. } => ApiError::conflict("volume_in_use", e.to_string()),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// JSON 404 for paths no route serves.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// JSON 405 for a served path asked with a method it does not answer.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this path does not answer {method}; see /api/v1/openapi.json"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses() {
        let nf: ApiError = StoreError::NotFound {
            what: "workspace",
            key: "x".into(),
        }
        .into();
        assert_eq!(nf.status, StatusCode::NOT_FOUND);
        assert_eq!(nf.code, "not_found");
        let ex: ApiError = StoreError::AlreadyExists {
            what: "workspace",
            key: "x".into(),
        }
        .into();
        assert_eq!(
            (ex.status, ex.code),
            (StatusCode::CONFLICT, "already_exists")
        );
        let used: ApiError = StoreError::VolumeInUse {
            volume: "acme-data".into(),
            owner: "acme".into(),
        }
        .into();
        assert_eq!(
            (used.status, used.code),
            (StatusCode::CONFLICT, "volume_in_use")
        );
        assert!(used.message.contains("`acme-data`") && used.message.contains("`acme`"));
    }
}
