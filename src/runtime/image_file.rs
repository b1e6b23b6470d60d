//! Reading one file from inside an image without running it: a container is created
//! from the image and never started, the file is fetched through Docker's archive API
//! (a tar stream, read only up to a limit), and the container is removed again whatever
//! happened. A symlink at the path is followed inside the image, a bounded number of
//! hops. Used for a release's changelog file (`src/watcher/changelog_file.rs`).
//!
//! The helper container carries `sluice.managed=true` and `sluice.purpose=read-changelog`
//! and no workspace label, so the reconciler never takes it for a workspace's. It lives
//! for one read; one left by a process killed mid-read is removed by [`ImageFiles::sweep`]
//! (the changelog reader sweeps once when it starts).

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::docker_convert::{err, is_status};
use super::{ContainerRuntime, DockerHandle, DockerRuntime, LABEL_MANAGED, RuntimeError};

/// What a helper container is for (with [`PURPOSE_READ_CHANGELOG`]).
pub const LABEL_PURPOSE: &str = "sluice.purpose";
/// The purpose of the container that reads a changelog file from an image.
pub const PURPOSE_READ_CHANGELOG: &str = "read-changelog";
/// Symlinks followed before the read gives up.
pub const MAX_LINK_HOPS: usize = 8;
/// Tar headers (a PAX header included) read beyond the limit of the file itself.
const HEADER_ROOM: usize = 16 * 1024;

/// The beginning of a file read from an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    /// The regular file that was read, after following symlinks.
    pub path: String,
    /// Its whole size.
    pub size: u64,
    /// Its first bytes, at most the limit asked for.
    pub head: Vec<u8>,
}

/// The engine's images, as the changelog reader needs them.
pub trait ImageFiles: Send + Sync {
    /// Whether `image` (by digest) is on the engine already.
    fn has_image(&self, image: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
    /// Pulls `image` unless it is there already.
    fn pull(&self, image: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// The first `limit` bytes of the file at `path` inside `image`, following symlinks;
    /// `None` when the image has no such file.
    fn read_file(
        &self,
        image: &str,
        path: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Option<ImageFile>, RuntimeError>> + Send;
    /// Removes helper containers created before `cutoff` (a read takes seconds, so one
    /// much older was left by a process killed mid-read); how many.
    fn sweep(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<usize, RuntimeError>> + Send;
}

impl DockerHandle {
    fn engine(
        &self,
        op: &'static str,
        target: &str,
    ) -> Result<std::sync::Arc<Docker>, RuntimeError> {
        self.get().ok_or_else(|| RuntimeError::Unavailable {
            op,
            target: target.to_owned(),
        })
    }
}

impl ImageFiles for DockerHandle {
    async fn has_image(&self, image: &str) -> Result<bool, RuntimeError> {
        let docker = self.engine("inspect image", image)?;
        match docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, &[404]) => Ok(false),
            Err(e) => Err(err("inspect image", image)(e)),
        }
    }

    async fn pull(&self, image: &str) -> Result<(), RuntimeError> {
        let docker = self.engine("pull", image)?;
        DockerRuntime::new((*docker).clone())
            .ensure_image(image)
            .await
    }

    async fn read_file(
        &self,
        image: &str,
        path: &str,
        limit: usize,
    ) -> Result<Option<ImageFile>, RuntimeError> {
        let docker = self.engine("create helper container", image)?;
        let labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_PURPOSE.to_owned(), PURPOSE_READ_CHANGELOG.to_owned()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            // Never run; a command is set only because an image without one cannot be
            // created from.
            cmd: Some(vec!["/sluice-never-started".to_owned()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let id = docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(err("create helper container", image))?
            .id;
        let read = follow(&docker, &id, path, limit).await;
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => {
                tracing::warn!(container = %id, image, error = %e, "helper container not removed");
                if read.is_ok() {
                    return Err(err("remove helper container", &id)(e));
                }
            }
        }
        read
    }

    async fn sweep(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<usize, RuntimeError> {
        let docker = self.engine("list", "helper containers")?;
        let cutoff = cutoff.timestamp();
        let mut removed = 0;
        for (id, created) in helpers(&docker).await? {
            if created > cutoff {
                continue;
            }
            let opts = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(&id, Some(opts)).await {
                Ok(()) => removed += 1,
                Err(e) if is_status(&e, &[404]) => {}
                Err(e) => return Err(err("remove helper container", &id)(e)),
            }
        }
        Ok(removed)
    }
}

/// The helper containers (never started, so listed with `all`) and their creation times.
async fn helpers(docker: &Docker) -> Result<Vec<(String, i64)>, RuntimeError> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{LABEL_MANAGED}=true"),
            format!("{LABEL_PURPOSE}={PURPOSE_READ_CHANGELOG}"),
        ],
    )]);
    let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .map_err(err("list", "helper containers"))?;
    Ok(list
        .into_iter()
        .filter_map(|c| Some((c.id?, c.created.unwrap_or(0))))
        .collect())
}

