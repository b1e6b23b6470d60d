//! Command-line interface: the daemon (`run`), maintenance commands, and the operator
//! client commands that call the admin API (`workspace`, `release`, `rollout`,
//! `snapshot`, `fleet`, `events`).

mod args;
mod client;
mod commands;
mod local_token;
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
    about = "Tiered, health-gated container image rollouts with data rollback"
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
    Run,
    /// Run the agent of one Docker host (`[agent] host`): it converges only the
    /// workspaces placed there; the control plane (`sluice run`) decides rollouts.
    Agent,
    /// Apply database migrations and exit; with `--to`, copy the database into a new
    /// PostgreSQL database.
    Migrate(MigrateArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Workspaces: add, list, show, set-tier, pin, update, remove, recover.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Releases found by the registry watcher: list, show, apply, reject.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Rollouts: list, show, watch, promote, pause, resume, abort, rollback.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Volume snapshots: list, show, restore, release, delete.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Fleet mode: show, mode.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Docker hosts: list, show, add, cordon, drain, uncordon.
    #[command(subcommand)]
    Host(HostCommand),
    /// The audit trail.
    Events(EventsArgs),
    /// Print the admin API's OpenAPI 3.1 document (the one `GET /api/v1/openapi.json`
    /// serves) without a running daemon, e.g. to generate a client.
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
    Check,
}
