//! The mails' texts: a plain-text and an HTML template per mail, compiled into the
//! binary and each replaceable by a file of the same name in `[email] templates`.
//! A text template's first line is `Subject: …`. `{{name}}` is replaced by the value
//! of `name` (HTML-escaped in the HTML body; line breaks dropped in the subject); an
//! unknown name stays as written, so a typo shows in the mail instead of vanishing.

use std::path::{Path, PathBuf};

/// One kind of mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Template {
    /// To a manual-mode workspace's contacts: a release it does not run yet.
    UpdateAvailable,
    /// To a workspace's contacts: an update succeeded.
    Updated,
    /// To the admins: a rollback failed and the workspace is quarantined.
    Quarantined,
    /// To the admins: a rollout was aborted.
    RolloutAborted,
}

impl Template {
    pub(super) const ALL: [Template; 4] = [
        Template::UpdateAvailable,
        Template::Updated,
        Template::Quarantined,
        Template::RolloutAborted,
    ];

    /// The file name without extension.
    pub(super) fn name(self) -> &'static str {
        match self {
            Template::UpdateAvailable => "update_available",
            Template::Updated => "updated",
            Template::Quarantined => "quarantined",
            Template::RolloutAborted => "rollout_aborted",
        }
    }

    /// The built-in (text, HTML) pair.
    fn builtin(self) -> (&'static str, &'static str) {
        match self {
            Template::UpdateAvailable => (
                include_str!("templates/update_available.txt"),
                include_str!("templates/update_available.html"),
            ),
            Template::Updated => (
                include_str!("templates/updated.txt"),
                include_str!("templates/updated.html"),
            ),
            Template::Quarantined => (
                include_str!("templates/quarantined.txt"),
                include_str!("templates/quarantined.html"),
            ),
            Template::RolloutAborted => (
                include_str!("templates/rollout_aborted.txt"),
                include_str!("templates/rollout_aborted.html"),
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("email template {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("email template {path}: the first line must be `Subject: …`")]
    NoSubject { path: PathBuf },
}

/// A mail ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rendered {
    pub(super) subject: String,
    pub(super) text: String,
    pub(super) html: String,
}

/// Every template's (subject, text body, HTML body).
pub(super) struct Templates {
    pairs: Vec<(Template, String, String, String)>,
}

impl Templates {
    /// The built-in templates, each replaced by `dir/<name>.txt` or `.html` when that
    /// file exists.
    pub(super) fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut pairs = Vec::new();
        for t in Template::ALL {
            let (text, html) = t.builtin();
            let text = read_override(dir, t.name(), "txt")?.unwrap_or_else(|| text.to_owned());
            let html = read_override(dir, t.name(), "html")?.unwrap_or_else(|| html.to_owned());
            let (subject, body) = split_subject(&text).ok_or_else(|| TemplateError::NoSubject {
                path: dir.map_or_else(
                    || PathBuf::from(format!("(built in) {}.txt", t.name())),
                    |d| d.join(format!("{}.txt", t.name())),
                ),
            })?;
            pairs.push((t, subject.to_owned(), body.to_owned(), html));
        }
        Ok(Self { pairs })
    }

    /// `t` with `vars` substituted.
    pub(super) fn render(&self, t: Template, vars: &[(&str, String)]) -> Rendered {
        let (subject, text, html) = self
            .pairs
            .iter()
            .find(|p| p.0 == t)
            .map(|p| (p.1.as_str(), p.2.as_str(), p.3.as_str()))
            .unwrap_or_default();
        Rendered {
            subject: substitute(subject, vars, Escape::Header),
            text: substitute(text, vars, Escape::None),
            html: substitute(html, vars, Escape::Html),
        }
    }
}

fn read_override(
    dir: Option<&Path>,
    name: &str,
    ext: &str,
) -> Result<Option<String>, TemplateError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let path = dir.join(format!("{name}.{ext}"));
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TemplateError::Read { path, source }),
    }
}

/// (subject, body) of a text template.
fn split_subject(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let subject = first.strip_prefix("Subject:")?.trim();
    Some((subject, rest))
}

#[derive(Clone, Copy)]
enum Escape {
    None,
    Html,
    /// One line: CR and LF become spaces.
    Header,
}

fn substitute(template: &str, vars: &[(&str, String)], escape: Escape) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            let name = after[..end].trim();
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (v, end))
        });
        match value {
            Some((v, end)) => {
                match escape {
                    Escape::None => out.push_str(v),
                    Escape::Html => html_escape(v, &mut out),
                    Escape::Header => out.push_str(&v.replace(['\r', '\n'], " ")),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn html_escape(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(&'static str, String)> {
        vec![
            ("workspace", "acme".to_owned()),
            (
                "changelog",
                "- fix <script>alert(1)</script> & more".to_owned(),
            ),
        ]
    }

    #[test]
    fn placeholders_are_replaced_and_escaped_in_html_only() {
        assert_eq!(
            substitute("ws {{workspace}}: {{ changelog }}", &vars(), Escape::None),
            "ws acme: - fix <script>alert(1)</script> & more"
        );
        assert_eq!(
            substitute("<pre>{{changelog}}</pre>", &vars(), Escape::Html),
            "<pre>- fix &lt;script&gt;alert(1)&lt;/script&gt; &amp; more</pre>"
        );
        assert_eq!(
            substitute("{{nope}} {{x", &vars(), Escape::None),
            "{{nope}} {{x"
        );
        let v = vec![("workspace", "a\r\nBcc: x@y.z".to_owned())];
        assert_eq!(
            substitute("[{{workspace}}]", &v, Escape::Header),
            "[a  Bcc: x@y.z]"
        );
    }

    #[test]
    fn every_builtin_has_a_subject_and_uses_known_names() {
        let t = Templates::load(None).unwrap();
        for k in Template::ALL {
            let r = t.render(k, &vars());
            assert!(!r.subject.is_empty(), "{k:?}");
            assert!(r.html.contains("<html>"), "{k:?}");
        }
        let r = t.render(Template::Updated, &vars());
        assert!(r.subject.contains("acme"), "{}", r.subject);
        assert!(r.text.contains("<script>"), "{}", r.text);
        assert!(r.html.contains("&lt;script&gt;"), "{}", r.html);
    }

    #[test]
    fn a_file_in_the_directory_replaces_one_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("updated.txt"),
            "Subject: new {{workspace}}\nbody {{workspace}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("quarantined.txt"), "no subject\n").unwrap();
        let e = Templates::load(Some(dir.path())).err().unwrap();
        assert!(e.to_string().contains("quarantined.txt"), "{e}");
        std::fs::remove_file(dir.path().join("quarantined.txt")).unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t.render(Template::Updated, &vars());
        assert_eq!(
            (r.subject.as_str(), r.text.as_str()),
            ("new acme", "body acme\n")
        );
        assert!(r.html.contains("<html>"), "the HTML stays built in");
    }
}
