//! Bearer-token authentication for `/api/v1`: tokens from `[auth] tokens` and
//! `[auth] token_file`, each with a name (the audit actor) and a role; with neither, the
//! generated first-start admin token (`first_token.rs`). `read` tokens may only GET.
//! Tokens are compared in constant time (over their SHA-256, so neither the content nor
//! the length of a configured token leaks through timing).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::config::{ApiToken, AuthSettings};
use crate::domain::Role;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {path} is readable by every user; run `chmod 600 {path}`")]
    WorldReadable { path: PathBuf },
    #[error("token file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("admin token file {path} is readable by other users; run `chmod 600 {path}`")]
    NotPrivate { path: PathBuf },
    #[error("cannot create the admin token file {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who made a request: the token's name and role. Handlers take it as an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

struct Entry {
    name: String,
    role: Role,
    hash: [u8; 32],
}

/// The configured tokens.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<ApiToken>,
}

fn hash(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Tokens {
    pub fn new(tokens: &[ApiToken]) -> Self {
        Self {
            entries: tokens
                .iter()
                .map(|t| Entry {
                    name: t.name.clone(),
                    role: t.role,
                    hash: hash(t.token.expose()),
                })
                .collect(),
        }
    }

    /// Tokens from the config plus those of `token_file` (refused when world-readable).
    pub fn load(settings: &AuthSettings) -> Result<Self, AuthError> {
        let mut all = settings.tokens.clone();
        if let Some(path) = &settings.token_file {
            all.extend(read_token_file(path)?);
        }
        for (i, t) in all.iter().enumerate() {
            if t.token.expose().len() < 16 {
                return Err(AuthError::Parse {
                    path: settings.token_file.clone().unwrap_or_default(),
                    message: format!("tokens[{i}].token must be at least 16 characters"),
                });
            }
        }
        Ok(Self::new(&all))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The token's owner, comparing against every entry so timing does not depend on
    /// which one matched.
    pub fn authenticate(&self, presented: &str) -> Option<Actor> {
        let h = hash(presented);
        let mut found = None;
        for e in &self.entries {
            if ct_eq(&e.hash, &h) && found.is_none() {
                found = Some(Actor {
                    name: e.name.clone(),
                    role: e.role,
                });
            }
        }
        found
    }
}

fn read_token_file(path: &Path) -> Result<Vec<ApiToken>, AuthError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(AuthError::WorldReadable {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })?;
    let file: TokenFile = toml::from_str(&text).map_err(|e| AuthError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(file.tokens)
}

/// The `Authorization: Bearer` token of a request, if any.
fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: 401 without a known token, 403 when a `read` token tries to change
/// anything; otherwise the [`Actor`] is put into the request's extensions.
pub async fn require_token(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let actor = match bearer(&req).and_then(|t| state.api.tokens.authenticate(t)) {
        Some(a) => a,
        None => {
            return ApiError::unauthorized(
                "missing or unknown bearer token (send `Authorization: Bearer <token>`)",
            )
            .into_response();
        }
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads && actor.role != Role::Admin {
        return ApiError::forbidden(format!(
            "token `{}` has role `read`; this request needs `admin`",
            actor.name
        ))
        .into_response();
    }
    req.extensions_mut().insert(Arc::new(actor));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn tok(name: &str, role: Role, t: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            role,
            token: Secret::new(t),
        }
    }

    #[test]
    fn authenticates_by_value_only() {
        let t = Tokens::new(&[
            tok("ops", Role::Admin, "admin-token-0123456789"),
            tok("viewer", Role::Read, "read-token-0123456789"),
        ]);
        assert_eq!(
            t.authenticate("read-token-0123456789").unwrap().name,
            "viewer"
        );
        assert_eq!(
            t.authenticate("admin-token-0123456789").unwrap().role,
            Role::Admin
        );
        assert!(t.authenticate("admin-token-012345678").is_none());
        assert!(t.authenticate("").is_none());
    }

    #[test]
    fn world_readable_token_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.toml");
        std::fs::write(
            &p,
            "[[tokens]]\nname = \"ci\"\nrole = \"read\"\ntoken = \"file-token-0123456789\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let settings = AuthSettings {
            tokens: vec![],
            token_file: Some(p.clone()),
        };
        let e = Tokens::load(&settings).err().unwrap().to_string();
        assert!(e.contains("readable by every user"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Tokens::load(&settings).unwrap();
        assert_eq!(t.authenticate("file-token-0123456789").unwrap().name, "ci");
    }
}
