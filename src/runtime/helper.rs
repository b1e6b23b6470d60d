//! Helper containers: sluice's own binary run inside a throw-away container, so snapshot
//! work can reach a Docker volume through the Docker API alone (a remote engine, a volume
//! driver sluice cannot read from the host).
//!
//! The image is built here, never pulled: the binary (at `/sluice`), its ELF interpreter
//! and every shared library the interpreter resolves for it (what `ldd` lists), each a
//! regular file, imported as `sluice-helper:<first 16 hex of the binary's sha256>`. One
//! binary, one image: an image with that tag is reused, and callers in one process wait
//! for each other instead of building twice. The image is shared and kept.
//!
//! A run replaces any leftover container of its name, runs `/sluice ARGS…` as root with
//! no network and the given mounts, waits for it to exit, keeps the tail of its output
//! and removes the container whatever happened (also when the caller drops the future:
//! the removal then goes on in the background). Helper containers are labelled
//! `sluice.purpose=snapshot-helper` and `sluice.helper=<name>`, and deliberately not
//! `sluice.managed`: the reconciler and the drift detector never see them.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex as StdMutex, PoisonError};
use std::time::SystemTime;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, MountVolumeOptions,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use super::docker_convert::{err, is_status};
use super::{LABEL_PURPOSE, RuntimeError};

/// The repository helper images are imported as (tag: [`helper_image_tag`]).
pub const HELPER_REPO: &str = "sluice-helper";
/// The purpose (label [`LABEL_PURPOSE`]) of helper images and containers.
pub const PURPOSE_SNAPSHOT_HELPER: &str = "snapshot-helper";
/// The helper container's name, so a leftover one is found by label too.
pub const LABEL_HELPER: &str = "sluice.helper";
/// Where the binary lives inside the helper image.
pub const HELPER_BINARY: &str = "/sluice";
/// Output kept from a helper run: its last this many bytes.
pub const HELPER_OUTPUT_LIMIT: usize = 16 * 1024;

/// One run of the sluice binary in a helper container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperRun {
    /// The container's name; a container left with this name is replaced.
    pub name: String,
    /// The sluice executable to run (the image is built from it and its libraries).
    pub binary: PathBuf,
    /// Arguments after `/sluice`.
    pub args: Vec<String>,
    pub mounts: Vec<HelperMount>,
}

/// A volume or host directory mounted into the helper container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperMount {
    pub source: HelperSource,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperSource {
    /// A named Docker volume.
    Volume(String),
    /// A directory (or file) on the engine's host.
    Bind(PathBuf),
}

/// How a helper run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperExit {
    /// The process's exit code (0: success).
    pub code: i64,
    /// Its stdout and stderr as they came, at most the last [`HELPER_OUTPUT_LIMIT`] bytes.
    pub output: String,
}

/// The helper image's tag for `binary`: the first 16 hex digits of its sha256.
pub fn helper_image_tag(binary: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(binary)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    let mut hex = hex::encode(hasher.finalize());
    hex.truncate(16);
    Ok(hex)
}

/// Makes the helper image for `binary` present on the engine (building it the first
/// time) and returns its reference, `sluice-helper:<tag>`.
pub async fn ensure_helper_image(docker: &Docker, binary: &Path) -> Result<String, RuntimeError> {
    /// Held while an image is looked up and built: one build per binary in this process.
    static BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let tag = cached_tag(binary).await?;
    let image = format!("{HELPER_REPO}:{tag}");
    let _building = BUILD.lock().await;
    match docker.inspect_image(&image).await {
        Ok(_) => return Ok(image),
        Err(e) if is_status(&e, &[404]) => {}
        Err(e) => return Err(err("helper image", &image)(e)),
    }
    let bin = binary.to_owned();
    let rootfs = blocking(binary, move || super::helper_rootfs::rootfs(&bin)).await?;
    let bytes = rootfs.len();
    tracing::info!(image, binary = %binary.display(), bytes, "building helper image");
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(HELPER_REPO)
        .tag(&tag)
        .message(&format!("sluice helper for {}", binary.display()))
        .changes(vec![
            format!("LABEL {LABEL_PURPOSE}={PURPOSE_SNAPSHOT_HELPER}"),
            format!("CMD [\"{HELPER_BINARY}\"]"),
        ])
        .build();
    let mut import = docker.create_image(Some(opts), Some(bollard::body_full(rootfs.into())), None);
    while let Some(item) = import.next().await {
        item.map_err(err("helper image", &image))?;
    }
    docker
        .inspect_image(&image)
        .await
        .map_err(err("helper image", &image))?;
    Ok(image)
}

/// Runs `run` to completion in a helper container (see the module docs).
pub async fn run_helper_container(
    docker: &Docker,
    run: &HelperRun,
) -> Result<HelperExit, RuntimeError> {
    let image = ensure_helper_image(docker, &run.binary).await?;
    remove(docker, &run.name).await?;
    let mut guard = RemoveOnDrop(Some((docker.clone(), run.name.clone())));
    let result = create_and_wait(docker, run, &image).await;
    let removed = remove(docker, &run.name).await;
    guard.0 = None;
    match (result, removed) {
        (Ok(exit), Ok(())) => Ok(exit),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(not_removed)) => {
            let (container, error) = (&run.name, not_removed);
            tracing::warn!(%container, %error, "helper container not removed");
            Err(e)
        }
    }
}

