//! `sluice host`: list, show, add, cordon, drain (waits until no update runs there),
//! uncordon.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::super::args::HostCommand;
use super::super::client::{Client, ClientError};
use super::super::table::{cell, render};
use super::{Output, arr, emit, invalid};

/// How often `host drain` asks whether updates still run.
const DRAIN_POLL: Duration = Duration::from_secs(1);

fn row(h: &Value) -> Vec<String> {
    let age = h["heartbeat_age_seconds"]
        .as_f64()
        .map_or_else(|| "never".to_owned(), |a| format!("{a:.1}s"));
    vec![
        cell(&h["name"]),
        cell(&h["state"]),
        age,
        cell(&h["workspaces"]),
        cell(&h["updating"]),
        cell(&h["agent_version"]),
        cell(&h["agent_instance"]),
    ]
}

const HEADERS: [&str; 7] = [
    "host",
    "state",
    "heartbeat",
    "workspaces",
    "updating",
    "version",
    "agent",
];

fn table(hosts: &[Value]) -> String {
    render(&HEADERS, &hosts.iter().map(row).collect::<Vec<_>>())
}

fn labels(raw: &[String]) -> Result<Value, ClientError> {
    let mut m = serde_json::Map::new();
    for l in raw {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| invalid("--label", &format!("`{l}`: expected KEY=VALUE")))?;
        m.insert(k.to_owned(), json!(v));
    }
    Ok(m.into())
}

pub(super) async fn host(c: &Client, out: &Output, cmd: HostCommand) -> Result<(), ClientError> {
    let path = |name: &str, op: &str| format!("/api/v1/hosts/{name}/{op}");
    let v = match cmd {
        HostCommand::List => {
            let v = c.get("/api/v1/hosts").await?;
            out.show(&v, |v| table(arr(v)));
            return Ok(());
        }
        HostCommand::Show { name } => c.get(&format!("/api/v1/hosts/{name}")).await?,
        HostCommand::Add { name, labels: l } => {
            let body = json!({ "name": name, "labels": labels(&l)? });
            let v = c.call(Method::POST, "/api/v1/hosts", Some(body)).await?;
            out.show(&v, |v| {
                format!(
                    "{}\nagent token (shown once; put it in the agent's [agent] token_file):\n{}\n",
                    table(std::slice::from_ref(&v["host"])),
                    cell(&v["token"])
                )
            });
            return Ok(());
        }
        HostCommand::Cordon { name } => c.call(Method::POST, &path(&name, "cordon"), None).await?,
        HostCommand::Uncordon { name } => {
            c.call(Method::POST, &path(&name, "uncordon"), None).await?
        }
        HostCommand::Drain {
            name,
            no_wait,
            timeout,
        } => {
            let mut v = c.call(Method::POST, &path(&name, "drain"), None).await?;
            if !no_wait {
                let started = Instant::now();
                while v["updating"].as_i64().unwrap_or(0) > 0 {
                    if started.elapsed() >= timeout {
                        return Err(ClientError::DrainTimeout {
                            host: name,
                            updating: v["updating"].as_i64().unwrap_or(0),
                            waited: humantime::format_duration(timeout).to_string(),
                        });
                    }
                    if !out.json {
                        emit(&format!(
                            "draining {name}: {} update(s) still running\n",
                            cell(&v["updating"])
                        ));
                    }
                    tokio::time::sleep(DRAIN_POLL).await;
                    v = c.get(&format!("/api/v1/hosts/{name}")).await?;
                }
            }
            v
        }
    };
    out.show(&v, |v| table(std::slice::from_ref(v)));
    Ok(())
}
