//! `sluice rollout watch`: polls the rollout and draws progress per tier (and per host
//! when it spans several) until it ends.

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
    "waiting_for_host",
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
    s.push_str(&host_progress(r));
    s.push_str(&analysis_lines(r));
    s
}

/// One line per metric check and stage: its newest evaluation.
pub fn analysis_lines(r: &Value) -> String {
    let mut s = String::new();
    for a in r["analysis"].as_array().into_iter().flatten() {
        let word = |k: &str| a[k].as_str().unwrap_or("?").to_owned();
        let failures = a["failures"].as_u64().unwrap_or(0);
        s.push_str(&format!(
            "  check {:<20} {:<10} {:<12} {}{}  ({})\n",
            word("check"),
            word("stage"),
            word("outcome"),
            word("detail"),
            if failures > 0 {
                format!("; {failures} failed in a row")
            } else {
                String::new()
            },
            word("evaluated_at"),
        ));
    }
    s
}

/// One progress line per host, when the rollout's targets span more than one host.
pub fn host_progress(r: &Value) -> String {
    let hosts = r["hosts"].as_array().cloned().unwrap_or_default();
    if hosts.len() < 2 {
        return String::new();
    }
    let n = |h: &Value, k: &str| usize::try_from(h[k].as_u64().unwrap_or(0)).unwrap_or(0);
    let mut s = String::new();
    for h in &hosts {
        let total = n(h, "total");
        let done = n(h, "updated") + n(h, "failed") + n(h, "skipped");
        let filled = (done * BAR).checked_div(total).unwrap_or(0);
        let counts: Vec<String> = [
            "pending",
            "waiting_for_host",
            "updating",
            "updated",
            "failed",
            "skipped",
        ]
        .iter()
        .filter(|k| n(h, k) > 0)
        .map(|k| format!("{k} {}", n(h, k)))
        .collect();
        s.push_str(&format!(
            "  host {:<16} {:<9} [{}{}] {done:>3}/{total:<3} {}\n",
            h["host"].as_str().unwrap_or("?"),
            h["state"].as_str().unwrap_or("?"),
            "#".repeat(filled),
            "-".repeat(BAR - filled),
            counts.join(", ")
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
    let checks: Vec<String> = r["analysis"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| format!("{}={}@{}", c["check"], c["outcome"], c["evaluated_at"]))
                .collect()
        })
        .unwrap_or_default();
    format!("{}|{}|{}", r["state"], statuses.join(","), checks.join(","))
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
        assert!(!f.contains("host "), "one host: no host lines\n{f}");
    }

    #[test]
    fn metric_checks_show_their_newest_evaluation_and_a_new_one_redraws() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut r = json!({
            "id": 5, "image": "reg/app:stable", "digest": format!("sha256:{}", "c".repeat(64)),
            "state": "soaking", "workspaces": [],
            "analysis": [{"check": "errors", "stage": "soak", "outcome": "fail",
                          "detail": "0.4 is not < 0.05", "failures": 1,
                          "evaluated_at": "2026-01-01T00:00:00Z"}]
        });
        let f = render_progress(&r, now);
        assert!(
            f.contains("check errors               soak       fail         0.4 is not < 0.05; 1 failed in a row"),
            "{f}"
        );
        let before = signature(&r);
        r["analysis"][0]["evaluated_at"] = json!("2026-01-01T00:00:30Z");
        assert_ne!(signature(&r), before);
    }

    #[test]
    fn a_rollout_across_hosts_shows_one_line_per_host() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let r = json!({
            "id": 4, "image": "reg/app:stable", "digest": format!("sha256:{}", "c".repeat(64)),
            "state": "production",
            "workspaces": [
                {"name": "a", "tier": "production", "status": "updated", "host": "h1"},
                {"name": "b", "tier": "production", "status": "waiting_for_host", "host": "h2"},
            ],
            "hosts": [
                {"host": "h1", "state": "ready", "total": 1, "updated": 1},
                {"host": "h2", "state": "down", "total": 1, "waiting_for_host": 1},
            ]
        });
        let f = render_progress(&r, now);
        assert!(
            f.contains(&format!(
                "host h1               ready     [{}]   1/1   updated 1",
                "#".repeat(24)
            )),
            "{f}"
        );
        assert!(
            f.contains(&format!(
                "host h2               down      [{}]   0/1   waiting_for_host 1",
                "-".repeat(24)
            )),
            "{f}"
        );
        assert!(f.contains("waiting_for_host 1"), "{f}");
    }
}
