//! `sluice rollout watch`: polls the rollout and draws progress per tier until it ends.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{Client, ClientError};
use super::table::short_digest;
use crate::clock::{Clock, SystemClock};

const BAR: usize = 24;
const TERMINAL: &[&str] = &["completed", "aborted", "rolled_back"];
const FAILED_END: &[&str] = &["aborted", "rolled_back"];
const DONE: &[&str] = &["updated", "failed", "rolled_back", "skipped"];
const STATUSES: &[&str] = &[
    "pending",
    "updating",
    "updated",
    "failed",
    "rolled_back",
    "skipped",
];

fn countdown(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (until - now).num_seconds().max(0);
    format!("{}m {:02}s", secs / 60, secs % 60)
}

/// The progress frame for one rollout at `now`: a header line and one line per tier.
pub fn render_progress(r: &Value, now: DateTime<Utc>) -> String {
    let state = r["state"].as_str().unwrap_or("?");
    let mut s = format!(
        "rollout {}  {}  {}  state: {state}",
        r["id"],
        r["image"].as_str().unwrap_or("?"),
        short_digest(r["digest"].as_str().unwrap_or("?")),
    );
    if let Some(end) = r["soak_ends_at"]
        .as_str()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        && state == "soaking"
    {
        s.push_str(&format!("  (soak ends in {})", countdown(end, now)));
    }
    s.push('\n');
    let targets = r["workspaces"].as_array().cloned().unwrap_or_default();
    for tier in ["canary", "production"] {
        let in_tier: Vec<&Value> = targets.iter().filter(|w| w["tier"] == tier).collect();
        let total = in_tier.len();
        let done = in_tier
            .iter()
            .filter(|w| DONE.contains(&w["status"].as_str().unwrap_or("")))
            .count();
        let filled = (done * BAR).checked_div(total).unwrap_or(0);
        let counts: Vec<String> = STATUSES
            .iter()
            .filter_map(|st| {
                let n = in_tier.iter().filter(|w| w["status"] == *st).count();
                (n > 0).then(|| format!("{st} {n}"))
            })
            .collect();
        s.push_str(&format!(
            "  {tier:<11} [{}{}] {done:>3}/{total:<3} {}\n",
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            if total == 0 {
                "no workspaces".to_owned()
            } else {
                counts.join(", ")
            }
        ));
    }
    s
}

/// What changes a non-terminal display should print a new frame for.
fn signature(r: &Value) -> String {
    let statuses: Vec<String> = r["workspaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| format!("{}={}", w["name"], w["status"]))
                .collect()
        })
        .unwrap_or_default();
    format!("{}|{}", r["state"], statuses.join(","))
}

pub async fn watch(c: &Client, id: i64, interval: f64, json: bool) -> Result<(), ClientError> {
    let interval = Duration::from_secs_f64(interval.clamp(0.1, 60.0));
    let tty = !json && std::io::stdout().is_terminal();
    let mut last_sig = String::new();
    let mut drawn_lines = 0usize;
    let mut failures = 0u32;
    loop {
        let r = match c.get(&format!("/api/v1/rollouts/{id}")).await {
            Ok(r) => {
                failures = 0;
                r
            }
            Err(ClientError::Unreachable { .. }) if failures < 5 => {
                failures += 1;
                tokio::time::sleep(interval).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let state = r["state"].as_str().unwrap_or("").to_owned();
        let sig = signature(&r);
        let mut stdout = std::io::stdout().lock();
        if json {
            if sig != last_sig {
                let _ = writeln!(stdout, "{r}");
            }
        } else if tty {
            let frame = render_progress(&r, SystemClock.now());
            if drawn_lines > 0 {
                let _ = write!(stdout, "\x1b[{drawn_lines}F\x1b[J");
            }
            drawn_lines = frame.lines().count();
            let _ = write!(stdout, "{frame}");
        } else if sig != last_sig {
            let _ = write!(stdout, "{}", render_progress(&r, SystemClock.now()));
        }
        let _ = stdout.flush();
        drop(stdout);
        last_sig = sig;
        if TERMINAL.contains(&state.as_str()) {
            if FAILED_END.contains(&state.as_str()) {
                return Err(ClientError::RolloutFailed { id, state });
            }
            return Ok(());
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frame_shows_bars_counts_and_soak_countdown() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let r = json!({
            "id": 3, "image": "reg/app:stable", "digest": format!("sha256:{}", "c".repeat(64)),
            "state": "soaking", "soak_ends_at": "2026-01-01T00:04:10Z",
            "workspaces": [
                {"name": "a", "tier": "canary", "status": "updated"},
                {"name": "b", "tier": "canary", "status": "updating"},
                {"name": "c", "tier": "production", "status": "pending"},
            ]
        });
        let f = render_progress(&r, now);
        assert!(f.contains("state: soaking  (soak ends in 4m 10s)"), "{f}");
        assert!(
            f.contains(&format!(
                "[{}{}]   1/2   updating 1, updated 1",
                "#".repeat(12),
                "-".repeat(12)
            )),
            "{f}"
        );
        assert!(
            f.contains("production  [------------------------]   0/1   pending 1"),
            "{f}"
        );
        assert!(f.contains("sha256:cccccccccccc "), "{f}");
    }
}
