//! Which audit events become notifications, and what is sent: pure functions.

use serde_json::{Value, json};

use crate::store::FeedEvent;

/// The notification kinds a sink can subscribe to (`[[notifications.webhooks]] events`).
pub const KINDS: &[&str] = &[
    "release.detected",
    "rollout.state_changed",
    "workspace.updated",
    "workspace.rolled_back",
    "workspace.quarantined",
];

/// The kind of notification an audit event is, if any. Matches the actions written by
/// the watcher (`release.detected`), the controller (`rollout.*` on `rollout:N`) and the
/// reconciler (`update_succeeded` / `update_rolled_back` / `update_quarantined`).
pub fn classify(ev: &FeedEvent) -> Option<&'static str> {
    let a = ev.action.as_str();
    let on_workspace = ev.subject.starts_with("workspace:");
    if a.contains("quarantin") {
        Some("workspace.quarantined")
    } else if on_workspace && a.ends_with("rolled_back") {
        Some("workspace.rolled_back")
    } else if on_workspace && (a.ends_with("succeeded") || a == "workspace.updated") {
        Some("workspace.updated")
    } else if a == "release.detected" {
        Some("release.detected")
    } else if ev.subject.starts_with("rollout:") && a.starts_with("rollout.") {
        Some("rollout.state_changed")
    } else {
        None
    }
}

/// One line for people (and the Slack form).
pub fn text(kind: &str, ev: &FeedEvent) -> String {
    let d = &ev.detail;
    let s = |k: &str| d.get(k).and_then(Value::as_str).map(short);
    match kind {
        "release.detected" => format!(
            "sluice: new release of {} ({})",
            s("image").unwrap_or_else(|| ev.subject.clone()),
            s("digest").unwrap_or_default()
        ),
        "rollout.state_changed" => match (s("from"), s("to")) {
            (Some(f), Some(t)) => format!("sluice: {} {f} → {t}", ev.subject.replace(':', " ")),
            _ => format!("sluice: {} {}", ev.subject.replace(':', " "), ev.action),
        },
        "workspace.updated" => format!(
            "sluice: workspace {}{} updated to {}",
            ev.workspace.clone().unwrap_or_default(),
            s("host").map(|h| format!(" on {h}")).unwrap_or_default(),
            s("to").unwrap_or_default()
        ),
        "workspace.rolled_back" => format!(
            "sluice: workspace {} rolled back to {}{}",
            ev.workspace.clone().unwrap_or_default(),
            s("from").unwrap_or_else(|| "its previous digest".into()),
            s("error").map(|e| format!(": {e}")).unwrap_or_default()
        ),
        "workspace.quarantined" => format!(
            ":rotating_light: sluice: workspace {} QUARANTINED (rollback failed); an operator must act{}",
            ev.workspace.clone().unwrap_or_default(),
            s("error").map(|e| format!(": {e}")).unwrap_or_default()
        ),
        _ => format!("sluice: {} {}", ev.subject, ev.action),
    }
}

fn short(v: &str) -> String {
    match v.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 => format!("sha256:{}", &h[..12]),
        _ => v.to_owned(),
    }
}

/// The JSON body for a sink of `format` (`json` or `slack`).
pub fn body(kind: &str, ev: &FeedEvent, format: &str) -> Value {
    if format == "slack" {
        return json!({ "text": text(kind, ev) });
    }
    json!({
        "event": kind,
        "id": ev.id,
        "at": ev.at,
        "actor": ev.actor,
        "subject": ev.subject,
        "action": ev.action,
        "workspace": ev.workspace,
        // The Docker host of a workspace's update (what its agent recorded).
        "host": ev.detail.get("host"),
        "rollout_id": ev.rollout_id,
        "detail": ev.detail,
        "text": text(kind, ev),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(subject: &str, action: &str, detail: Value) -> FeedEvent {
        FeedEvent {
            id: 7,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            actor: "system".into(),
            subject: subject.into(),
            action: action.into(),
            detail,
            rollout_id: Some(3),
            workspace: subject.strip_prefix("workspace:").map(Into::into),
        }
    }

    #[test]
    fn actions_of_every_loop_are_classified() {
        let c = |s, a| classify(&ev(s, a, json!({})));
        assert_eq!(c("release:4", "release.detected"), Some("release.detected"));
        assert_eq!(c("release:4", "release.superseded"), None);
        assert_eq!(
            c("rollout:3", "rollout.transition"),
            Some("rollout.state_changed")
        );
        assert_eq!(
            c("workspace:acme", "update_succeeded"),
            Some("workspace.updated")
        );
        assert_eq!(
            c("workspace:acme", "update_rolled_back"),
            Some("workspace.rolled_back")
        );
        assert_eq!(
            c("workspace:acme", "update_quarantined"),
            Some("workspace.quarantined")
        );
        assert_eq!(c("workspace:acme", "workspace.changed"), None);
        assert_eq!(c("fleet", "fleet.mode_changed"), None);
    }

    #[test]
    fn bodies_in_both_formats() {
        let e = ev(
            "rollout:3",
            "rollout.transition",
            json!({"from": "canary", "to": "soaking"}),
        );
        let j = body("rollout.state_changed", &e, "json");
        assert_eq!(j["event"], "rollout.state_changed");
        assert_eq!(j["rollout_id"], 3);
        assert_eq!(j["detail"]["to"], "soaking");
        let s = body("rollout.state_changed", &e, "slack");
        assert_eq!(s, json!({"text": "sluice: rollout 3 canary → soaking"}));
    }

    #[test]
    fn a_workspace_update_names_its_host() {
        let e = ev(
            "workspace:acme",
            "update_succeeded",
            json!({"to": format!("sha256:{}", "ab".repeat(32)), "host": "web-2"}),
        );
        let j = body("workspace.updated", &e, "json");
        assert_eq!(j["host"], "web-2");
        assert_eq!(
            j["text"],
            "sluice: workspace acme on web-2 updated to sha256:abababababab"
        );
        let without = ev("workspace:acme", "update_succeeded", json!({"to": "x"}));
        assert!(body("workspace.updated", &without, "json")["host"].is_null());
    }
}
