//! Sign-in, sign-out, the confirmation pages that name an action's blast radius, the one
//! form target that performs actions (CSRF-checked, `admin` only) and the event stream
//! the page script follows. Actions call the API's own handlers in-process.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::render::{error_page, html_response, page, short};
use super::{Signed, over_tls, session};
use crate::api::extract::ApiJson;
use crate::api::{ApiError, AppState, releases, rollouts, snapshots, workspaces};
use crate::domain::ApplyTier;

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        @if let Some(m) = message { p.error { (m) } }
        form.login method="post" action="/ui/login" {
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p { "Sign in with an API token (role " code { "read" } " to look, " code { "admin" }
            " to act). Tokens are configured in " code { "[auth] tokens" } " or "
            code { "[auth] token_file" } ". A first start without configured tokens writes an admin token to "
            code { "<data dir>/" (crate::api::first_token::FILE_NAME) } " (readable only by the daemon's user)." }
        p { "The token is exchanged for a session cookie; it is not kept in the browser." }
    };
    let mut res = page("Sign in", None, body);
    *res.status_mut() = status;
    res
}

pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(actor) = state.api.tokens.authenticate(form.token.trim()) else {
        return login_page(StatusCode::UNAUTHORIZED, Some("Unknown token."));
    };
    tracing::info!(actor = %actor.name, "dashboard sign-in");
    let id = state.ui.create(actor, state.clock.now());
    (
        [(
            header::SET_COOKIE,
            session::set_cookie(&id, over_tls(&headers, &uri)),
        )],
        Redirect::to("/ui/fleet"),
    )
        .into_response()
}

pub async fn logout(
    who: Signed,
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !csrf_ok(&who, &form) {
        return refused(&who, "missing or wrong CSRF token");
    }
    state.ui.remove(&who.session_id);
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(over_tls(&headers, &uri)),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

fn csrf_ok(who: &Signed, form: &HashMap<String, String>) -> bool {
    form.get("csrf")
        .is_some_and(|c| session::csrf_matches(&who.session, c))
}

fn refused(who: &Signed, why: &str) -> Response {
    error_page(Some(who), ApiError::forbidden(why.to_owned()))
}

#[derive(Debug, Deserialize)]
pub struct ConfirmQuery {
    what: String,
    id: String,
    #[serde(default)]
    tier: Option<String>,
}

/// What an action changes, in words, and the extra inputs it takes.
async fn blast_radius(state: &AppState, q: &ConfirmQuery) -> Result<(String, Markup), ApiError> {
    let id = q.id.clone();
    Ok(match q.what.as_str() {
        "apply" => {
            let tier = ApplyTier::parse(q.tier.as_deref().unwrap_or_default())
                .map_err(|e| ApiError::bad_request("invalid_tier", format!("tier: {e}")))?;
            let Json(r) = releases::show(State(state.clone()), Path(id)).await?;
            // Exactly the workspaces the apply would add: the rollout's own decision, run
            // without writing (pinned, manual-mode and up-to-date ones left out).
            let preview = state.rollout_ops.preview_apply(r.id, tier).await?;
            let hit = &preview.updated;
            let names: Vec<String> = hit
                .iter()
                .map(|(name, t)| format!("{name} ({})", t.as_str()))
                .collect();
            let left_out = if preview.left_out.is_empty() {
                String::new()
            } else {
                format!(
                    " Left as they are (pinned to another digest, or running it already): {}.",
                    preview.left_out.join(", ")
                )
            };
            let forced = tier != ApplyTier::Canary;
            (
                format!(
                    "Apply release {} ({} {}) to tier {}: {} workspace(s) on tier {} — {}.{}",
                    r.id,
                    r.image,
                    short(&r.digest),
                    tier.as_str(),
                    hit.len(),
                    tier.as_str(),
                    names.join(", "),
                    left_out
                ),
                html! { @if forced { label { input type="checkbox" name="force" value="true";
                " force (before the canary soak has passed, or every tier at once)" } } },
            )
        }
        "reject" => (
            format!("Reject release {id}: it will never be rolled out."),
            html! {},
        ),
        "promote" | "pause" | "resume" | "abort" | "rollback" => {
            let Json(r) = rollouts::show(State(state.clone()), Path(id.clone())).await?;
            let count = |tier: &str, statuses: &[&str]| {
                r.workspaces
                    .iter()
                    .filter(|t| {
                        (tier.is_empty() || t.tier == tier)
                            && (statuses.is_empty() || statuses.contains(&t.status.as_str()))
                    })
                    .count()
            };
            let text = match q.what.as_str() {
                "promote" => {
                    let Json(all) = workspaces::list(State(state.clone())).await?;
                    let prod: Vec<&str> = all
                        .iter()
                        .filter(|w| w.image == r.image && w.update_tier.as_str() == "production")
                        .map(|w| w.name.as_str())
                        .collect();
                    format!(
                        "Promote rollout {id} to production: {} workspace(s) on tier production will be updated to {} — {}.",
                        prod.len(),
                        short(&r.digest),
                        prod.join(", ")
                    )
                }
                "pause" => format!(
                    "Pause rollout {id}: no new update starts ({} pending).",
                    count("", &["pending"])
                ),
                "resume" => format!(
                    "Resume rollout {id}: {} pending workspace(s) continue.",
                    count("", &["pending"])
                ),
                "abort" => format!(
                    "Abort rollout {id}: {} pending workspace(s) will not be updated; updated ones stay.",
                    count("", &["pending"])
                ),
                _ => format!(
                    "Roll back rollout {id}: {} updated workspace(s) go back to their previous digest.",
                    count("", &["updated", "updating", "failed"])
                ),
            };
            let extra = match q.what.as_str() {
                "abort" => html! { label { "reason " input type="text" name="reason"; } },
                "rollback" => {
                    html! { label { input type="checkbox" name="restore_data" value="true";
                    " also restore the pre-update snapshots (loses writes made since)" } }
                }
                _ => html! {},
            };
            (text, extra)
        }
        "restore" => (
            format!(
                "Restore snapshot {id} into its workspace: the volume goes back to the snapshot; writes made since are lost."
            ),
            html! {},
        ),
        "release" => (
            format!(
                "Release snapshot {id}: it is no longer protected and retention may delete it."
            ),
            html! {},
        ),
        other => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("unknown action `{other}`"),
            ));
        }
    })
}

