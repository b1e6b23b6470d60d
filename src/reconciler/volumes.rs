//! Removing a workspace's volume, only when the workspace owns it: the one checked path
//! from "this workspace's spec names volume V" to "V is gone". The rule itself is the
//! pure [`may_remove_volume`]; this adds the runtime's view of the labels.

use super::container::{KeepReason, may_remove_volume};
use crate::runtime::{ContainerRuntime, RuntimeError};

/// What [`remove_owned_volume`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeRemoval {
    Removed,
    /// There was no such volume.
    Absent,
    /// Left in place: not the workspace's to remove.
    Kept(KeepReason),
}

/// Removes `volume` for workspace `workspace_id` (`workspace` is its name, for the log)
/// if the workspace owns it: labelled for its id, or unlabelled and `adopted` by its
/// stored spec. Anything else is kept and logged, never removed.
pub async fn remove_owned_volume<R: ContainerRuntime>(
    rt: &R,
    volume: &str,
    workspace_id: i64,
    workspace: &str,
    adopted: bool,
) -> Result<VolumeRemoval, RuntimeError> {
    let Some(labels) = rt.volume_inspect(volume).await? else {
        return Ok(VolumeRemoval::Absent);
    };
    if let Err(reason) = may_remove_volume(&labels, workspace_id, adopted) {
        tracing::warn!(
            workspace,
            workspace_id,
            volume,
            reason = reason.as_str(),
            "volume kept: {reason}"
        );
        return Ok(VolumeRemoval::Kept(reason));
    }
    rt.volume_remove(volume).await?;
    tracing::info!(workspace, workspace_id, volume, "volume removed");
    Ok(VolumeRemoval::Removed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::reconciler::container::volume_labels;
    use crate::runtime::FakeRuntime;

    #[tokio::test]
    async fn removes_own_and_adopted_volumes_and_keeps_the_rest() {
        let rt = FakeRuntime::new();
        let bare = BTreeMap::from([("team".to_owned(), "a".to_owned())]);
        rt.volume_create("own", &volume_labels(1, "acme"))
            .await
            .unwrap();
        rt.volume_create("theirs", &volume_labels(2, "globex"))
            .await
            .unwrap();
        rt.volume_create("bare", &bare).await.unwrap();
        rt.volume_create("adopted", &bare).await.unwrap();

        let remove = |v: &'static str, adopted: bool| {
            let rt = rt.clone();
            async move {
                remove_owned_volume(&rt, v, 1, "acme", adopted)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(remove("own", false).await, VolumeRemoval::Removed);
        assert_eq!(
            remove("theirs", true).await,
            VolumeRemoval::Kept(KeepReason::OtherWorkspace { owner: 2 })
        );
        assert_eq!(
            remove("bare", false).await,
            VolumeRemoval::Kept(KeepReason::NotOwned)
        );
        assert_eq!(remove("adopted", true).await, VolumeRemoval::Removed);
        assert_eq!(remove("missing", false).await, VolumeRemoval::Absent);

        assert!(rt.volume_inspect("own").await.unwrap().is_none());
        assert!(rt.volume_inspect("adopted").await.unwrap().is_none());
        assert_eq!(
            rt.volume_inspect("theirs").await.unwrap(),
            Some(volume_labels(2, "globex")),
            "another workspace's volume is untouched"
        );
        assert!(rt.volume_inspect("bare").await.unwrap().is_some());
    }

    /// Architecture invariant: sluice only removes volumes labelled for the workspace (or
    /// adopted by it). Outside the runtime seam itself, a volume is removed only through
    /// [`remove_owned_volume`]; the listed exceptions are known and each says why.
    /// (Emptying a volume in place for a restore checks [`may_remove_volume`] first, in
    /// the saga's `restore_volumes`.)
    #[test]
    fn volumes_are_removed_only_through_the_ownership_check() {
        const EXCEPTIONS: &[(&str, &str)] = &[];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut offenders = Vec::new();
        let mut stack = vec![root.join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(root)
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                if !rel.ends_with(".rs")
                    || rel.starts_with("src/runtime/")
                    || rel == "src/reconciler/volumes.rs"
                    || EXCEPTIONS.iter().any(|(f, _)| *f == rel)
                {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                for (n, line) in text.lines().enumerate() {
                    if line.contains(".volume_remove(") || line.contains(".remove_volume(") {
                        offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "remove volumes through reconciler::volumes::remove_owned_volume \
             (or check container::may_remove_volume first):\n{}",
            offenders.join("\n")
        );
    }
}
