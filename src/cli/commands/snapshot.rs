//! The `sluice snapshot …` commands, and the snapshot helpers `workspace recover` shares.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::args::SnapshotCommand;
use crate::cli::client::{Client, ClientError};
use crate::cli::table::{bytes, cell, fields, render};
use crate::domain::{SnapshotId, WorkspaceName};

use super::*;

/// A snapshot id from the command line, checked before it becomes part of a URL.
pub(super) fn snapshot_id(raw: &str) -> Result<SnapshotId, ClientError> {
    SnapshotId::parse(raw).map_err(|e| invalid("ID", &e.to_string()))
}

/// The answer to a queued restore or recovery.
pub(super) fn queued(q: &Value) -> String {
    let snaps: Vec<String> = arr(&q["snapshots"]).iter().map(cell).collect();
    let mut s = format!(
        "{} of workspace {} queued as update {}: restoring {}, then running {}\n",
        cell(&q["kind"]),
        cell(&q["workspace"]),
        cell(&q["update_id"]),
        if snaps.is_empty() {
            "no volume".to_owned()
        } else {
            snaps.join(", ")
        },
        cell(&q["to_digest"])
    );
    if let Some(w) = q["warning"].as_str() {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

/// `protected (reason)`, `released`, or `-`.
pub(super) fn protection(s: &Value) -> String {
    if s["protected"].as_bool() == Some(true) {
        format!("yes ({})", cell(&s["reason"]))
    } else if !s["released_at"].is_null() {
        "released".to_owned()
    } else {
        "-".to_owned()
    }
}

pub(super) fn snapshot_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(v)
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["workspace"]),
                cell(&s["volume"]),
                cell(&s["state"]),
                s["size_bytes"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), bytes),
                cell(&s["created_at"]),
                protection(s),
            ]
        })
        .collect();
    render(
        &[
            "id",
            "workspace",
            "volume",
            "state",
            "size",
            "created",
            "protected",
        ],
        &rows,
    )
}

pub(super) fn snapshot_detail(s: &Value) -> String {
    let mut out = fields(
        s,
        &[
            "id",
            "workspace",
            "volume",
            "mount_path",
            "path",
            "size_bytes",
            "sha256",
            "manifest_sha256",
            "entries",
            "method",
            "state",
            "created_at",
        ],
    );
    let u = &s["update"];
    let update = if u.is_null() {
        "-".to_owned()
    } else {
        format!(
            "{} ({} {}, {} → {})",
            cell(&u["id"]),
            cell(&u["kind"]),
            cell(&u["phase"]),
            cell(&u["from_digest"]),
            cell(&u["to_digest"])
        )
    };
    out.push_str(&format!("{:<15}  {update}\n", "update"));
    out.push_str(&format!("{:<15}  {}\n", "protected", protection(s)));
    out.push_str(&format!(
        "{:<15}  {}\n",
        "in_use",
        if s["in_use"].as_bool() == Some(true) {
            "yes (an unfinished update needs it)"
        } else {
            "no"
        }
    ));
    out.push_str(&format!(
        "{:<15}  {}{}\n",
        "released_at",
        cell(&s["released_at"]),
        s["released_by"]
            .as_str()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default()
    ));
    out
}

pub(super) async fn snapshot(
    c: &Client,
    out: &Output,
    cmd: SnapshotCommand,
) -> Result<(), ClientError> {
    let path = |id: &SnapshotId| format!("/api/v1/snapshots/{id}");
    match cmd {
        SnapshotCommand::List { workspace } => {
            let q = match workspace {
                Some(w) => {
                    let w = WorkspaceName::parse(&w)
                        .map_err(|e| invalid("--workspace", &e.to_string()))?;
                    format!("?workspace={w}")
                }
                None => String::new(),
            };
            out.show(
                &c.get(&format!("/api/v1/snapshots{q}")).await?,
                snapshot_table,
            );
        }
        SnapshotCommand::Show { id } => {
            out.show(&c.get(&path(&snapshot_id(&id)?)).await?, snapshot_detail);
        }
        SnapshotCommand::Restore { id } => {
            let id = snapshot_id(&id)?;
            let v = c
                .call(
                    Method::POST,
                    &format!("{}/restore", path(&id)),
                    Some(json!({})),
                )
                .await?;
            out.show(&v, queued);
        }
        SnapshotCommand::Release { id } => {
            let id = snapshot_id(&id)?;
            let v = c
                .call(
                    Method::POST,
                    &format!("{}/release", path(&id)),
                    Some(json!({})),
                )
                .await?;
            out.show(&v, |s| {
                format!(
                    "snapshot {} released by {}: retention's keep_last and max_age apply to it again\n",
                    cell(&s["id"]),
                    cell(&s["released_by"])
                )
            });
        }
        SnapshotCommand::Delete { id } => {
            let id = snapshot_id(&id)?;
            let v = c.call(Method::DELETE, &path(&id), None).await?;
            out.show(&v, |s| format!("snapshot {} deleted\n", cell(&s["id"])));
        }
    }
    Ok(())
}
