//! The container configuration a workspace asks for. Stored as JSON in
//! `workspaces.spec`; the reconciler turns it into a Docker container and compares it
//! with what Docker runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// Everything about a workspace's container except its image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// Environment variables, sorted so that comparisons and hashes are stable.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Named volumes: the tenant's data, snapshotted before every update.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Overrides the image's command when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthProbe>,
    /// Docker restart policy name (`no`, `always`, `unless-stopped`, `on-failure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// A Docker network to attach (the default bridge when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extra labels; `sluice.*` labels are reserved and refused.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// Docker volume name.
    pub name: String,
    /// Absolute path inside the container.
    pub mount: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    pub container: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    /// Host address to bind; `127.0.0.1` when absent, so nothing is exposed by accident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// How the health gate decides a container is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthProbe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Container port probed.
    pub port: u16,
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Expected status; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

fn default_health_path() -> String {
    "/health".to_owned()
}

impl WorkspaceSpec {
    /// Checks what serde cannot: names Docker would refuse, reserved labels, paths.
    pub fn validate(&self) -> Result<(), ParseError> {
        let err = |field: &str, value: &str, reason: &str| {
            let mut e = ParseError::new("workspace spec", value, reason);
            e.reason = format!("{field}: {reason}");
            e
        };
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(err(
                    "env",
                    key,
                    "variable names must be non-empty, without `=`",
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &self.volumes {
            let ok = !v.name.is_empty()
                && v.name.len() <= 128
                && v.name.as_bytes()[0].is_ascii_alphanumeric()
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(err(
                    "volumes.name",
                    &v.name,
                    "must match `[A-Za-z0-9][A-Za-z0-9_.-]*`",
                ));
            }
            if !v.mount.starts_with('/') || v.mount == "/" || v.mount.contains("..") {
                return Err(err(
                    "volumes.mount",
                    &v.mount,
                    "must be an absolute path other than `/`",
                ));
            }
            if !seen.insert(v.mount.as_str()) {
                return Err(err("volumes.mount", &v.mount, "is mounted twice"));
            }
        }
        for p in &self.ports {
            if p.container == 0 {
                return Err(err("ports.container", "0", "must be 1-65535"));
            }
        }
        if let Some(r) = &self.restart
            && !matches!(
                r.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            )
        {
            return Err(err(
                "restart",
                r,
                "must be no, always, unless-stopped or on-failure",
            ));
        }
        if let Some(HealthProbe { http: Some(h) }) = &self.health {
            if !h.path.starts_with('/') {
                return Err(err("health.http.path", &h.path, "must start with `/`"));
            }
            if h.port == 0 {
                return Err(err("health.http.port", "0", "must be 1-65535"));
            }
        }
        for k in self.labels.keys() {
            if k.starts_with("sluice.") {
                return Err(err(
                    "labels",
                    k,
                    "labels starting with `sluice.` are reserved",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_shape_parses_and_validates() {
        let s: WorkspaceSpec = serde_json::from_str(
            r#"{"env":{"K":"V"},"volumes":[{"name":"acme-data","mount":"/data"}],
                "ports":[{"container":8080,"host":18080}],"command":["sh"],
                "health":{"http":{"port":8080,"path":"/health"}}}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.health.unwrap().http.unwrap().path, "/health");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let s = WorkspaceSpec {
            volumes: vec![VolumeMount {
                name: "../x".into(),
                mount: "/data".into(),
            }],
            ..Default::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("volumes.name")
        );
        let s = WorkspaceSpec {
            labels: [("sluice.managed".to_owned(), "false".to_owned())].into(),
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("reserved"));
        assert!(serde_json::from_str::<WorkspaceSpec>(r#"{"envv":{}}"#).is_err());
    }
}
