//! The dashboard's pages. Each reads through the API's own handlers (in-process) and
//! renders their view types; none decides anything.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::Signed;
use super::render::{action, changelog_file, error_page, page, short, time, value_table};
use crate::api::extract::ApiQuery;
use crate::api::{ApiError, AppState, releases, rollouts, snapshots, workspaces};
use crate::store::Event;

/// How many audit entries the events page and a workspace's trail show, newest first.
const RECENT_EVENTS: i64 = 500;
/// How many journal rows a workspace's page shows, newest first.
const UPDATE_HISTORY: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct FleetFilter {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub tier: String,
    #[serde(default)]
    pub state: String,
}

fn done(who: &Signed, title: &str, r: Result<Markup, ApiError>) -> Response {
    match r {
        Ok(body) => page(title, Some(who), body),
        Err(e) => error_page(Some(who), e),
    }
}

pub async fn fleet(
    who: Signed,
    State(state): State<AppState>,
    Query(f): Query<FleetFilter>,
) -> Response {
    done(&who, "Fleet", fleet_body(&state, &f).await)
}

async fn fleet_body(state: &AppState, f: &FleetFilter) -> Result<Markup, ApiError> {
    let Json(all) = workspaces::list(State(state.clone())).await?;
    let mode = state.store.fleet_mode().await?;
    let needle = f.q.to_lowercase();
    let mut by_tier: BTreeMap<String, Vec<&workspaces::WorkspaceView>> = BTreeMap::new();
    for w in &all {
        let text = format!("{} {} {}", w.name, w.image, w.host).to_lowercase();
        let keep = text.contains(&needle)
            && (f.tier.is_empty() || w.update_tier.as_str() == f.tier)
            && (f.state.is_empty() || w.state.as_str() == f.state);
        if keep {
            by_tier
                .entry(w.update_tier.as_str().to_owned())
                .or_default()
                .push(w);
        }
    }
    Ok(html! {
        p { "Fleet mode: " strong #fleet-mode { (mode.as_str()) } " · " (all.len()) " workspaces" }
        form.filter method="get" action="/ui/fleet" {
            input type="search" name="q" value=(f.q) placeholder="name, image or host";
            select name="tier" {
                option value="" { "every tier" }
                @for t in ["canary", "production"] {
                    option value=(t) selected[f.tier == t] { (t) }
                }
            }
            input type="text" name="state" value=(f.state) placeholder="state";
            button type="submit" { "Filter" }
        }
        @for (tier, list) in &by_tier {
            h2 { (tier) " (" (list.len()) ")" }
            table {
                thead { tr { th { "name" } th { "state" } th { "health" } th { "digest" }
                    th { "host" } th { "mode" } th { "last update" } } }
                tbody {
                    @for w in list {
                        tr data-workspace=(w.name) {
                            td { a href={ "/ui/workspaces/" (w.name) } { (w.name) } }
                            td.state { (w.state.as_str()) }
                            td { (w.health.as_str()) }
                            td.digest title=[w.actual_digest.as_ref().map(ToString::to_string)] {
                                (w.actual_digest.as_ref().map(short).unwrap_or_default())
                            }
                            td { (w.host) }
                            td { (w.update_mode.as_str()) }
                            td { @if let Some(l) = &w.last_update {
                                (l.result.as_str()) " · " (time(&l.at))
                            } }
                        }
                    }
                }
            }
        }
        @if by_tier.is_empty() { p { "No workspace matches." } }
    })
}

pub async fn releases(who: Signed, State(state): State<AppState>) -> Response {
    let body = async {
        let Json(list) =
            releases::list(State(state.clone()), ApiQuery(releases::ListQuery { status: None }))
                .await?;
        let Json(rollouts) = rollouts::list(State(state.clone())).await?;
        Ok::<_, ApiError>(html! {
            @if list.is_empty() { p { "No release yet: the watcher records one when a tracked tag moves." } }
            @for r in &list {
                section.release #{ "release-" (r.id) } {
                    h2 { "#" (r.id) " " (r.image) " " code title=(r.digest) { (short(&r.digest)) } }
                    p { "status: " strong.status { (r.status.as_str()) } " · detected " (time(&r.detected_at)) }
                    @for ro in rollouts.iter().filter(|ro| ro.release_id == r.id) {
                        p { a href={ "/ui/rollouts/" (ro.id) } { "rollout " (ro.id) } ": " (ro.state.as_str()) }
                    }
                    @if let Some(c) = &r.changelog { pre.changelog { (c) } }
                    @if let Some(f) = &r.changelog_file { (changelog_file(f)) }
                    @if r.status.as_str() == "queued" {
                        p.actions {
                            (action(&who, "Apply to canary", "apply", &r.id.to_string(), "&tier=canary"))
                            (action(&who, "Apply to production", "apply", &r.id.to_string(), "&tier=production"))
                            (action(&who, "Apply to all", "apply", &r.id.to_string(), "&tier=all"))
                            (action(&who, "Reject", "reject", &r.id.to_string(), ""))
                        }
                    }
                }
            }
        })
    }
    .await;
    done(&who, "Releases", body)
}

