//! The `sluice workspace …` commands: tables, details and request bodies.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::args::{WorkspaceAdd, WorkspaceCommand};
use crate::cli::client::{Client, ClientError};
use crate::cli::table::{cell, fields, render};

use super::snapshot::{queued, snapshot_id};
use super::*;

/// An adoption (or its dry run) for people: what it follows, the spec, what it cannot
/// carry.
fn adoption(v: &Value) -> String {
    let mut s = if v["dry_run"] == json!(true) {
        format!(
            "dry run: container {} would become workspace {}\n",
            cell(&v["container"]),
            cell(&v["name"])
        )
    } else {
        format!(
            "container {} adopted as workspace {} (left running)\n",
            cell(&v["container"]),
            cell(&v["name"])
        )
    };
    s.push_str(&format!(
        "image:  {}\ndigest: {}\nspec:\n{}\n",
        cell(&v["image"]),
        cell(&v["digest"]),
        serde_json::to_string_pretty(&v["spec"]).unwrap_or_default()
    ));
    let odd = arr(&v["unrepresentable"]);
    if odd.is_empty() {
        s.push_str("every setting is represented\n");
    } else {
        let verb = if v["dry_run"] == json!(true) {
            "cannot be represented (adopt refuses without --force)"
        } else {
            "were not represented (forced)"
        };
        s.push_str(&format!("{} setting(s) {verb}:\n", odd.len()));
        for o in odd {
            s.push_str(&format!("  - {}\n", cell(o)));
        }
    }
    s
}

/// A bulk adoption: one row per container, adopted or refused with the reason.
fn adoption_table(v: &Value) -> String {
    let dry = v["dry_run"] == json!(true);
    let mut rows: Vec<Vec<String>> = arr(&v["adopted"])
        .iter()
        .map(|a| {
            let odd = arr(&a["unrepresentable"]).len();
            vec![
                cell(&a["container"]),
                cell(&a["name"]),
                if dry { "would adopt" } else { "adopted" }.to_owned(),
                if odd == 0 {
                    String::new()
                } else {
                    format!("{odd} setting(s) not represented")
                },
            ]
        })
        .collect();
    rows.extend(arr(&v["refused"]).iter().map(|r| {
        vec![
            cell(&r["container"]),
            cell(&r["name"]),
            format!("refused ({})", cell(&r["code"])),
            cell(&r["message"]),
        ]
    }));
    format!(
        "containers with {}:\n{}",
        cell(&v["selector"]),
        render(&["CONTAINER", "WORKSPACE", "RESULT", "DETAIL"], &rows)
    )
}

pub(super) fn add_body(a: &WorkspaceAdd) -> Result<Value, ClientError> {
    let mut body = json!({ "name": a.name, "image": a.image });
    if let Some(t) = &a.tier {
        body["update_tier"] = json!(t);
    }
    if let Some(m) = &a.mode {
        body["update_mode"] = json!(m);
    }
    if let Some(h) = &a.host {
        body["host"] = json!(h);
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

pub(super) fn workspace_table(v: &Value) -> String {
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
                cell(&w["host"]),
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
            "host",
            "actual",
            "desired",
            "last update",
        ],
        &rows,
    )
}

pub(super) fn workspace_detail(w: &Value) -> String {
    let mut s = fields(
        w,
        &[
            "name",
            "image",
            "host",
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
    let drift = arr(&w["drift"]);
    if !drift.is_empty() {
        let names: Vec<String> = drift.iter().map(cell).collect();
        s.push_str(&format!(
            "drift           the running container differs in: {}\n",
            names.join(", ")
        ));
    }
    if let Some(c) = w["spec"]["container_name"].as_str() {
        s.push_str(&format!("container       {c}\n"));
    }
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

pub(super) async fn workspace(
    c: &Client,
    out: &Output,
    cmd: WorkspaceCommand,
) -> Result<(), ClientError> {
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
        WorkspaceCommand::Adopt(a) => {
            let (path, mut body) = match &a.container {
                Some(container) => (
                    "/api/v1/workspaces/adopt",
                    json!({
                        "container": container,
                        "name": a.name.as_deref().unwrap_or(container.trim_start_matches('/')),
                    }),
                ),
                None => (
                    "/api/v1/workspaces/adopt-all",
                    json!({ "label": a.label, "compose_project": a.compose_project }),
                ),
            };
            body["dry_run"] = json!(a.dry_run);
            body["force"] = json!(a.force);
            for (k, v) in [
                ("update_tier", &a.tier),
                ("update_mode", &a.mode),
                ("image", &a.image),
            ] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if let Some(o) = body.as_object_mut() {
                o.retain(|_, v| !v.is_null());
            }
            let v = c.call(Method::POST, path, Some(body)).await?;
            if a.container.is_some() {
                out.show(&v, adoption);
            } else {
                out.show(&v, adoption_table);
            }
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