/// Reads `path` in container `id`, following symlinks at most [`MAX_LINK_HOPS`] times.
async fn follow(
    docker: &Docker,
    id: &str,
    path: &str,
    limit: usize,
) -> Result<Option<ImageFile>, RuntimeError> {
    let mut current = path.to_owned();
    for _ in 0..=MAX_LINK_HOPS {
        let Some(head) = download_head(docker, id, &current, limit + HEADER_ROOM).await? else {
            return Ok(None);
        };
        match first_entry(&head, limit).map_err(|message| RuntimeError::Refused {
            op: "read image file",
            target: current.clone(),
            message,
        })? {
            Entry::File { size, head } => {
                return Ok(Some(ImageFile {
                    path: current,
                    size,
                    head,
                }));
            }
            Entry::Link(target) => current = resolve_link(&current, &target),
        }
    }
    Err(RuntimeError::Refused {
        op: "read image file",
        target: path.to_owned(),
        message: format!("more than {MAX_LINK_HOPS} symlinks"),
    })
}

/// The first `cap` bytes of the archive of `path`; `None` when there is no such path.
async fn download_head(
    docker: &Docker,
    id: &str,
    path: &str,
    cap: usize,
) -> Result<Option<Vec<u8>>, RuntimeError> {
    let opts = DownloadFromContainerOptionsBuilder::default()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(id, Some(opts));
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                let room = cap - buf.len();
                buf.extend_from_slice(&c[..c.len().min(room)]);
                if buf.len() >= cap {
                    // Enough: the rest of the stream is dropped unread.
                    break;
                }
            }
            Err(e) if is_status(&e, &[404]) => return Ok(None),
            Err(e) => return Err(err("archive download", path)(e)),
        }
    }
    Ok(Some(buf))
}

enum Entry {
    File { size: u64, head: Vec<u8> },
    Link(String),
}

/// The archive's first entry: a regular file's size and first `limit` bytes, or a
/// symlink's target.
fn first_entry(archive: &[u8], limit: usize) -> Result<Entry, String> {
    let mut archive = tar::Archive::new(archive);
    let mut entries = archive.entries().map_err(|e| format!("bad archive: {e}"))?;
    let entry = entries
        .next()
        .ok_or_else(|| "empty archive".to_owned())?
        .map_err(|e| format!("bad archive: {e}"))?;
    let kind = entry.header().entry_type();
    if kind.is_symlink() {
        let target = entry
            .link_name()
            .map_err(|e| format!("bad symlink: {e}"))?
            .ok_or_else(|| "symlink without a target".to_owned())?;
        return Ok(Entry::Link(target.to_string_lossy().into_owned()));
    }
    if !kind.is_file() {
        return Err(format!("not a regular file ({kind:?})"));
    }
    let size = entry.size();
    let mut head = Vec::new();
    entry
        .take(limit as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read the file from the archive: {e}"))?;
    Ok(Entry::File { size, head })
}

/// Where a symlink at `link` pointing to `target` leads, as an absolute path.
fn resolve_link(link: &str, target: &str) -> String {
    let base = if target.starts_with('/') {
        String::new()
    } else {
        link.rsplit_once('/')
            .map(|(dir, _)| dir)
            .unwrap_or("")
            .to_owned()
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in base.split('/').chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_is_resolved_inside_the_image() {
        let l = "/app/changelogs/latest.json";
        assert_eq!(resolve_link(l, "1.2.json"), "/app/changelogs/1.2.json");
        assert_eq!(
            resolve_link(l, "./v/1.2.json"),
            "/app/changelogs/v/1.2.json"
        );
        assert_eq!(resolve_link(l, "../notes.txt"), "/app/notes.txt");
        assert_eq!(resolve_link(l, "/srv/c.json"), "/srv/c.json");
        assert_eq!(resolve_link(l, "../../../../etc/x"), "/etc/x");
    }

    fn archive(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        f(&mut b);
        b.into_inner().unwrap()
    }

    #[test]
    fn the_first_entry_is_read_up_to_the_limit() {
        let data = archive(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_size(10);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "latest.json", &b"0123456789"[..])
                .unwrap();
        });
        match first_entry(&data, 4) {
            Ok(Entry::File { size, head }) => assert_eq!((size, head), (10, b"0123".to_vec())),
            _ => panic!("a file"),
        }
        let link = archive(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_cksum();
            b.append_link(&mut h, "latest.json", "1.2.json").unwrap();
        });
        assert!(matches!(first_entry(&link, 4), Ok(Entry::Link(t)) if t == "1.2.json"));
        let dir = archive(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            h.set_cksum();
            b.append_data(&mut h, "changelogs", std::io::empty())
                .unwrap();
        });
        assert!(first_entry(&dir, 4).is_err());
    }
}
