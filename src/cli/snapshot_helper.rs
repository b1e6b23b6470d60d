//! `sluice snapshot-helper`: what runs inside the helper container sluice makes from its
//! own binary when a volume is reached through the Docker API alone. One snapshot stage
//! or one restore, with the volume at `--volume` and the snapshot directory at `--store`;
//! the report is printed as the last line of output, as JSON. Not for operators.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::snapshot::incremental::{Stage, run_restore, run_stage};

#[derive(Debug, Args)]
pub struct HelperPaths {
    /// The snapshot directory.
    #[arg(long)]
    pub store: PathBuf,
    /// The volume's directory.
    #[arg(long)]
    pub volume: PathBuf,
    /// Clone files instead of copying them.
    #[arg(long)]
    pub reflink: bool,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotHelperCommand {
    /// Copy the volume into the store and write a manifest (one snapshot stage).
    #[command(
        after_help = "Example:\n  sluice snapshot-helper capture --store /store --volume /volume \\
      --out /store/manifests/acme-u1-v0-1.json"
    )]
    Capture {
        #[command(flatten)]
        paths: HelperPaths,
        /// The manifest to write.
        #[arg(long)]
        out: PathBuf,
        /// The manifest whose unchanged files need no reading.
        #[arg(long)]
        base: Option<PathBuf>,
        /// The base manifest's recorded sha256 (a complete snapshot's).
        #[arg(long)]
        base_sha256: Option<String>,
        /// Free bytes the store keeps.
        #[arg(long, default_value_t = 0)]
        min_free: u64,
        /// The container still runs: keep files that change under the read as read.
        #[arg(long)]
        precopy: bool,
    },
    /// Empty the volume and refill it from a manifest.
    #[command(
        after_help = "Example:\n  sluice snapshot-helper restore --store /store --volume /volume \\
      --manifest /store/manifests/acme-u1-v0-1.json --sha256 <64 hex digits>"
    )]
    Restore {
        #[command(flatten)]
        paths: HelperPaths,
        #[arg(long)]
        manifest: PathBuf,
        /// The manifest's recorded sha256.
        #[arg(long)]
        sha256: String,
    },
}

/// Runs the command; returns the report line.
pub fn run(cmd: &SnapshotHelperCommand) -> std::io::Result<String> {
    let line = match cmd {
        SnapshotHelperCommand::Capture {
            paths,
            out,
            base,
            base_sha256,
            min_free,
            precopy,
        } => {
            let report = run_stage(&Stage {
                store: &paths.store,
                volume: &paths.volume,
                out,
                base: base.as_deref().map(|b| (b, base_sha256.as_deref())),
                min_free: *min_free,
                precopy: *precopy,
                reflink: paths.reflink,
                fault: None,
            })?;
            serde_json::to_string(&report)
        }
        SnapshotHelperCommand::Restore {
            paths,
            manifest,
            sha256,
        } => {
            let report = run_restore(
                &paths.store,
                &paths.volume,
                manifest,
                sha256,
                paths.reflink,
                None,
            )?;
            serde_json::to_string(&report)
        }
    };
    line.map_err(std::io::Error::other)
}
