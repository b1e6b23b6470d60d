//! A JSON body extractor whose every failure is an [`ApiError`] naming the field:
//! `{"error": {"code": "invalid_tier", "message": "update_tier: invalid tier `canery`: ..."}}`.
//! Oversized bodies become 413 `body_too_large`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ApiError;

/// Like `axum::Json`, with sluice's errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "request body is larger than api.body_limit",
                )
            } else {
                ApiError::bad_request("invalid_body", format!("cannot read body: {e}"))
            }
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Query parameters parsed like a body: every failure is an [`ApiError`] naming the
/// parameter (`limit: invalid type: ...`), never the framework's plain-text rejection.
/// Values are text; one that fails as text is tried again as the number or boolean it
/// spells, so `limit=5` and `purge=true` reach numeric and boolean fields.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("query string: {e}")))?;
        parse_query(pairs).map(ApiQuery)
    }
}

/// [`ApiQuery`]'s parse, on decoded `(name, value)` pairs (a repeated name: the last wins).
pub fn parse_query<T: DeserializeOwned>(pairs: Vec<(String, String)>) -> Result<T, ApiError> {
    let mut text = Map::new();
    let mut typed = Map::new();
    for (k, v) in pairs {
        let value = if let Ok(n) = v.parse::<i64>() {
            Value::from(n)
        } else if v == "true" || v == "false" {
            Value::Bool(v == "true")
        } else {
            Value::String(v.clone())
        };
        typed.insert(k.clone(), value);
        text.insert(k, Value::String(v));
    }
    parse_body(Value::Object(text).to_string().as_bytes())
        .or_else(|_| parse_body(Value::Object(typed).to_string().as_bytes()))
}

/// Parses `bytes` as `T`; an empty body is treated as `{}` so optional bodies work.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        let code = code_for(&field, &inner);
        let message = if field.is_empty() {
            format!("invalid body: {inner}")
        } else {
            format!("{field}: {inner}")
        };
        ApiError::bad_request(code, message)
    })
}

/// A stable code per field whose values are a closed vocabulary or a parsed type.
fn code_for(field: &str, e: &serde_json::Error) -> &'static str {
    if e.is_syntax() || e.is_eof() {
        return "invalid_json";
    }
    let top = field.split(['.', '[']).next().unwrap_or_default();
    match field_code(top) {
        Some(code) => code,
        None if e.to_string().starts_with("unknown field") => "unknown_field",
        None if e.to_string().starts_with("missing field") => "missing_field",
        None => "invalid_body",
    }
}

/// The code of a bad value in the top-level field `top`, when the field has one of its
/// own (else `invalid_body`). The OpenAPI document lists these per request body.
pub fn field_code(top: &str) -> Option<&'static str> {
    Some(match top {
        "update_tier" | "tier" => "invalid_tier",
        "update_mode" | "mode" => "invalid_mode",
        "pinned_digest" | "digest" => "invalid_digest",
        "name" => "invalid_name",
        "image" => "invalid_image",
        "maintenance_window" => "invalid_window",
        "env"
        | "volumes"
        | "ports"
        | "command"
        | "health"
        | "restart"
        | "network"
        | "labels"
        | "entrypoint"
        | "user"
        | "working_dir"
        | "hostname"
        | "stop_signal"
        | "stop_timeout"
        | "read_only_rootfs"
        | "resources"
        | "tmpfs"
        | "extra_hosts"
        | "dns"
        | "ulimits"
        | "sysctls"
        | "log"
        | "binds"
        | "cap_add"
        | "cap_drop"
        | "security_opt"
        | "networks"
        | "drift"
        | "update_order"
        | "snapshot_on_start_first"
        | "contacts" => "invalid_spec",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Tier;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // reason: fields exist to be parsed
    struct Body {
        update_tier: Option<Tier>,
        count: Option<u32>,
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_body::<Body>(br#"{"update_tier":"canery"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_tier");
        assert!(e.message.starts_with("update_tier:"), "{}", e.message);
        assert!(e.message.contains("canery"), "{}", e.message);
        let e = parse_body::<Body>(br#"{"count":"x"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_body");
        assert!(e.message.starts_with("count:"), "{}", e.message);
        let e = parse_body::<Body>(br#"{"cuont":1}"#).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert!(e.message.contains("cuont"), "{}", e.message);
        let e = parse_body::<Body>(b"{").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        assert!(parse_body::<Body>(b"").is_ok());
    }
}
