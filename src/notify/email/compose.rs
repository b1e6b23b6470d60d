//! Who is mailed about an audit event, with which template and values: pure functions
//! over the event and the rows the delivery task read for it.

use serde_json::Value;

use super::templates::Template;
use crate::domain::{EmailAddress, UpdateMode};
use crate::store::{FeedEvent, Release, Workspace};

/// What a changelog placeholder says when the release has none.
const NO_CHANGELOG: &str = "(this release has no changelog)";

/// One mail to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mail {
    pub(super) to: Vec<EmailAddress>,
    pub(super) template: Template,
    pub(super) vars: Vec<(&'static str, String)>,
    /// For logs: the workspace it is about, if any.
    pub(super) workspace: Option<String>,
}

fn detail<'a>(ev: &'a FeedEvent, key: &str) -> Option<&'a str> {
    ev.detail.get(key).and_then(Value::as_str)
}

fn common(ev: &FeedEvent) -> Vec<(&'static str, String)> {
    vec![("event_id", ev.id.to_string()), ("at", ev.at.to_rfc3339())]
}

/// The changelog file read from inside the image when there is one, else the label's.
fn changelog(release: Option<&Release>) -> String {
    let file = release
        .and_then(|r| r.changelog_file.as_ref())
        .map(|f| f.to_text());
    file.as_deref()
        .or_else(|| release.and_then(|r| r.changelog.as_deref()))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .unwrap_or(NO_CHANGELOG)
        .to_owned()
}

/// The release id of a `release.detected` event (`release:N`).
pub(super) fn release_id(ev: &FeedEvent) -> Option<i64> {
    ev.subject.strip_prefix("release:")?.parse().ok()
}

/// "An update is available": one mail per manual-mode workspace with contacts that
/// tracks the release's image and does not run it already.
pub(super) fn update_available(
    ev: &FeedEvent,
    release: &Release,
    workspaces: &[Workspace],
) -> Vec<Mail> {
    workspaces
        .iter()
        .filter(|w| {
            w.update_mode == UpdateMode::Manual
                && !w.spec.contacts.is_empty()
                && w.image.to_string() == release.image
                && w.actual_digest.as_ref() != Some(&release.digest)
        })
        .map(|w| {
            let mut vars = common(ev);
            vars.extend([
                ("workspace", w.name.to_string()),
                ("image", release.image.clone()),
                ("digest", release.digest.to_string()),
                (
                    "running",
                    w.actual_digest
                        .as_ref()
                        .map_or_else(|| "nothing yet".to_owned(), ToString::to_string),
                ),
                ("changelog", changelog(Some(release))),
            ]);
            Mail {
                to: w.spec.contacts.clone(),
                template: Template::UpdateAvailable,
                vars,
                workspace: Some(w.name.to_string()),
            }
        })
        .collect()
}

/// Whether a `workspace.updated` event is an update from one digest to another (not a
/// workspace's first start, not a restore), which its contacts hear about.
pub(super) fn is_update(ev: &FeedEvent) -> bool {
    ev.action == "update_succeeded"
        && matches!((detail(ev, "from"), detail(ev, "to")), (Some(f), Some(t)) if f != t)
}

/// "Your workspace was updated", to the workspace's contacts (none: no mail).
/// `release` is the release of the digest it now runs, if one is recorded.
pub(super) fn updated(ev: &FeedEvent, w: &Workspace, release: Option<&Release>) -> Option<Mail> {
    if w.spec.contacts.is_empty() || !is_update(ev) {
        return None;
    }
    let mut vars = common(ev);
    vars.extend([
        ("workspace", w.name.to_string()),
        ("image", w.image.to_string()),
        ("from", detail(ev, "from").unwrap_or_default().to_owned()),
        ("to", detail(ev, "to").unwrap_or_default().to_owned()),
        ("host", w.host.to_string()),
        ("changelog", changelog(release)),
    ]);
    Some(Mail {
        to: w.spec.contacts.clone(),
        template: Template::Updated,
        vars,
        workspace: Some(w.name.to_string()),
    })
}

