//! The `sluice release …`, `sluice rollout …` and `sluice fleet …` commands.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::args::{FleetCommand, ReleaseCommand, RolloutCommand};
use crate::cli::client::{Client, ClientError};
use crate::cli::table::{fields, render, rows};
use crate::cli::watch;

use super::*;

pub(super) async fn release(
    c: &Client,
    out: &Output,
    cmd: ReleaseCommand,
) -> Result<(), ClientError> {
    match cmd {
        ReleaseCommand::List { status } => {
            let q = status.map(|s| format!("?status={s}")).unwrap_or_default();
            let v = c.get(&format!("/api/v1/releases{q}")).await?;
            out.show(&v, |v| {
                let cells = rows(arr(v), &["id", "image", "digest", "status", "detected_at"]);
                render(&["id", "image", "digest", "status", "detected"], &cells)
            });
        }
        ReleaseCommand::Show { id } => {
            let v = c.get(&format!("/api/v1/releases/{id}")).await?;
            out.show(&v, |r| {
                fields(
                    r,
                    &[
                        "id",
                        "image",
                        "digest",
                        "status",
                        "detected_at",
                        "changelog",
                    ],
                ) + &changelog_file(&r["changelog_file"])
            });
        }
        ReleaseCommand::Apply { id, tier, force } => {
            let body = json!({ "tier": tier, "force": force });
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/releases/{id}/apply"),
                    Some(body),
                )
                .await?;
            out.show(&v, |r| {
                format!(
                    "rollout {} is {} (watch: sluice rollout watch {})\n",
                    cell(&r["id"]),
                    cell(&r["state"]),
                    cell(&r["id"])
                )
            });
        }
        ReleaseCommand::Reject { id, reason } => {
            let body = json!({ "reason": reason });
            let v = c
                .call(
                    Method::POST,
                    &format!("/api/v1/releases/{id}/reject"),
                    Some(body),
                )
                .await?;
            out.show(&v, |_| format!("release {id} rejected\n"));
        }
    }
    Ok(())
}

pub(super) fn rollout_detail(r: &Value) -> String {
    let mut s = fields(
        r,
        &[
            "id",
            "release_id",
            "image",
            "digest",
            "state",
            "soak_ends_at",
        ],
    );
    let cells = rows(
        arr(&r["workspaces"]),
        &[
            "name",
            "tier",
            "host",
            "status",
            "from_digest",
            "to_digest",
            "status_reason",
        ],
    );
    s.push('\n');
    s.push_str(&render(
        &[
            "workspace",
            "tier",
            "host",
            "status",
            "from",
            "to",
            "reason",
        ],
        &cells,
    ));
    let hosts = watch::host_progress(r);
    if !hosts.is_empty() {
        s.push('\n');
        s.push_str(&hosts);
    }
    let checks = watch::analysis_lines(r);
    if !checks.is_empty() {
        s.push_str("\nmetric checks (newest evaluation; all: GET /api/v1/rollouts/ID/analysis)\n");
        s.push_str(&checks);
    }
    s
}

