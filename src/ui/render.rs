//! The dashboard's shared HTML: the page frame, the navigation, action buttons (only for
//! `admin` sessions, each a link to a confirmation naming what it changes) and small
//! formatting helpers. maud escapes every value it is given.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::Signed;
use crate::api::ApiError;

/// A whole page: the frame around `body`, which the script refreshes when the audit
/// trail moves (the element `#live`).
pub fn page(title: &str, who: Option<&Signed>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "sluice · " (title) }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header {
                    strong { "sluice" }
                    @if let Some(s) = who {
                        nav {
                            a href="/ui/fleet" { "Fleet" }
                            a href="/ui/releases" { "Releases" }
                            a href="/ui/rollouts" { "Rollouts" }
                            a href="/ui/events" { "Events" }
                        }
                        span.who {
                            (s.session.actor.name) " (" (s.session.actor.role.as_str()) ")"
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(s.session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    div #live data-live="1" { (body) }
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// An API error shown as a page with its status.
pub fn error_page(who: Option<&Signed>, e: ApiError) -> Response {
    let status = e.status;
    let mut res = page(
        "Refused",
        who,
        html! { p.error { (e.message) } p { a href="/ui/fleet" { "Back to the fleet" } } },
    );
    *res.status_mut() = status;
    res
}

/// A button leading to the confirmation of `what` on `id` (admins only).
pub fn action(who: &Signed, label: &str, what: &str, id: &str, extra: &str) -> Markup {
    html! {
        @if who.admin() {
            a.button href={ "/ui/confirm?what=" (what) "&id=" (id) (extra) } { (label) }
        }
    }
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The first 12 hex digits of a digest, for tables.
pub fn short(d: &impl std::fmt::Display) -> String {
    let s = d.to_string();
    let hex = s.strip_prefix("sha256:").unwrap_or(&s);
    hex.chars().take(12).collect()
}

/// The changelog file read from inside a release's image: its sections, or its text.
pub fn changelog_file(f: &crate::domain::ChangelogFile) -> Markup {
    html! {
        div.changelog-file {
            p { "from " code { (f.path) }
                @if let Some(v) = &f.version { " · version " (v) }
                @if let Some(d) = &f.date { " · " (d) }
                @if let Some(n) = &f.note { " · " (n) } }
            @for sec in &f.sections {
                h3 { (sec.title) }
                ul { @for i in &sec.items { li { (i) } } }
            }
            @if let Some(t) = &f.text { pre.changelog { (t) } }
        }
    }
}

/// A table of view rows, one column per field they serialize (hosts, analysis results).
pub fn value_table<T: serde::Serialize>(rows: &[T]) -> Markup {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let columns: Vec<String> = rows
        .first()
        .and_then(|r| r.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    html! {
        table {
            thead { tr { @for c in &columns { th { (c) } } } }
            tbody { @for r in &rows { tr { @for c in &columns { td { (cell(&r[c.as_str()])) } } } } }
        }
    }
}