/// The admins' mail about a quarantine, or an aborted rollout; None for other events
/// (or when no admin is configured).
pub(super) fn for_admins(kind: &str, ev: &FeedEvent, admins: &[EmailAddress]) -> Option<Mail> {
    if admins.is_empty() {
        return None;
    }
    let mut vars = common(ev);
    let template = match kind {
        "workspace.quarantined" => {
            vars.extend([
                ("workspace", ev.workspace.clone().unwrap_or_default()),
                ("host", detail(ev, "host").unwrap_or("its host").to_owned()),
                (
                    "error",
                    detail(ev, "error").unwrap_or("not recorded").to_owned(),
                ),
            ]);
            Template::Quarantined
        }
        "rollout.state_changed" if detail(ev, "to") == Some("aborted") => {
            let rollout = ev.rollout_id.map_or_else(
                || ev.subject.trim_start_matches("rollout:").to_owned(),
                |id| id.to_string(),
            );
            vars.extend([
                ("rollout", rollout),
                ("from", detail(ev, "from").unwrap_or("running").to_owned()),
                (
                    "reason",
                    detail(ev, "reason").unwrap_or("not recorded").to_owned(),
                ),
            ]);
            Template::RolloutAborted
        }
        _ => return None,
    };
    Some(Mail {
        to: admins.to_vec(),
        template,
        vars,
        workspace: ev.workspace.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev(subject: &str, action: &str, detail: Value) -> FeedEvent {
        FeedEvent {
            id: 9,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            actor: "system".into(),
            subject: subject.into(),
            action: action.into(),
            detail,
            rollout_id: subject
                .strip_prefix("rollout:")
                .and_then(|r| r.parse().ok()),
            workspace: subject.strip_prefix("workspace:").map(Into::into),
        }
    }

    fn admins() -> Vec<EmailAddress> {
        vec![EmailAddress::parse("ops@example.com").unwrap()]
    }

    #[test]
    fn admins_hear_of_quarantines_and_aborted_rollouts_only() {
        let q = ev(
            "workspace:acme",
            "update_quarantined",
            json!({"error": "boom"}),
        );
        let m = for_admins("workspace.quarantined", &q, &admins()).unwrap();
        assert_eq!(m.template, Template::Quarantined);
        assert!(m.vars.contains(&("error", "boom".to_owned())));
        assert!(for_admins("workspace.quarantined", &q, &[]).is_none());
        let aborted = ev(
            "rollout:4",
            "rollout.transition",
            json!({"from": "canary", "to": "aborted", "reason": "3 failed"}),
        );
        let m = for_admins("rollout.state_changed", &aborted, &admins()).unwrap();
        assert_eq!(m.template, Template::RolloutAborted);
        assert!(m.vars.contains(&("rollout", "4".to_owned())));
        let soaking = ev(
            "rollout:4",
            "rollout.transition",
            json!({"from": "canary", "to": "soaking"}),
        );
        assert!(for_admins("rollout.state_changed", &soaking, &admins()).is_none());
        assert!(for_admins("workspace.updated", &q, &admins()).is_none());
    }

    #[test]
    fn only_a_move_between_digests_is_an_update() {
        let d = |f: Value, t: Value| {
            ev(
                "workspace:acme",
                "update_succeeded",
                json!({"from": f, "to": t}),
            )
        };
        assert!(is_update(&d(json!("sha256:a"), json!("sha256:b"))));
        assert!(
            !is_update(&d(Value::Null, json!("sha256:b"))),
            "a first start"
        );
        assert!(!is_update(&d(json!("sha256:b"), json!("sha256:b"))));
        let rolled = ev(
            "workspace:acme",
            "update_rolled_back",
            json!({"from": "a", "to": "b"}),
        );
        assert!(!is_update(&rolled));
    }

    #[test]
    fn release_ids_come_from_the_subject() {
        assert_eq!(
            release_id(&ev("release:12", "release.detected", json!({}))),
            Some(12)
        );
        assert_eq!(release_id(&ev("rollout:12", "x", json!({}))), None);
    }

    #[test]
    fn the_changelog_file_is_preferred_to_the_label() {
        let at = chrono::DateTime::from_timestamp(0, 0).expect("epoch");
        let mut r = Release {
            id: 1,
            image: "reg.example/app:stable".into(),
            digest: crate::domain::Digest::parse(&format!("sha256:{}", "a".repeat(64)))
                .expect("digest"),
            detected_at: at,
            changelog: Some("from the label".into()),
            changelog_file: None,
            status: crate::domain::ReleaseStatus::Queued,
            status_reason: None,
            updated_at: at,
            version: 0,
        };
        assert_eq!(changelog(Some(&r)), "from the label");
        let json = br#"{"version": "2.0", "sections": [{"title": "Added", "items": ["x"]}]}"#;
        r.changelog_file = Some(crate::domain::ChangelogFile::parse(
            "/c.json", json, 70, 1024,
        ));
        assert_eq!(changelog(Some(&r)), "2.0\n\nAdded\n  - x");
        r.changelog = None;
        r.changelog_file = None;
        assert_eq!(changelog(Some(&r)), NO_CHANGELOG);
    }
}