/// Removes the container when a run is abandoned midway (its future dropped).
struct RemoveOnDrop(Option<(Docker, String)>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some((docker, name)) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(e) = remove(&docker, &name).await {
                    tracing::warn!(container = %name, error = %e, "helper container not removed");
                }
            });
        }
    }
}

async fn create_and_wait(
    docker: &Docker,
    run: &HelperRun,
    image: &str,
) -> Result<HelperExit, RuntimeError> {
    let name = run.name.as_str();
    let labels = HashMap::from([
        (LABEL_PURPOSE.to_owned(), PURPOSE_SNAPSHOT_HELPER.to_owned()),
        (LABEL_HELPER.to_owned(), name.to_owned()),
    ]);
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(
            std::iter::once(HELPER_BINARY.to_owned())
                .chain(run.args.iter().cloned())
                .collect(),
        ),
        // Numeric: the image has no /etc/passwd to look `root` up in.
        user: Some("0:0".to_owned()),
        labels: Some(labels),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            mounts: Some(run.mounts.iter().map(mount).collect()),
            // Readable whatever the engine's default log driver is (`none`, syslog, ...).
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: None,
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .map_err(err("helper create", name))?;
    docker
        .start_container(name, None)
        .await
        .map_err(err("helper start", name))?;
    // Waiting for "not-running" after the start: a process that exited already is
    // reported at once.
    let code = match docker.wait_container(name, None).next().await {
        Some(Ok(r)) => r.status_code,
        Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
        Some(Err(e)) => return Err(err("helper run", name)(e)),
        None => {
            return Err(RuntimeError::Refused {
                op: "helper run",
                target: name.to_owned(),
                message: "the engine ended the wait without an exit code".to_owned(),
            });
        }
    };
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(name, Some(opts));
    let mut output = Vec::new();
    while let Some(chunk) = logs.next().await {
        output.extend_from_slice(&chunk.map_err(err("helper logs", name))?.into_bytes());
        keep_tail(&mut output, 2 * HELPER_OUTPUT_LIMIT);
    }
    keep_tail(&mut output, HELPER_OUTPUT_LIMIT);
    Ok(HelperExit {
        code,
        output: tail_text(&output),
    })
}

fn mount(m: &HelperMount) -> Mount {
    let (typ, source, volume_options) = match &m.source {
        HelperSource::Volume(v) => (
            MountType::VOLUME,
            v.clone(),
            // Never fill the volume with what the image has at the target.
            Some(MountVolumeOptions {
                no_copy: Some(true),
                ..MountVolumeOptions::default()
            }),
        ),
        HelperSource::Bind(p) => (MountType::BIND, p.display().to_string(), None),
    };
    Mount {
        target: Some(m.target.clone()),
        source: Some(source),
        typ: Some(typ),
        read_only: Some(m.read_only),
        volume_options,
        ..Mount::default()
    }
}

/// Force-removes container `name` (with its anonymous volumes); a missing one is fine.
async fn remove(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, &[404]) => Ok(()),
        Err(e) => Err(err("helper remove", name)(e)),
    }
}

/// [`helper_image_tag`], hashed once per binary file (path, size and mtime).
async fn cached_tag(binary: &Path) -> Result<String, RuntimeError> {
    type Key = (PathBuf, u64, Option<SystemTime>);
    static TAGS: StdMutex<BTreeMap<Key, String>> = StdMutex::new(BTreeMap::new());
    let meta = tokio::fs::metadata(binary)
        .await
        .map_err(|e| refused(binary, format!("cannot read the binary: {e}")))?;
    let key = (binary.to_owned(), meta.len(), meta.modified().ok());
    if let Some(tag) = TAGS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(tag.clone());
    }
    let bin = binary.to_owned();
    let tag = blocking(binary, move || {
        helper_image_tag(&bin).map_err(|e| format!("cannot hash the binary: {e}"))
    })
    .await?;
    TAGS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, tag.clone());
    Ok(tag)
}

/// Runs blocking file work off the async threads; its error message names `binary`.
async fn blocking<T: Send + 'static>(
    binary: &Path,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the build task failed: {e}"))
        .and_then(|r| r)
        .map_err(|message| refused(binary, message))
}

fn refused(binary: &Path, message: String) -> RuntimeError {
    RuntimeError::Refused {
        op: "helper image",
        target: binary.display().to_string(),
        message,
    }
}

/// Drops the front of `buf` beyond its last `limit` bytes.
fn keep_tail(buf: &mut Vec<u8>, limit: usize) {
    if buf.len() > limit {
        buf.drain(..buf.len() - limit);
    }
}

/// The bytes as text, without a character cut in half at the front.
fn tail_text(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tail_of_the_output_is_kept() {
        let mut buf = b"0123456789".to_vec();
        keep_tail(&mut buf, 4);
        assert_eq!(buf, b"6789");
        let text = "aé€".as_bytes();
        assert_eq!(tail_text(&text[2..]), "€");
        assert_eq!(tail_text(&text[4..]), "");
    }
}
