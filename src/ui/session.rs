//! The dashboard's sign-in sessions: an API token is exchanged once (a POST form) for a
//! random session id kept in an `HttpOnly; SameSite=Strict` cookie; the token itself is
//! never stored, echoed, logged or put in a URL. Sessions live in memory only (a restart
//! signs everyone out), expire after [`LIFETIME`], and each carries the CSRF token every
//! mutating form must send back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;

use crate::api::Actor;

/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::hours(8);
/// The cookie's name.
pub const COOKIE: &str = "sluice_session";
/// At most this many live sessions; the oldest is dropped for a new one.
const MAX_SESSIONS: usize = 1024;

/// One signed-in operator.
#[derive(Clone, Debug)]
pub struct Session {
    pub actor: Arc<Actor>,
    /// Sent back by every mutating form; bound to this session only.
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// Every live session, by id.
#[derive(Clone, Default, Debug)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, Session>>>,
}

/// 32 random bytes, hex: a session id or a CSRF token.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// A new session for `actor`; returns its id.
    pub fn create(&self, actor: Actor, now: DateTime<Utc>) -> String {
        let id = random_token();
        let session = Session {
            actor: Arc::new(actor),
            csrf: random_token(),
            expires: now + LIFETIME,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session);
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The `Set-Cookie` value for a session (`Secure` when the request came over TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Compares a presented CSRF token with the session's in constant time.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn actor() -> Actor {
        Actor {
            name: "ops".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn a_session_expires_and_its_csrf_token_is_its_own() {
        let s = Sessions::default();
        let now = Utc::now();
        let a = s.create(actor(), now);
        let b = s.create(actor(), now);
        assert_ne!(a, b);
        let sa = s.get(&a, now).expect("live");
        let sb = s.get(&b, now).expect("live");
        assert!(csrf_matches(&sa, &sa.csrf.clone()));
        assert!(!csrf_matches(&sa, &sb.csrf));
        assert!(!csrf_matches(&sa, ""));
        assert!(s.get(&a, now + LIFETIME).is_none());
        s.remove(&b);
        assert!(s.get(&b, now).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let c = set_cookie("abc", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("abc", false).contains("Secure"));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("x=1; sluice_session=abc"),
        );
        assert_eq!(cookie_id(&h).as_deref(), Some("abc"));
    }
}
