//! Command-line interface: the daemon (`run`), maintenance commands, and the operator
//! client commands that call the admin API (`workspace`, `release`, `rollout`,
//! `snapshot`, `fleet`, `events`).

mod args;
mod client;
mod commands;
mod local_token;
pub mod snapshot_helper;
mod table;
mod watch;

use std::path::PathBuf;

pub use args::{
    EventsArgs, FleetCommand, HostCommand, MigrateArgs, ReleaseCommand, RolloutCommand,
    SnapshotCommand, WorkspaceAdd, WorkspaceCommand,
};
pub use client::{Client, ClientError};
pub use commands::{ClientArgs, run_client};
pub use local_token::client_token;
pub use watch::render_progress;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Tiered, health-gated container image rollouts with data rollback",
    after_help = "Examples:\n  sluice --config /etc/sluice/sluice.toml run\n  sluice workspace list\n\n\
                  Client commands send SLUICE_TOKEN, or else, on the daemon's host with no \
                  [auth] tokens configured, its first-start token <data dir>/admin.token."
)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables `SLUICE__SECTION__KEY` override it.
    #[arg(long, global = true, env = "SLUICE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Admin API address for client commands; default: `http://` + `[api] listen`.
    #[arg(long, global = true, env = "SLUICE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Client commands: print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format; overrides `[log] format`.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: API, registry watcher, rollout controller, reconciler.
    #[command(after_help = "Example:\n  sluice --config /etc/sluice/sluice.toml run")]
    Run,
    /// Run the agent of one Docker host (`[agent] host`): it converges only the
    /// workspaces placed there; the control plane (`sluice run`) decides rollouts.
    #[command(after_help = "Example:\n  sluice --config /etc/sluice/agent.toml agent")]
    Agent,
    /// Run one snapshot stage or restore inside sluice's own helper container.
    #[command(
        hide = true,
        subcommand,
        after_help = "Example:\n  sluice snapshot-helper capture --store /store --volume /volume --out /store/manifests/x.json"
    )]
    SnapshotHelper(snapshot_helper::SnapshotHelperCommand),
    /// Apply database migrations and exit; with `--to`, copy the database into a new
    /// PostgreSQL database.
    #[command(
        after_help = "Examples:\n  sluice --config /etc/sluice/sluice.toml migrate\n  sluice migrate --to postgres://sluice:PASSWORD@db.internal/sluice"
    )]
    Migrate(MigrateArgs),
    /// Configuration commands.
    #[command(after_help = "Example:\n  sluice --config sluice.toml config check")]
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Workspaces: add, list, show, set-tier, pin, update, remove, recover.
    #[command(after_help = "Examples:\n  sluice workspace list\n  sluice workspace show acme")]
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Releases found by the registry watcher: list, show, apply, reject.
    #[command(after_help = "Example:\n  sluice release list --status queued")]
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Rollouts: list, show, watch, promote, pause, resume, abort, rollback.
    #[command(after_help = "Examples:\n  sluice rollout list\n  sluice rollout watch 3")]
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Volume snapshots: list, show, restore, release, delete.
    #[command(after_help = "Example:\n  sluice snapshot list --workspace acme")]
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Fleet mode: show, mode.
    #[command(after_help = "Example:\n  sluice fleet show")]
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Docker hosts: list, show, add, cordon, drain, uncordon.
    #[command(after_help = "Example:\n  sluice host list")]
    #[command(subcommand)]
    Host(HostCommand),
    /// The audit trail.
    #[command(after_help = "Example:\n  sluice events --since 120 --limit 20")]
    Events(EventsArgs),
    /// Print the admin API's OpenAPI 3.1 document (the one `GET /api/v1/openapi.json`
    /// serves) without a running daemon, e.g. to generate a client.
    #[command(after_help = "Example:\n  sluice openapi > openapi.json")]
    Openapi,
}

impl Command {
    /// True for the commands that call a running daemon's API.
    pub fn is_client(&self) -> bool {
        matches!(
            self,
            Command::Workspace(_)
                | Command::Release(_)
                | Command::Rollout(_)
                | Command::Snapshot(_)
                | Command::Fleet(_)
                | Command::Host(_)
                | Command::Events(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective settings, secrets redacted.
    #[command(after_help = "Example:\n  sluice --config sluice.toml config check")]
    Check,
}

#[cfg(test)]
mod help_tests;
