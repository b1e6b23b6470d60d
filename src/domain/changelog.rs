//! A changelog file read from inside a release's image (`[images] changelog_file`), as
//! stored with the release and shown by the API and the CLI.
//!
//! Two formats: the structured one, a JSON object
//! `{"version": "…", "date": "…", "sections": [{"title": "…", "items": ["…"]}]}`, and
//! plain text: anything that is not valid JSON of that shape is kept as text, never
//! refused. A file larger than the limit is cut at the limit, kept as text and says so.
//! Pure: the bytes come from the adapter that read them.

use serde::{Deserialize, Serialize};

/// How the file was understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangelogFormat {
    /// `{version, date, sections}`.
    Structured,
    /// Anything else, kept as it was (invalid UTF-8 replaced).
    Text,
}

/// One titled list of changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangelogSection {
    pub title: String,
    pub items: Vec<String>,
}

/// A changelog file from inside an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangelogFile {
    /// The file that was read, after following symlinks inside the image.
    pub path: String,
    pub format: ChangelogFormat,
    /// Structured only.
    pub version: Option<String>,
    /// Structured only, as the file wrote it.
    pub date: Option<String>,
    /// Structured only; empty for text.
    pub sections: Vec<ChangelogSection>,
    /// Text only: the file's content (its first `limit` bytes when truncated).
    pub text: Option<String>,
    /// The file was larger than the limit and only its beginning is kept.
    pub truncated: bool,
    /// The file's size in bytes.
    pub size: u64,
    /// Why the file is not shown whole, for an operator.
    pub note: Option<String>,
}

/// The structured shape, as read: `sections` is required, `version` and `date` optional.
#[derive(Deserialize)]
struct Structured {
    version: Option<String>,
    date: Option<String>,
    sections: Vec<ChangelogSection>,
}

impl ChangelogFile {
    /// Understands `head`, the first bytes of the file at `path` whose whole `size` is
    /// known; `limit` is the most that was read. `head` longer than `limit` is cut.
    pub fn parse(path: &str, head: &[u8], size: u64, limit: usize) -> Self {
        let truncated = size > limit as u64 || head.len() > limit;
        let head = &head[..head.len().min(limit)];
        if !truncated && let Ok(s) = serde_json::from_slice::<Structured>(head) {
            return Self {
                path: path.to_owned(),
                format: ChangelogFormat::Structured,
                version: s.version,
                date: s.date,
                sections: s.sections,
                text: None,
                truncated: false,
                size,
                note: None,
            };
        }
        let mut text = String::from_utf8_lossy(head).into_owned();
        if truncated {
            // A cut inside a multi-byte character leaves a replacement character at the
            // end; drop it rather than show half a character.
            while text.ends_with('\u{fffd}') {
                text.pop();
            }
        }
        Self {
            path: path.to_owned(),
            format: ChangelogFormat::Text,
            version: None,
            date: None,
            sections: Vec::new(),
            text: Some(text),
            truncated,
            size,
            note: truncated.then(|| {
                format!("the file holds {size} bytes, over the limit of {limit}: only its first {limit} bytes are kept, as text")
            }),
        }
    }