pub(super) async fn rollout(
    c: &Client,
    out: &Output,
    cmd: RolloutCommand,
) -> Result<(), ClientError> {
    let action = |id: i64, verb: &str| format!("/api/v1/rollouts/{id}/{verb}");
    let (id, verb, body) = match cmd {
        RolloutCommand::List => {
            let v = c.get("/api/v1/rollouts").await?;
            out.show(&v, |v| {
                let cells = rows(
                    arr(v),
                    &[
                        "id",
                        "release_id",
                        "image",
                        "digest",
                        "state",
                        "soak_ends_at",
                    ],
                );
                render(
                    &["id", "release", "image", "digest", "state", "soak ends"],
                    &cells,
                )
            });
            return Ok(());
        }
        RolloutCommand::Show { id } => {
            out.show(
                &c.get(&format!("/api/v1/rollouts/{id}")).await?,
                rollout_detail,
            );
            return Ok(());
        }
        RolloutCommand::Watch { id, interval } => {
            return watch::watch(c, id, interval, out.json).await;
        }
        RolloutCommand::Promote { id } => (id, "promote", json!({})),
        RolloutCommand::Pause { id } => (id, "pause", json!({})),
        RolloutCommand::Resume { id } => (id, "resume", json!({})),
        RolloutCommand::Abort { id, reason } => (id, "abort", json!({ "reason": reason })),
        RolloutCommand::Rollback { id, restore_data } => {
            (id, "rollback", json!({ "restore_data": restore_data }))
        }
    };
    let v = c.call(Method::POST, &action(id, verb), Some(body)).await?;
    out.show(&v, |r| {
        let mut s = format!(
            "rollout {id}: {verb} accepted; state {}\n",
            cell(&r["state"])
        );
        if let Some(w) = r["warning"].as_str() {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    });
    Ok(())
}

pub(super) async fn fleet(c: &Client, out: &Output, cmd: FleetCommand) -> Result<(), ClientError> {
    let v = match cmd {
        FleetCommand::Show => c.get("/api/v1/fleet").await?,
        FleetCommand::Mode { mode } => {
            c.call(Method::PUT, "/api/v1/fleet", Some(json!({ "mode": mode })))
                .await?
        }
    };
    out.show(&v, |f| {
        let mut s = format!(
            "mode        {}\nworkspaces  {}\n",
            cell(&f["mode"]),
            cell(&f["workspaces"])
        );
        if let Some(by) = f["by_state"].as_object() {
            for (k, n) in by.iter().filter(|(_, n)| n.as_i64() != Some(0)) {
                s.push_str(&format!("  {k:<12}{n}\n"));
            }
        }
        let i = &f["instance"];
        s.push_str(&format!(
            "instance    {} ({}, epoch {}, {})\n",
            cell(&i["name"]),
            cell(&i["role"]),
            cell(&i["epoch"]),
            cell(&i["engine"])
        ));
        let l = &f["leader"];
        if l.is_object() {
            let left = l["expires_at"].as_i64().unwrap_or(0) - l["read_at"].as_i64().unwrap_or(0);
            s.push_str(&format!(
                "leader      {} (epoch {}, lease {})\n",
                cell(&l["holder"]),
                cell(&l["epoch"]),
                if left > 0 {
                    format!("ends in {:.1}s", left as f64 / 1000.0)
                } else {
                    "ran out".to_owned()
                }
            ));
        }
        s
    });
    Ok(())
}

/// A release's changelog file read from its image, structured: its path and format, then
/// version and date, each section's title and its items; text as it is.
fn changelog_file(f: &Value) -> String {
    if f.is_null() {
        return String::new();
    }
    let mut out = format!(
        "changelog file  {} ({})\n",
        f["path"].as_str().unwrap_or("-"),
        f["format"].as_str().unwrap_or("-")
    );
    if let Some(v) = f["version"].as_str() {
        out += &format!("  version {v}\n");
    }
    if let Some(d) = f["date"].as_str() {
        out += &format!("  date    {d}\n");
    }
    for s in f["sections"].as_array().into_iter().flatten() {
        out += &format!("  {}\n", s["title"].as_str().unwrap_or(""));
        for i in s["items"].as_array().into_iter().flatten() {
            out += &format!("    - {}\n", i.as_str().unwrap_or(""));
        }
    }
    if let Some(t) = f["text"].as_str() {
        for line in t.lines() {
            out += &format!("  | {line}\n");
        }
    }
    if let Some(n) = f["note"].as_str() {
        out += &format!("  note: {n}\n");
    }
    out
}

#[cfg(test)]
mod changelog_file_tests {
    use super::*;

    #[test]
    fn a_structured_changelog_file_shows_version_date_sections_and_items() {
        let f = json!({"path": "/app/changelogs/1.2.json", "format": "structured",
            "version": "1.2.0", "date": "2026-11-30", "text": null, "note": null,
            "sections": [{"title": "Added", "items": ["dark mode", "export"]}]});
        assert_eq!(
            changelog_file(&f),
            "changelog file  /app/changelogs/1.2.json (structured)\n  version 1.2.0\n  \
             date    2026-11-30\n  Added\n    - dark mode\n    - export\n"
        );
        let t = json!({"path": "/c", "format": "text", "sections": [], "text": "a\nb",
            "note": "cut"});
        assert_eq!(
            changelog_file(&t),
            "changelog file  /c (text)\n  | a\n  | b\n  note: cut\n"
        );
        assert_eq!(changelog_file(&Value::Null), "");
    }
}
