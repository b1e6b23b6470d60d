//! Arguments of the client commands and of `sluice migrate`.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Copy the configured database (ids, history, audit trail, settings) into this new,
    /// empty PostgreSQL database, `postgres://USER:PASSWORD@HOST/DATABASE`, and verify
    /// the row count of every table. Stop the daemon first. Refused when the target holds
    /// any data. The source is only brought up to date, as plain `sluice migrate` does;
    /// point `[database] url` at the target afterwards. See docs/postgresql.md.
    #[arg(
        long,
        value_name = "URL",
        env = "SLUICE_MIGRATE_TO",
        hide_env_values = true,
        value_parser = |s: &str| Ok::<_, std::convert::Infallible>(crate::config::Secret::new(s))
    )]
    pub to: Option<crate::config::Secret>,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace (the reconciler then creates its container).
    #[command(after_help = "Example:
  sluice workspace add acme --image registry.example/acme/app:stable \\
      --volume acme-data:/data --port 8080:18080 --health-port 8080")]
    Add(WorkspaceAdd),
    /// Adopt a running container as a workspace, without restarting it.
    ///
    /// Reads the container, builds the spec that reproduces it (what `docker run` set;
    /// the image's own defaults stay the image's) and records the digest it runs as both
    /// desired and actual. Refused while any setting cannot be carried, unless `--force`.
    #[command(after_help = "Examples:
  sluice workspace adopt acme-web --image registry.example/acme/app:stable --dry-run
  sluice workspace adopt --all --compose-project shop")]
    Adopt(WorkspaceAdopt),
    /// List workspaces.
    #[command(after_help = "Example:\n  sluice workspace list")]
    List,
    /// Show one workspace.
    #[command(after_help = "Example:\n  sluice workspace show acme")]
    Show { name: String },
    /// Set a workspace's update tier (`canary` or `production`).
    #[command(after_help = "Example:\n  sluice workspace set-tier acme canary")]
    SetTier { name: String, tier: String },
    /// Hold a workspace on a digest (`sha256:…`), or release the hold with `--unpin`.
    #[command(after_help = "Examples:
  sluice workspace pin acme sha256:<64 hex digits>
  sluice workspace pin acme --unpin")]
    Pin {
        name: String,
        #[arg(required_unless_present = "unpin")]
        digest: Option<String>,
        #[arg(long, conflicts_with = "digest")]
        unpin: bool,
    },
    /// Update one workspace now: to the newest usable release of its image, or `--digest`.
    #[command(after_help = "Example:\n  sluice workspace update acme")]
    Update {
        name: String,
        #[arg(long)]
        digest: Option<String>,
    },
    /// Remove a workspace's container; `--purge` removes its volumes too.
    #[command(after_help = "Example:\n  sluice workspace remove acme --purge")]
    Remove {
        name: String,
        #[arg(long)]
        purge: bool,
    },
    /// Bring a quarantined workspace back from its snapshots.
    ///
    /// Restores, for every volume it mounts, the newest complete snapshot of the update
    /// that quarantined it, then runs the digest that ran before that update, health-gated
    /// like any update. Writes made since those snapshots were taken are lost. Refused
    /// unless the workspace is quarantined, while an update of it is unfinished, and when
    /// a volume has no usable snapshot (the error names it).
    #[command(after_help = "Examples:
  sluice workspace recover acme
  sluice workspace recover acme --snapshot acme-u12-v0-1764770000000")]
    Recover {
        /// The quarantined workspace.
        name: String,
        /// Recover from this snapshot's update instead, with this snapshot for its volume
        /// (see `sluice snapshot list --workspace NAME`).
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List snapshots not yet deleted, with whether retention protects them.
    #[command(after_help = "Example:\n  sluice snapshot list --workspace acme")]
    List {
        /// Only this workspace's snapshots.
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
    },
    /// Show one snapshot, its update and whether it is protected.
    ///
    /// Prints the volume, mount path, size, sha256 and manifest sha256, method, state,
    /// the update it belongs to, whether retention protects it and why, whether an
    /// unfinished update needs it, and when and by whom it was released.
    #[command(after_help = "Example:\n  sluice snapshot show acme-u12-v0-1764770000000")]
    Show {
        /// Snapshot id (`sluice snapshot list`).
        id: String,
    },
    /// Restore a snapshot into its volume.
    ///
    /// Queues a journaled restore: the workspace is stopped, its current volumes are
    /// snapshotted (so the restore can be undone), the snapshot is restored into its
    /// volume, and the workspace starts on what it runs now, health-gated; a failure
    /// rolls back. Writes made since the snapshot was taken are lost. Refused while an
    /// update of the workspace is unfinished and for a snapshot that is not complete;
    /// for a quarantined workspace use `sluice workspace recover NAME --snapshot ID`.
    #[command(after_help = "Example:\n  sluice snapshot restore acme-u12-v0-1764770000000")]
    Restore {
        /// Snapshot id (`sluice snapshot list`).
        id: String,
    },
    /// Lift a snapshot's protection from retention.
    ///
    /// A protected snapshot (of a quarantined workspace, or the newest copy of a volume
    /// after a failed update) is kept whatever `keep_last` and `max_age` say. Once
    /// released, they apply to it again and `snapshot delete` is allowed.
    #[command(after_help = "Example:\n  sluice snapshot release acme-u12-v0-1764770000000")]
    Release {
        /// Snapshot id (`sluice snapshot list`).
        id: String,
    },
    /// Delete a snapshot's file now.
    ///
    /// Refused while the snapshot is protected (release it first) and while an unfinished
    /// update or a pending restore needs it.
    #[command(after_help = "Example:\n  sluice snapshot delete acme-u12-v0-1764770000000")]
    Delete {
        /// Snapshot id (`sluice snapshot list`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct WorkspaceAdopt {
    /// The container's name or id.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub container: Option<String>,
    /// Adopt every running container with `--label`, or of `--compose-project`, each
    /// as the workspace named after it; prints what was adopted and what was refused.
    #[arg(long, conflicts_with_all = ["name", "image"])]
    pub all: bool,
    /// With `--all`: `KEY=VALUE` (or `KEY`).
    #[arg(long, requires = "all", conflicts_with = "compose_project")]
    pub label: Option<String>,
    /// With `--all`: the containers of this Compose project.
    #[arg(long, requires = "all")]
    pub compose_project: Option<String>,
    /// The workspace's name (default: the container's name).
    #[arg(long)]
    pub name: Option<String>,
    /// `canary` or `production` (the server's default: production).
    #[arg(long)]
    pub tier: Option<String>,
    /// `auto` or `manual`.
    #[arg(long)]
    pub mode: Option<String>,
    /// The `repo:tag` to follow (needed when the container was started from an image id
    /// or a digest).
    #[arg(long)]
    pub image: Option<String>,
    /// Print the spec it would store and what it could not represent; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Adopt although some settings cannot be represented (they are named in the audit
    /// event and lost at the next recreate).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct WorkspaceAdd {
    pub name: String,
    /// Tracked image reference, `registry/repo:tag`.
    #[arg(long)]
    pub image: String,
    /// `canary` or `production` (the server's default: production).
    #[arg(long)]
    pub tier: Option<String>,
    /// `auto` or `manual`.
    #[arg(long)]
    pub mode: Option<String>,
    /// The Docker host to run on (required when more than one host is registered).
    #[arg(long)]
    pub host: Option<String>,
    /// `KEY=VALUE`, repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// `VOLUME:/path`, repeatable; `VOLUME:/path:adopt` takes over a volume that exists
    /// without a sluice owner label.
    #[arg(long = "volume", value_name = "NAME:/PATH[:adopt]")]
    pub volumes: Vec<String>,
    /// `CONTAINER_PORT[:HOST_PORT]`, repeatable.
    #[arg(long = "port", value_name = "PORT[:HOST]")]
    pub ports: Vec<String>,
    /// Container port of the HTTP health probe.
    #[arg(long)]
    pub health_port: Option<u16>,
    /// Path of the HTTP health probe.
    #[arg(long, default_value = "/health", requires = "health_port")]
    pub health_path: String,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// List releases (optionally `--status queued`).
    #[command(after_help = "Example:\n  sluice release list --status queued")]
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one release: image, digest, status, when it was found, changelog.
    #[command(after_help = "Example:\n  sluice release show 7")]
    Show { id: i64 },
    /// Start or extend the release's rollout to a tier (`canary`, `production`, `all`).
    #[command(after_help = "Example:\n  sluice release apply 7 --tier canary")]
    Apply {
        id: i64,
        #[arg(long, default_value = "canary")]
        tier: String,
        /// Needed for `production` before the soak passed, and for `all`.
        #[arg(long)]
        force: bool,
    },
    /// Never roll this release out.
    #[command(after_help = "Example:\n  sluice release reject 7 --reason \"breaks logins\"")]
    Reject {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// List rollouts with their release, digest, state and soak end.
    #[command(after_help = "Example:\n  sluice rollout list")]
    List,
    /// Show one rollout: its state and its targets per tier.
    #[command(after_help = "Example:\n  sluice rollout show 3")]
    Show { id: i64 },
    /// Live progress per tier until the rollout ends; exits 1 if it was aborted or rolled back.
    #[command(after_help = "Example:\n  sluice rollout watch 3")]
    Watch {
        id: i64,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// soaking → production.
    #[command(after_help = "Example:\n  sluice rollout promote 3")]
    Promote { id: i64 },
    /// Pause a rollout: no further update starts until it is resumed.
    #[command(after_help = "Example:\n  sluice rollout pause 3")]
    Pause { id: i64 },
    /// Resume a paused rollout where it stopped.
    #[command(after_help = "Example:\n  sluice rollout resume 3")]
    Resume { id: i64 },
    /// Stop starting updates.
    #[command(after_help = "Example:\n  sluice rollout abort 3 --reason \"error rate up\"")]
    Abort {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put every workspace this rollout updated back on its previous digest.
    #[command(
        after_help = "Examples:\n  sluice rollout rollback 3\n  sluice rollout rollback 3 --restore-data"
    )]
    Rollback {
        id: i64,
        /// Also restore pre-update volume snapshots (loses writes made since).
        #[arg(long)]
        restore_data: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Show the fleet mode and how many workspaces are in each state.
    #[command(after_help = "Example:\n  sluice fleet show")]
    Show,
    /// Set the fleet mode: `auto`, `manual` or `paused`.
    #[command(after_help = "Example:\n  sluice fleet mode paused")]
    Mode { mode: String },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Hosts with their state, heartbeat age, workspaces and agent version.
    #[command(after_help = "Example:\n  sluice host list")]
    List,
    /// Show one host: its state, labels, heartbeat and workspaces.
    #[command(after_help = "Example:\n  sluice host show web-2")]
    Show { name: String },
    /// Register a host for an agent; prints the agent's token once.
    #[command(after_help = "Example:\n  sluice host add web-2 --label zone=b")]
    Add {
        name: String,
        /// `KEY=VALUE`, repeatable.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// No new update starts on the host; running ones finish.
    #[command(after_help = "Example:\n  sluice host cordon web-2")]
    Cordon { name: String },
    /// Cordon the host and wait until no update runs there.
    #[command(after_help = "Example:\n  sluice host drain web-2 --timeout 10m")]
    Drain {
        name: String,
        /// Return at once instead of waiting.
        #[arg(long)]
        no_wait: bool,
        /// Give up waiting after this long (the host stays draining).
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Let updates start on the host again.
    #[command(after_help = "Example:\n  sluice host uncordon web-2")]
    Uncordon { name: String },
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events with an id above this.
    #[arg(long, default_value_t = 0)]
    pub since: i64,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}
