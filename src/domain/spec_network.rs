//! The parts of a workspace's container spec about the container's identity: its own
//! name (kept from an adopted container, so scripts and DNS that use it keep working),
//! the networks it joins with the aliases it answers to there, and what sluice does when
//! the container is changed behind its back (`drift`). Each value is checked here, at
//! the edge, so a refusal names the field.

use serde::{Deserialize, Serialize};

use super::spec::WorkspaceSpec;
use super::spec_process::{Refusal, refuse};

/// What the reconciler does when the running container's configuration differs from
/// the spec (someone recreated it with other flags): it always reports the drift (event,
/// metric, `workspace show`); `correct` also puts the container back to the spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftAction {
    #[default]
    Correct,
    Report,
}

impl DriftAction {
    #[allow(clippy::trivially_copy_pass_by_ref)] // reason: serde's skip_serializing_if passes a reference
    pub(super) fn is_default(&self) -> bool {
        *self == Self::Correct
    }
}

/// One network the container joins (`docker run --network N --network-alias A`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub name: String,
    /// DNS names other containers on that network reach this one by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl WorkspaceSpec {
    /// The container's name for workspace `name`: `container_name`, else `sluice-<name>`.
    pub fn container_name_for(&self, name: &super::WorkspaceName) -> String {
        self.container_name
            .clone()
            .unwrap_or_else(|| name.container_name())
    }
}

/// Docker's rule for container and network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn docker_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 255
}

/// A DNS name: labels of letters, digits, `-` and `_`, joined by dots.
fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// Checks `container_name`, `network` and `networks`.
pub fn check(spec: &WorkspaceSpec) -> Result<(), Refusal> {
    if let Some(n) = &spec.container_name
        && (n.len() < 2 || !docker_name(n))
    {
        return Err(refuse(
            "container_name",
            n,
            "must be 2 or more of letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        ));
    }
    if let Some(n) = &spec.network {
        if !spec.networks.is_empty() {
            return Err(refuse(
                "networks",
                n,
                "name the networks in `networks` only, not in `network` as well",
            ));
        }
        if !docker_name(n) {
            return Err(refuse("network", n, "is not a Docker network name"));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, n) in spec.networks.iter().enumerate() {
        let field = format!("networks[{i}].name");
        if !docker_name(&n.name) {
            return Err(refuse(&field, &n.name, "is not a Docker network name"));
        }
        if matches!(n.name.as_str(), "host" | "none") || n.name.starts_with("container:") {
            return Err(refuse(
                &field,
                &n.name,
                "the host's or another container's network stack is not a workspace network",
            ));
        }
        if !seen.insert(n.name.as_str()) {
            return Err(refuse(&field, &n.name, "is listed twice"));
        }
        for (j, a) in n.aliases.iter().enumerate() {
            if !dns_name(a) {
                return Err(refuse(
                    &format!("networks[{i}].aliases[{j}]"),
                    a,
                    "must be a DNS name (letters, digits, `-`, `_`, dots)",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(json: serde_json::Value) -> String {
        let spec: WorkspaceSpec = serde_json::from_value(json).unwrap();
        let (field, _, _) = check(&spec).unwrap_err();
        field
    }

    #[test]
    fn networks_and_names_are_checked_naming_the_field() {
        let ok: WorkspaceSpec = serde_json::from_value(serde_json::json!({
            "container_name": "acme-web",
            "networks": [{"name": "front", "aliases": ["web", "api.acme"]}, {"name": "back"}]
        }))
        .unwrap();
        assert_eq!(check(&ok), Ok(()));
        for (json, field) in [
            (
                serde_json::json!({"container_name": "-x"}),
                "container_name",
            ),
            (
                serde_json::json!({"container_name": "a/b"}),
                "container_name",
            ),
            (
                serde_json::json!({"network": "a", "networks": [{"name": "b"}]}),
                "networks",
            ),
            (
                serde_json::json!({"networks": [{"name": "host"}]}),
                "networks[0].name",
            ),
            (
                serde_json::json!({"networks": [{"name": "a"}, {"name": "a"}]}),
                "networks[1].name",
            ),
            (
                serde_json::json!({"networks": [{"name": "a", "aliases": ["ok", "bad alias"]}]}),
                "networks[0].aliases[1]",
            ),
            (serde_json::json!({"network": "bad name"}), "network"),
        ] {
            assert_eq!(refusal(json.clone()), field, "{json}");
        }
    }
}
