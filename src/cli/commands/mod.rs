//! Executes the client commands: one API call (or a poll loop for `watch`), then a table
//! or the raw JSON.

use reqwest::Method;
use serde_json::{Value, json};

use super::args::{
    EventsArgs, FleetCommand, ReleaseCommand, RolloutCommand, SnapshotCommand, WorkspaceAdd,
    WorkspaceCommand,
};
use super::client::{Client, ClientError};
use super::table::{bytes, cell, fields, render};
use super::{Command, watch};
use crate::domain::{SnapshotId, WorkspaceName};

/// Where and how to talk to the daemon.
pub struct ClientArgs {
    pub server: String,
    pub token: Option<String>,
    pub json: bool,
}

/// Runs one client command; the caller turns an error into a non-zero exit.
pub async fn run_client(cmd: Command, args: ClientArgs) -> Result<(), ClientError> {
    let client = Client::new(&args.server, args.token.clone());
    let out = Output { json: args.json };
    match cmd {
        Command::Workspace(c) => workspace(&client, &out, c).await,
        Command::Release(c) => release(&client, &out, c).await,
        Command::Rollout(c) => rollout(&client, &out, c).await,
        Command::Snapshot(c) => snapshot(&client, &out, c).await,
        Command::Fleet(c) => fleet(&client, &out, c).await,
        Command::Events(a) => events(&client, &out, a).await,
        Command::Run | Command::Migrate | Command::Config(_) => Ok(()),
    }
}

struct Output {
    json: bool,
}

impl Output {
    /// Prints `v` as JSON, or the human form from `human`.
    fn show(&self, v: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(v).unwrap_or_default()
            ));
        } else {
            emit(&human(v));
        }
    }
}

/// Writes to stdout. A reader that went away (`sluice … | head`) is not an error: the
/// rest of the output has nowhere to go. Other write failures are reported on stderr.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("sluice: cannot write the output: {e}");
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn invalid(arg: &str, message: &str) -> ClientError {
    ClientError::InvalidArg {
        arg: arg.to_owned(),
        message: message.to_owned(),
    }
}

fn add_body(a: &WorkspaceAdd) -> Result<Value, ClientError> {
    let mut body = json!({ "name": a.name, "image": a.image });
    if let Some(t) = &a.tier {
        body["update_tier"] = json!(t);
    }
    if let Some(m) = &a.mode {
        body["update_mode"] = json!(m);
    }
    let mut env = serde_json::Map::new();
    for e in &a.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| invalid("--env", &format!("`{e}`: expected KEY=VALUE")))?;
        env.insert(k.to_owned(), json!(v));
    }
    body["env"] = env.into();
    let mut volumes = Vec::new();
    for v in &a.volumes {
        let bad = || {
            invalid(
                "--volume",
                &format!("`{v}`: expected NAME:/PATH or NAME:/PATH:adopt"),
            )
        };
        let (name, rest) = v.split_once(':').ok_or_else(bad)?;
        let (mount, adopt) = match rest.split_once(':') {
            None => (rest, false),
            Some((mount, "adopt")) => (mount, true),
            Some(_) => return Err(bad()),
        };
        let mut entry = json!({ "name": name, "mount": mount });
        if adopt {
            entry["adopt"] = json!(true);
        }
        volumes.push(entry);
    }
    body["volumes"] = volumes.into();
    let mut ports = Vec::new();
    for p in &a.ports {
        let bad = || invalid("--port", &format!("`{p}`: expected PORT or PORT:HOST_PORT"));
        let (c, h) = match p.split_once(':') {
            Some((c, h)) => (c, Some(h)),
            None => (p.as_str(), None),
        };
        let c: u16 = c.parse().map_err(|_| bad())?;
        let h: Option<u16> = h.map(str::parse).transpose().map_err(|_| bad())?;
        ports.push(json!({ "container": c, "host": h }));
    }
    body["ports"] = ports.into();
    if let Some(port) = a.health_port {
        body["health"] = json!({ "http": { "port": port, "path": a.health_path } });
    }
    Ok(body)
}

fn workspace_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = arr(v)
        .iter()
        .map(|w| {
            let last = &w["last_update"];
            let last = if last.is_null() {
                "-".to_owned()
            } else {
                format!("{} → {}", cell(&last["result"]), cell(&last["to_digest"]))
            };
            vec![
                cell(&w["name"]),
                cell(&w["update_tier"]),
                cell(&w["update_mode"]),
                cell(&w["state"]),
                cell(&w["health"]),
                cell(&w["actual_digest"]),
                cell(&w["desired_digest"]),
                last,
            ]
        })
        .collect();
    render(
        &[
            "name",
            "tier",
            "mode",
            "state",
            "health",
            "actual",
            "desired",
            "last update",
        ],
        &rows,
    )
}

