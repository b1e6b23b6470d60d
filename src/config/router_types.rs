//! `[router]`: how a start-first update switches traffic from the old container to the
//! new one, besides the workspace's Docker network aliases (which the new container
//! always takes over). `none`: aliases only (a proxy on a user-defined network resolving
//! the alias). `file`: an upstream file per workspace, written atomically (write, then
//! rename) from `template`, then `reload` runs (nginx by default; Caddy and Traefik read
//! file providers the same way). `webhook`: a POST to `url` for anything else (an edge
//! worker reading a key-value store). The adapter is `reconciler::router`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::webhook_url::WebhookUrl;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    #[default]
    None,
    File,
    Webhook,
}

/// An nginx `upstream` block named after the workspace.
pub const NGINX_UPSTREAM: &str = "upstream sluice_{workspace} {\n    server {address}:{port};\n}\n";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSettings {
    pub kind: RouterKind,
    /// `file`: where a workspace's upstream goes; `{workspace}` is its name.
    pub file: Option<PathBuf>,
    /// `file`: the upstream's text; `{workspace}`, `{container}`, `{address}`, `{port}`.
    pub template: String,
    /// `file`: the command run after each write (program and arguments), e.g.
    /// `["nginx", "-s", "reload"]`; empty: none.
    #[serde(deserialize_with = "command")]
    pub reload: Vec<String>,
    /// `webhook`: where the route is POSTed (a secret: never printed whole).
    pub url: Option<WebhookUrl>,
    /// How long a reload or a webhook may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// After the switch, how long the old container keeps running before it is stopped:
    /// the proxy finishes what it sent there, and a reloaded proxy (`nginx -s reload`
    /// returns before the new workers serve) has its old workers drained, on a busy
    /// machine too.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            kind: RouterKind::None,
            file: None,
            template: NGINX_UPSTREAM.to_owned(),
            reload: vec!["nginx".into(), "-s".into(), "reload".into()],
            url: None,
            timeout: Duration::from_secs(10),
            drain: Duration::from_secs(5),
        }
    }
}

impl RouterSettings {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.timeout.is_zero() {
            return Err(("router.timeout", "must be longer than 0s".into()));
        }
        if self.drain > Duration::from_secs(600) {
            return Err(("router.drain", "must be at most 10m".into()));
        }
        match self.kind {
            RouterKind::None => Ok(()),
            RouterKind::File => {
                let Some(f) = &self.file else {
                    return Err((
                        "router.file",
                        "kind = \"file\" needs the file to write".into(),
                    ));
                };
                let text = f.to_string_lossy();
                if !f.is_absolute() || !text.contains("{workspace}") {
                    return Err((
                        "router.file",
                        "must be an absolute path naming {workspace}, e.g. /etc/nginx/sluice/{workspace}.conf"
                            .into(),
                    ));
                }
                if !self.template.contains("{address}") {
                    return Err(("router.template", "must name {address}".into()));
                }
                Ok(())
            }
            RouterKind::Webhook if self.url.is_none() => Err((
                "router.url",
                "kind = \"webhook\" needs the URL to POST to".into(),
            )),
            RouterKind::Webhook => Ok(()),
        }
    }
}

/// A command as a list of words; from the environment (`SLUICE__ROUTER__RELOAD`, words
/// separated by commas) a one-word command such as `true` arrives as a boolean, which is
/// still that word.
fn command<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Words {
        List(Vec<String>),
        Word(String),
        Flag(bool),
        Number(i64),
    }
    Ok(match Words::deserialize(d)? {
        Words::List(w) => w,
        Words::Word(w) if w.contains(char::is_whitespace) => {
            return Err(serde::de::Error::custom(format!(
                "a command is a list of words, e.g. [\"nginx\", \"-s\", \"reload\"], not {w:?}"
            )));
        }
        Words::Word(w) => vec![w],
        Words::Flag(b) => vec![b.to_string()],
        Words::Number(n) => vec![n.to_string()],
    })
}
