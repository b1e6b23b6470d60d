//! The dashboard: server-rendered HTML pages under `/ui/` on the API's listener, for
//! people. It holds no business rules: pages read through the API's own handlers and view
//! types (called in-process, never over HTTP), and actions call the same handlers the
//! API routes do, so an action in the dashboard is exactly the API call it names.
//!
//! Security: a sign-in form exchanges an API token for a session cookie (`session.rs`);
//! every mutating form carries the session's CSRF token and is refused (403) without it;
//! a `read` token sees no action and its POSTs are refused (403); every answer carries a
//! strict `Content-Security-Policy` (no inline script or style: the one script and the
//! style sheet are served from the binary). Its pages are a table of their own
//! ([`PAGES`]), not part of the OpenAPI document, which describes the JSON API.

mod actions;
mod assets;
mod pages;
mod render;
pub mod session;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;

use crate::api::AppState;
use crate::domain::Role;
pub use session::Sessions;

/// The policy every dashboard answer carries: nothing but this origin, no inline code.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// One dashboard page or form target.
pub struct Page {
    pub path: &'static str,
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Every path the dashboard serves.
pub const PAGES: &[Page] = &[
    Page {
        path: "/ui",
        handler: || axum::routing::get(|| async { Redirect::to("/ui/fleet") }),
    },
    Page {
        path: "/ui/",
        handler: || axum::routing::get(|| async { Redirect::to("/ui/fleet") }),
    },
    Page {
        path: "/ui/login",
        handler: || axum::routing::get(actions::login_form).post(actions::login),
    },
    Page {
        path: "/ui/logout",
        handler: || axum::routing::post(actions::logout),
    },
    Page {
        path: "/ui/fleet",
        handler: || axum::routing::get(pages::fleet),
    },
    Page {
        path: "/ui/releases",
        handler: || axum::routing::get(pages::releases),
    },
    Page {
        path: "/ui/rollouts",
        handler: || axum::routing::get(pages::rollouts),
    },
    Page {
        path: "/ui/rollouts/{id}",
        handler: || axum::routing::get(pages::rollout),
    },
    Page {
        path: "/ui/workspaces/{name}",
        handler: || axum::routing::get(pages::workspace),
    },
    Page {
        path: "/ui/events",
        handler: || axum::routing::get(pages::events),
    },
    Page {
        path: "/ui/confirm",
        handler: || axum::routing::get(actions::confirm),
    },
    Page {
        path: "/ui/do",
        handler: || axum::routing::post(actions::perform),
    },
    Page {
        path: "/ui/stream",
        handler: || axum::routing::get(actions::stream),
    },
    Page {
        path: "/ui/assets/app.js",
        handler: || axum::routing::get(assets::script),
    },
    Page {
        path: "/ui/assets/app.css",
        handler: || axum::routing::get(assets::style),
    },
];

/// The dashboard's router, built from [`PAGES`]; every answer gets [`secure_headers`].
pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for page in PAGES {
        r = r.route(page.path, (page.handler)());
    }
    r.layer(axum::middleware::map_response(secure_headers))
}

/// CSP and friends on every dashboard answer; pages are never cached.
async fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// A signed-in operator, taken from the session cookie; a page without one sends the
/// browser to the sign-in form.
pub struct Signed {
    pub session_id: String,
    pub session: session::Session,
}

impl Signed {
    pub fn admin(&self) -> bool {
        self.session.actor.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let now = state.clock.now();
        let found = session::cookie_id(&parts.headers)
            .and_then(|id| state.ui.get(&id, now).map(|s| (id, s)));
        match found {
            Some((session_id, session)) => Ok(Signed {
                session_id,
                session,
            }),
            None if parts.method == axum::http::Method::GET => {
                Err(Redirect::to("/ui/login").into_response())
            }
            None => Err((StatusCode::FORBIDDEN, "not signed in").into_response()),
        }
    }
}

/// Whether the browser reached us over TLS (directly or through a proxy that says so):
/// the session cookie is then `Secure`.
pub fn over_tls(parts: &axum::http::HeaderMap, uri: &axum::http::Uri) -> bool {
    uri.scheme_str() == Some("https")
        || parts
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}