pub async fn rollouts(who: Signed, State(state): State<AppState>) -> Response {
    let body = async {
        let Json(list) = rollouts::list(State(state.clone())).await?;
        Ok::<_, ApiError>(html! {
            table {
                thead { tr { th { "id" } th { "image" } th { "state" } th { "targets" } th { "started by" } } }
                tbody { @for r in list.iter().rev() {
                    tr { td { a href={ "/ui/rollouts/" (r.id) } { (r.id) } } td { (r.image) }
                        td.state { (r.state.as_str()) }
                        td { @for (k, n) in &r.counts { (k) ": " (n) " " } }
                        td { (r.started_by) } }
                } }
            }
        })
    }
    .await;
    done(&who, "Rollouts", body)
}

pub async fn rollout(
    who: Signed,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Response {
    let body = async {
        let Json(r) = rollouts::show(State(state.clone()), Path(id.clone())).await?;
        let st = r.state.as_str();
        let terminal = matches!(st, "completed" | "aborted" | "rolled_back");
        let mut waves: BTreeMap<(String, i64), Vec<&crate::api::rollout_view::TargetView>> =
            BTreeMap::new();
        for t in &r.workspaces {
            waves.entry((t.tier.clone(), t.wave)).or_default().push(t);
        }
        Ok::<_, ApiError>(html! {
            p { (r.image) " " code title=(r.digest) { (short(&r.digest)) }
                " · release " (r.release_id) " · started by " (r.started_by) }
            p { "state: " strong #rollout-state { (st) }
                @if let Some(p) = &r.paused_from { " (paused from " (p.as_str()) ")" } }
            @if let Some(end) = &r.soak_ends_at {
                @if st == "soaking" {
                    p { "soak ends " (time(end)) " — " span.countdown data-until=(end.to_rfc3339()) { "" } }
                }
            }
            @if !terminal {
                p.actions {
                    @if st == "soaking" { (action(&who, "Promote", "promote", &id, "")) }
                    @if st == "paused" { (action(&who, "Resume", "resume", &id, "")) }
                    @else { (action(&who, "Pause", "pause", &id, "")) }
                    (action(&who, "Abort", "abort", &id, ""))
                    (action(&who, "Roll back", "rollback", &id, ""))
                }
            } @else if st != "rolled_back" {
                p.actions { (action(&who, "Roll back", "rollback", &id, "")) }
            }
            h2 { "Progress" }
            p { @for (k, n) in &r.counts { (k) ": " (n) " · " } }
            h3 { "Hosts" }
            (value_table(&r.hosts))
            @for ((tier, wave), targets) in &waves {
                h3 { (tier) ", wave " (wave) }
                table {
                    thead { tr { th { "workspace" } th { "host" } th { "status" } th { "reason" }
                        th { "from" } th { "to" } th { "attempts" } th { "updated" } } }
                    tbody { @for t in targets {
                        tr.(t.status) { td { a href={ "/ui/workspaces/" (t.name) } { (t.name) } }
                            td { (t.host) } td.status { (t.status) }
                            td { (t.status_reason.clone().unwrap_or_default()) }
                            td { (t.from_digest.as_ref().map(short).unwrap_or_default()) }
                            td { (short(&t.to_digest)) } td { (t.attempts) } td { (time(&t.updated_at)) } }
                    } }
                }
            }
            @let failed: Vec<_> = r.workspaces.iter().filter(|t| t.status == "failed").collect();
            @if !failed.is_empty() {
                h2 { "Failures" }
                ul { @for t in failed { li { (t.name) ": " (t.status_reason.clone().unwrap_or_else(|| "see the workspace's history".into())) } } }
            }
            @if !r.analysis.is_empty() {
                h2 { "Analysis" }
                (value_table(&r.analysis))
            }
        })
    }
    .await;
    done(&who, &format!("Rollout {id}"), body)
}

pub async fn workspace(
    who: Signed,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    let body = async {
        let Json(w) = workspaces::show(State(state.clone()), Path(name.clone())).await?;
        let Json(snaps) = snapshots::list(
            State(state.clone()),
            ApiQuery(snapshots::ListQuery {
                workspace: Some(name.clone()),
            }),
        )
        .await?;
        let parsed = crate::domain::WorkspaceName::parse(&name)
            .map_err(|e| ApiError::bad_request("invalid_name", format!("name: {e}")))?;
        let row_id = state.store.workspace(&parsed).await?.id;
        let history = state.store.update_history(row_id, UPDATE_HISTORY).await?;
        let now = state.clock.now();
        let mut phases = Vec::with_capacity(history.len());
        for a in &history {
            phases.push(state.store.update_phases(a.row.id, now).await?);
        }
        let subject = format!("workspace:{name}");
        let trail: Vec<Event> = recent_events(&state)
            .await?
            .into_iter()
            .filter(|e| e.subject == subject)
            .collect();
        let spec = serde_json::to_string_pretty(&w.spec).unwrap_or_default();
        Ok::<_, ApiError>(html! {
            p { "state " strong.state { (w.state.as_str()) } " · health " (w.health.as_str())
                " · tier " (w.update_tier.as_str()) " · mode " (w.update_mode.as_str())
                " · host " (w.host) }
            p { "image " (w.image) " · running " code { (w.actual_digest.as_ref().map(short).unwrap_or_default()) }
                " · desired " code { (w.desired_digest.as_ref().map(short).unwrap_or_default()) } }
            @if let Some(l) = &w.last_update {
                p { "last update: " (l.result.as_str()) " at " (time(&l.at))
                    @if let Some(e) = &l.error { " — " (e) } }
            }
            h2 { "Spec" }
            pre { (spec) }
            h2 { "Update history" }
            table.history {
                thead { tr { th { "#" } th { "kind" } th { "phase" } th { "from" } th { "to" }
                    th { "started" } th { "took" } th { "rollout" } th { "error" } } }
                tbody { @for (a, spans) in history.iter().zip(&phases) {
                    tr { td { (a.row.id) } td { (a.row.kind.as_str()) } td.phase { (a.row.phase.as_str()) }
                        td { (a.row.from_digest.as_ref().map(short).unwrap_or_default()) }
                        td { (short(&a.row.to_digest)) } td { (time(&a.started_at)) }
                        td { (took(a, now)) }
                        td { @if let Some(r) = a.row.rollout_id { a href={ "/ui/rollouts/" (r) } { (r) } } }
                        td { (a.row.error.clone().unwrap_or_default()) } }
                    @if !spans.is_empty() { tr.phases { td colspan="9" { (phase_table(spans)) } } }
                } }
            }
            h2 { "Snapshots" }
            table {
                thead { tr { th { "id" } th { "volume" } th { "state" } th { "size" } th { "created" } th { "" } } }
                tbody { @for s in &snaps {
                    tr { td { (s.id) } td { (s.volume) } td { (s.state.as_str()) } td { (s.size_bytes) }
                        td { (time(&s.created_at)) }
                        td { (action(&who, "Restore", "restore", &s.id.to_string(), ""))
                            @if s.protected { (action(&who, "Release", "release", &s.id.to_string(), "")) } } }
                } }
            }
            h2 { "Audit trail (updates and changes)" }
            (events_table(trail.iter().rev()))
        })
    }
    .await;
    done(&who, &format!("Workspace {name}"), body)
}

/// Every phase an attempt went through: when it began and how long it lasted.
fn phase_table(spans: &[crate::store::PhaseSpan]) -> maud::Markup {
    html! { table.phases {
        thead { tr { th { "phase" } th { "entered" } th { "duration" } } }
        tbody { @for p in spans { tr { td.phase { (p.phase.as_str()) } td { (time(&p.entered_at)) }
            td { (format!("{:.1} s", p.duration.num_milliseconds() as f64 / 1000.0)) } } } }
    } }
}

/// How long an attempt took, or for a running one how long it has run and how long its
/// current phase has.
fn took(a: &crate::store::UpdateAttempt, now: chrono::DateTime<chrono::Utc>) -> String {
    let secs = |from: chrono::DateTime<chrono::Utc>, to: chrono::DateTime<chrono::Utc>| {
        format!("{:.1} s", (to - from).num_milliseconds() as f64 / 1000.0)
    };
    match a.finished_at {
        Some(end) => secs(a.started_at, end),
        None => format!(
            "{} so far ({} in {})",
            secs(a.started_at, now),
            secs(a.updated_at, now),
            a.row.phase.as_str()
        ),
    }
}

/// The newest [`RECENT_EVENTS`] audit entries, oldest first.
async fn recent_events(state: &AppState) -> Result<Vec<Event>, ApiError> {
    let last = state.store.last_event_id().await?;
    Ok(state
        .store
        .events((last - RECENT_EVENTS).max(0), RECENT_EVENTS)
        .await?)
}

fn events_table<'a>(events: impl Iterator<Item = &'a Event>) -> Markup {
    html! {
        table.events {
            thead { tr { th { "id" } th { "at" } th { "actor" } th { "subject" } th { "action" } th { "detail" } } }
            tbody { @for e in events {
                tr { td { (e.id) } td { (time(&e.at)) } td { (e.actor) } td { (e.subject) }
                    td.action { (e.action) } td { code { (e.detail.to_string()) } } }
            } }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EventFilter {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub actor: String,
}

pub async fn events(
    who: Signed,
    State(state): State<AppState>,
    Query(f): Query<EventFilter>,
) -> Response {
    let body = async {
        let all = recent_events(&state).await?;
        let keep = |e: &&Event| {
            e.action.contains(&f.action)
                && e.subject.contains(&f.subject)
                && e.actor.contains(&f.actor)
        };
        Ok::<_, ApiError>(html! {
            form.filter method="get" action="/ui/events" {
                input type="text" name="action" value=(f.action) placeholder="action";
                input type="text" name="subject" value=(f.subject) placeholder="subject";
                input type="text" name="actor" value=(f.actor) placeholder="actor";
                button type="submit" { "Filter" }
            }
            (events_table(all.iter().rev().filter(keep)))
        })
    }
    .await;
    done(&who, "Events", body)
}
