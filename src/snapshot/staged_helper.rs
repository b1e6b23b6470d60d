//! The helper container's side of the incremental store: running `sluice
//! snapshot-helper` with a volume and the snapshot directory mounted, for a volume whose
//! directory this process cannot reach (see `staged.rs`).

use std::path::Path;

use super::{SnapshotError, Snapshots, io};
use crate::runtime::{ContainerRuntime, HelperMount, HelperRun, HelperSource};

/// Where the helper container sees the snapshot directory and the volume.
pub const HELPER_STORE: &str = "/store";
pub const HELPER_VOLUME: &str = "/volume";

impl Snapshots {
    /// A path in the snapshot directory as the helper container sees it (under `/store`).
    pub(super) fn inside(&self, p: &Path) -> Result<String, SnapshotError> {
        let rel = p
            .strip_prefix(&self.dir)
            .map_err(|_| SnapshotError::Invalid {
                id: p.display().to_string(),
                reason: "not inside the snapshot directory".to_owned(),
            })?;
        Ok(Path::new(HELPER_STORE).join(rel).display().to_string())
    }

    /// Runs `sluice snapshot-helper ARGS` with the volume at `/volume` and the snapshot
    /// directory at `/store`; parses the report it prints last.
    pub(super) async fn helper<R: ContainerRuntime, T: serde::de::DeserializeOwned>(
        &self,
        rt: &R,
        name: &str,
        volume: &str,
        read_only: bool,
        mut args: Vec<String>,
    ) -> Result<T, SnapshotError> {
        let store = tokio::fs::canonicalize(&self.dir)
            .await
            .map_err(io(&self.dir))?;
        args.extend([
            "--store".to_owned(),
            HELPER_STORE.to_owned(),
            "--volume".to_owned(),
            HELPER_VOLUME.to_owned(),
        ]);
        if self.reflink {
            args.push("--reflink".to_owned());
        }
        let binary = match &self.settings.helper_binary {
            Some(b) => b.clone(),
            None => std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?,
        };
        let run = HelperRun {
            name: name.to_owned(),
            binary,
            args,
            mounts: vec![
                HelperMount {
                    source: HelperSource::Volume(volume.to_owned()),
                    target: HELPER_VOLUME.to_owned(),
                    read_only,
                },
                HelperMount {
                    source: HelperSource::Bind(store),
                    target: HELPER_STORE.to_owned(),
                    read_only: false,
                },
            ],
        };
        let exit = rt.run_helper(&run).await?;
        let invalid = |reason: String| SnapshotError::Invalid {
            id: name.to_owned(),
            reason,
        };
        if exit.code != 0 {
            return Err(invalid(format!(
                "the snapshot helper for volume {volume} exited with {}: {}",
                exit.code,
                exit.output.trim()
            )));
        }
        let line = exit
            .output
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .ok_or_else(|| {
                invalid(format!(
                    "the snapshot helper printed no report: {}",
                    exit.output.trim()
                ))
            })?;
        serde_json::from_str(line)
            .map_err(|e| invalid(format!("the snapshot helper's report: {e}")))
    }
}
