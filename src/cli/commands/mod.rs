//! Executes the client commands: one API call (or a poll loop for `watch`), then a table
//! or the raw JSON.

use serde_json::Value;

use super::Command;
use super::args::EventsArgs;
use super::client::{Client, ClientError};
use super::table::{cell, render};

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
        Command::Host(c) => host::host(&client, &out, c).await,
        Command::Events(a) => events(&client, &out, a).await,
        Command::Run
        | Command::Agent
        | Command::Migrate(_)
        | Command::Config(_)
        | Command::Openapi
        | Command::SnapshotHelper(_) => Ok(()),
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

mod host;
mod rollout;
mod snapshot;
mod workspace;

use rollout::{fleet, release, rollout};
use snapshot::snapshot;
use workspace::workspace;

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
    use super::workspace::add_body;
    use super::*;
    use crate::cli::args::WorkspaceAdd;
    use serde_json::json;

    fn add(volumes: &[&str]) -> Result<Value, ClientError> {
        add_body(&WorkspaceAdd {
            name: "acme".into(),
            image: "127.0.0.1:5000/app:stable".into(),
            tier: None,
            mode: None,
            host: None,
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