fn workspace_detail(w: &Value) -> String {
    let mut s = fields(
        w,
        &[
            "name",
            "image",
            "update_tier",
            "update_mode",
            "state",
            "health",
            "actual_digest",
            "desired_digest",
            "pinned_digest",
            "maintenance_window",
            "container_id",
            "updated_at",
        ],
    );
    let l = &w["last_update"];
    if !l.is_null() {
        s.push_str(&format!(
            "last_update     {} {} → {} at {}{}\n",
            cell(&l["result"]),
            cell(&l["from_digest"]),
            cell(&l["to_digest"]),
            cell(&l["at"]),
            l["error"]
                .as_str()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    s
}

async fn workspace(c: &Client, out: &Output, cmd: WorkspaceCommand) -> Result<(), ClientError> {
    let path = |n: &str| format!("/api/v1/workspaces/{n}");
    match cmd {
        WorkspaceCommand::Add(a) => {
            let v = c
                .call(Method::POST, "/api/v1/workspaces", Some(add_body(&a)?))
                .await?;
            out.show(&v, |w| {
                format!(
                    "workspace {} added ({} tier)\n",
                    cell(&w["name"]),
                    cell(&w["update_tier"])
                )
            });
        }
        WorkspaceCommand::List => out.show(&c.get("/api/v1/workspaces").await?, workspace_table),
        WorkspaceCommand::Show { name } => out.show(&c.get(&path(&name)).await?, workspace_detail),
        WorkspaceCommand::SetTier { name, tier } => {
            let v = c
                .call(
                    Method::PATCH,
                    &path(&name),
                    Some(json!({ "update_tier": tier })),
                )
                .await?;
            out.show(&v, |w| {
                format!(
                    "workspace {} is now {} tier\n",
                    cell(&w["name"]),
                    cell(&w["update_tier"])
                )
            });
        }
        WorkspaceCommand::Pin {
            name,
            digest,
            unpin,
        } => {
            let body = if unpin {
                json!({ "pinned_digest": null })
            } else {
                json!({ "pinned_digest": digest })
            };
            let v = c.call(Method::PATCH, &path(&name), Some(body)).await?;
            out.show(&v, |w| match w["pinned_digest"].as_str() {
                Some(d) => format!("workspace {} pinned to {d}\n", cell(&w["name"])),
                None => format!("workspace {} unpinned\n", cell(&w["name"])),
            });
        }
        WorkspaceCommand::Update { name, digest } => {
            let body = json!({ "digest": digest });
            let v = c
                .call(Method::POST, &format!("{}/update", path(&name)), Some(body))
                .await?;
            out.show(&v, |u| {
                format!(
                    "workspace {} is updating to {}\n",
                    cell(&u["name"]),
                    cell(&u["desired_digest"])
                )
            });
        }
        WorkspaceCommand::Remove { name, purge } => {
            let q = if purge { "?purge=true" } else { "" };
            let v = c
                .call(Method::DELETE, &format!("{}{q}", path(&name)), None)
                .await?;
            out.show(&v, |d| {
                let vols = arr(&d["volumes_removed"])
                    .iter()
                    .map(cell)
                    .collect::<Vec<_>>();
                let kept: String = arr(&d["volumes_kept"])
                    .iter()
                    .map(|k| {
                        format!(
                            "volume {} kept: {}\n",
                            cell(&k["name"]),
                            cell(&k["message"])
                        )
                    })
                    .collect();
                format!(
                    "workspace {} removed{}\n{kept}",
                    cell(&d["name"]),
                    if vols.is_empty() {
                        " (volumes kept)".to_owned()
                    } else {
                        format!(" with volumes {}", vols.join(", "))
                    }
                )
            });
        }
        WorkspaceCommand::Recover { name, snapshot } => {
            let body = match snapshot {
                Some(id) => json!({ "snapshot": snapshot_id(&id)?.as_str() }),
                None => json!({}),
            };
            let v = c
                .call(
                    Method::POST,
                    &format!("{}/recover", path(&name)),
                    Some(body),
                )
                .await?;
            out.show(&v, queued);
        }
    }
    Ok(())
}

/// A snapshot id from the command line, checked before it becomes part of a URL.
fn snapshot_id(raw: &str) -> Result<SnapshotId, ClientError> {
    SnapshotId::parse(raw).map_err(|e| invalid("ID", &e.to_string()))
}

/// The answer to a queued restore or recovery.
fn queued(q: &Value) -> String {
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
fn protection(s: &Value) -> String {
    if s["protected"].as_bool() == Some(true) {
        format!("yes ({})", cell(&s["reason"]))
    } else if !s["released_at"].is_null() {
        "released".to_owned()
    } else {
        "-".to_owned()
    }
}

fn snapshot_table(v: &Value) -> String {
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

fn snapshot_detail(s: &Value) -> String {
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

async fn snapshot(c: &Client, out: &Output, cmd: SnapshotCommand) -> Result<(), ClientError> {
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

async fn release(c: &Client, out: &Output, cmd: ReleaseCommand) -> Result<(), ClientError> {
    match cmd {
        ReleaseCommand::List { status } => {
            let q = status.map(|s| format!("?status={s}")).unwrap_or_default();
            let v = c.get(&format!("/api/v1/releases{q}")).await?;
            out.show(&v, |v| {
                let rows: Vec<Vec<String>> = arr(v)
                    .iter()
                    .map(|r| {
                        ["id", "image", "digest", "status", "detected_at"]
                            .iter()
                            .map(|k| cell(&r[*k]))
                            .collect()
                    })
                    .collect();
                render(&["id", "image", "digest", "status", "detected"], &rows)
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
                )
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

fn rollout_detail(r: &Value) -> String {
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
    let rows: Vec<Vec<String>> = arr(&r["workspaces"])
        .iter()
        .map(|w| {
            ["name", "tier", "status", "from_digest", "to_digest"]
                .iter()
                .map(|k| cell(&w[*k]))
                .collect()
        })
        .collect();
    s.push('\n');
    s.push_str(&render(
        &["workspace", "tier", "status", "from", "to"],
        &rows,
    ));
    s
}

async fn rollout(c: &Client, out: &Output, cmd: RolloutCommand) -> Result<(), ClientError> {
    let action = |id: i64, verb: &str| format!("/api/v1/rollouts/{id}/{verb}");
    let (id, verb, body) = match cmd {
        RolloutCommand::List => {
            let v = c.get("/api/v1/rollouts").await?;
            out.show(&v, |v| {
                let rows: Vec<Vec<String>> = arr(v)
                    .iter()
                    .map(|r| {
                        [
                            "id",
                            "release_id",
                            "image",
                            "digest",
                            "state",
                            "soak_ends_at",
                        ]
                        .iter()
                        .map(|k| cell(&r[*k]))
                        .collect()
                    })
                    .collect();
                render(
                    &["id", "release", "image", "digest", "state", "soak ends"],
                    &rows,
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

async fn fleet(c: &Client, out: &Output, cmd: FleetCommand) -> Result<(), ClientError> {
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
        s
    });
    Ok(())
}

async fn events(c: &Client, out: &Output, a: EventsArgs) -> Result<(), ClientError> {
    let v = c
        .get(&format!(
            "/api/v1/events?since={}&limit={}",
            a.since, a.limit
        ))
        .await?;
    out.show(&v, |v| {
        let rows: Vec<Vec<String>> = arr(v)
            .iter()
            .map(|e| {
                let mut r: Vec<String> = ["id", "at", "actor", "subject", "action"]
                    .iter()
                    .map(|k| cell(&e[*k]))
                    .collect();
                r.push(e["detail"].to_string());
                r
            })
            .collect();
        render(&["id", "at", "actor", "subject", "action", "detail"], &rows)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(volumes: &[&str]) -> Result<Value, ClientError> {
        add_body(&WorkspaceAdd {
            name: "acme".into(),
            image: "127.0.0.1:5000/app:stable".into(),
            tier: None,
            mode: None,
            env: Vec::new(),
            volumes: volumes.iter().map(|v| (*v).to_owned()).collect(),
            ports: Vec::new(),
            health_port: None,
            health_path: "/health".into(),
        })
    }

    #[test]
    fn volumes_parse_with_an_optional_adopt() {
        let b = add(&["acme-data:/data", "old:/srv/old:adopt"]).unwrap();
        assert_eq!(
            b["volumes"],
            json!([{"name": "acme-data", "mount": "/data"},
                   {"name": "old", "mount": "/srv/old", "adopt": true}])
        );
        for bad in ["acme-data", "acme-data:/data:ro", "a:/b:adopt:x"] {
            assert!(add(&[bad]).is_err(), "{bad}");
        }
    }
}