    /// The changelog as plain text for a reader (a mail): the version and date, then
    /// each section's title and its items; a text file as it was.
    pub fn to_text(&self) -> String {
        if self.format == ChangelogFormat::Text {
            return self.text.clone().unwrap_or_default();
        }
        let mut out = String::new();
        match (&self.version, &self.date) {
            (Some(v), Some(d)) => out.push_str(&format!("{v} ({d})\n")),
            (Some(v), None) => out.push_str(&format!("{v}\n")),
            (None, Some(d)) => out.push_str(&format!("{d}\n")),
            (None, None) => {}
        }
        for s in &self.sections {
            out.push_str(&format!("\n{}\n", s.title));
            for item in &s.items {
                out.push_str(&format!("  - {item}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_structured_file_reads_as_text_with_its_sections_and_items() {
        let json = br#"{"version": "1.2.0", "date": "2026-11-30",
            "sections": [{"title": "Added", "items": ["dark mode", "CSV export"]},
                         {"title": "Fixed", "items": ["login loop"]}]}"#;
        let f = ChangelogFile::parse("/app/changelogs/1.2.0.json", json, 200, 1024);
        assert_eq!(
            f.to_text(),
            "1.2.0 (2026-11-30)\n\nAdded\n  - dark mode\n  - CSV export\n\nFixed\n  - login loop\n"
        );
        let t = ChangelogFile::parse("/app/changelogs/latest.json", b"just words\n", 11, 1024);
        assert_eq!(t.to_text(), "just words\n");
    }

    const LIMIT: usize = 64 * 1024;

    fn parse(s: &str) -> ChangelogFile {
        ChangelogFile::parse(
            "/app/changelogs/1.2.json",
            s.as_bytes(),
            s.len() as u64,
            LIMIT,
        )
    }

    #[test]
    fn the_structured_format_keeps_version_date_and_sections_in_order() {
        let c = parse(
            r#"{"version":"1.2.0","date":"2026-11-30","sections":[
                {"title":"Added","items":["dark mode","export"]},
                {"title":"Fixed","items":[]}],"extra":true}"#,
        );
        assert_eq!(c.format, ChangelogFormat::Structured);
        assert_eq!(c.version.as_deref(), Some("1.2.0"));
        assert_eq!(c.date.as_deref(), Some("2026-11-30"));
        assert_eq!(c.sections.len(), 2);
        assert_eq!(c.sections[0].title, "Added");
        assert_eq!(c.sections[0].items, ["dark mode", "export"]);
        assert!(c.sections[1].items.is_empty());
        assert_eq!((c.text, c.truncated, c.note), (None, false, None));
    }

    #[test]
    fn version_and_date_may_be_absent_but_sections_may_not() {
        let c = parse(r#"{"sections":[{"title":"Fixed","items":["a crash"]}]}"#);
        assert_eq!(c.format, ChangelogFormat::Structured);
        assert_eq!((c.version, c.date), (None, None));
        let c = parse(r#"{"version":"1","date":"today"}"#);
        assert_eq!(c.format, ChangelogFormat::Text);
    }

    #[test]
    fn anything_else_is_kept_as_text() {
        for s in [
            "## 1.2.0\n- dark mode\n",
            "",
            "[1, 2]",
            r#"{"version":"1","sections":[{"title":"x","items":[1]}]}"#,
            r#"{"version":2,"sections":[]}"#,
            "{\"sections\": [",
        ] {
            let c = parse(s);
            assert_eq!(c.format, ChangelogFormat::Text, "{s}");
            assert_eq!(c.text.as_deref(), Some(s));
            assert!(c.sections.is_empty() && !c.truncated && c.note.is_none());
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let c = ChangelogFile::parse("/f", b"caf\xe9\n", 5, LIMIT);
        assert_eq!(c.text.as_deref(), Some("caf\u{fffd}\n"));
    }

    #[test]
    fn a_file_over_the_limit_keeps_its_beginning_as_text_and_says_so() {
        let big = format!(r#"{{"version":"1","sections":[]}}{}"#, " ".repeat(LIMIT));
        let c = ChangelogFile::parse("/f", &big.as_bytes()[..LIMIT], big.len() as u64, LIMIT);
        assert_eq!(c.format, ChangelogFormat::Text);
        assert!(c.truncated);
        assert_eq!(c.size, big.len() as u64);
        assert_eq!(c.text.as_ref().map(String::len), Some(LIMIT));
        let note = c.note.unwrap_or_default();
        assert!(note.contains("over the limit of 65536"), "{note}");
    }

    #[test]
    fn a_cut_inside_a_character_drops_the_half_character() {
        let s = "é".repeat(10); // 20 bytes
        let c = ChangelogFile::parse("/f", &s.as_bytes()[..5], 20, 5);
        assert_eq!(c.text.as_deref(), Some("éé"));
        assert!(c.truncated);
    }

    #[test]
    fn it_round_trips_through_json_as_stored() {
        let c = parse(r#"{"version":"1","date":"d","sections":[{"title":"t","items":["i"]}]}"#);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ChangelogFile>(&json).unwrap(), c);
    }
}
