//! Plain-text tables for people.

use serde_json::Value;

/// Left-aligned columns separated by two spaces; the header in capitals.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

/// A JSON value as a table cell: strings bare, null as `-`, digests shortened.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => short_digest(s),
        other => other.to_string(),
    }
}

/// One table row per item: the cells of `keys`, in order.
pub fn rows(items: &[Value], keys: &[&str]) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|item| keys.iter().map(|k| cell(&item[*k])).collect())
        .collect()
}

/// `sha256:0123456789ab…` → `sha256:0123456789ab`.
pub fn short_digest(s: &str) -> String {
    match s.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 => format!("sha256:{}", &hex[..12]),
        _ => s.to_owned(),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = UNITS[0];
    for u in UNITS {
        v /= 1024.0;
        unit = u;
        if v < 1024.0 {
            break;
        }
    }
    format!("{v:.1} {unit}")
}

/// `key: value` lines for one object.
pub fn fields(v: &Value, keys: &[&str]) -> String {
    let w = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    keys.iter()
        .map(|k| format!("{k:<w$}  {}\n", cell(&v[*k])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = render(
            &["name", "tier"],
            &[
                vec!["a".into(), "canary".into()],
                vec!["longer".into(), "production".into()],
            ],
        );
        assert_eq!(t, "NAME    TIER\na       canary\nlonger  production\n");
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 * 1024 * 1024), "12.0 MiB");
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
    }
}