pub async fn confirm(
    who: Signed,
    State(state): State<AppState>,
    Query(q): Query<ConfirmQuery>,
) -> Response {
    if !who.admin() {
        return refused(&who, "this token has role `read`; actions need `admin`");
    }
    match blast_radius(&state, &q).await {
        Ok((text, extra)) => page(
            "Confirm",
            Some(&who),
            html! {
                p.blast { (text) }
                form.confirm method="post" action="/ui/do" {
                    input type="hidden" name="csrf" value=(who.session.csrf);
                    input type="hidden" name="what" value=(q.what);
                    input type="hidden" name="id" value=(q.id);
                    @if let Some(t) = &q.tier { input type="hidden" name="tier" value=(t); }
                    (extra)
                    button type="submit" #confirm { "Confirm: " (q.what) }
                    " " a href="/ui/fleet" { "Cancel" }
                }
            },
        ),
        Err(e) => error_page(Some(&who), e),
    }
}

/// The one form target for actions: `admin` only, CSRF-checked, then the API handler.
pub async fn perform(
    who: Signed,
    State(state): State<AppState>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !who.admin() {
        return refused(&who, "this token has role `read`; actions need `admin`");
    }
    if !csrf_ok(&who, &f) {
        return refused(&who, "missing or wrong CSRF token");
    }
    let field = |k: &str| f.get(k).cloned().unwrap_or_default();
    let flag = |k: &str| f.get(k).is_some_and(|v| v == "true");
    let (what, id) = (field("what"), field("id"));
    let actor = Extension(who.session.actor.clone());
    let st = || State(state.clone());
    let result: Result<String, ApiError> = async {
        let path = || Path(id.clone());
        Ok(match what.as_str() {
            "apply" => {
                let tier = ApplyTier::parse(&field("tier"))
                    .map_err(|e| ApiError::bad_request("invalid_tier", format!("tier: {e}")))?;
                let body = rollouts::ApplyBody {
                    tier,
                    force: flag("force"),
                };
                let Json(r) = rollouts::apply(st(), actor, path(), ApiJson(body)).await?;
                format!("/ui/rollouts/{}", r.id)
            }
            "reject" => {
                let _ = releases::reject(
                    st(),
                    actor,
                    path(),
                    ApiJson(releases::RejectBody::default()),
                )
                .await?;
                "/ui/releases".to_owned()
            }
            "promote" => {
                let _ = rollouts::promote(
                    st(),
                    actor,
                    path(),
                    ApiJson(rollouts::PromoteBody::default()),
                )
                .await?;
                format!("/ui/rollouts/{id}")
            }
            "pause" => {
                let _ =
                    rollouts::pause(st(), actor, path(), ApiJson(rollouts::EmptyBody {})).await?;
                format!("/ui/rollouts/{id}")
            }
            "resume" => {
                let _ =
                    rollouts::resume(st(), actor, path(), ApiJson(rollouts::EmptyBody {})).await?;
                format!("/ui/rollouts/{id}")
            }
            "abort" => {
                let reason = Some(field("reason")).filter(|r| !r.trim().is_empty());
                let _ =
                    rollouts::abort(st(), actor, path(), ApiJson(rollouts::AbortBody { reason }))
                        .await?;
                format!("/ui/rollouts/{id}")
            }
            "rollback" => {
                let body = rollouts::RollbackBody {
                    restore_data: flag("restore_data"),
                };
                let _ = rollouts::rollback(st(), actor, path(), ApiJson(body)).await?;
                format!("/ui/rollouts/{id}")
            }
            "restore" => {
                let _ = snapshots::restore(st(), actor, path(), ApiJson(snapshots::EmptyBody {}))
                    .await?;
                "/ui/fleet".to_owned()
            }
            "release" => {
                let _ = snapshots::release(st(), actor, path(), ApiJson(snapshots::EmptyBody {}))
                    .await?;
                "/ui/fleet".to_owned()
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_input",
                    format!("unknown action `{other}`"),
                ));
            }
        })
    }
    .await;
    match result {
        Ok(to) => {
            crate::api::publish_wake(&state).await;
            Redirect::to(&to).into_response()
        }
        Err(e) => error_page(Some(&who), e),
    }
}

/// The audit trail as server-sent events for a signed-in page (the API's stream, with
/// the session instead of a bearer token, which `EventSource` cannot send).
pub async fn stream(_who: Signed, State(state): State<AppState>, headers: HeaderMap) -> Response {
    let opened = async {
        let after = crate::api::event_stream::resume_point(&state.store, &headers, None).await?;
        state.streams.follow(state.store.clone(), after, false)
    }
    .await;
    match opened {
        Ok(r) => r,
        Err(e) => html_response(e.status, html! { (e.message) }),
    }
}
