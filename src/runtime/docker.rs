//! [`ContainerRuntime`] on a Docker engine through bollard (API version negotiated by
//! [`super::connect`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::{Clock, SystemClock};

use super::docker_convert::{body, err, info_from_inspect, io_err, is_status};

use super::{
    Attachment, ContainerInfo, ContainerRuntime, ContainerSpec, LABEL_MANAGED, RunningConfig,
    RuntimeError,
};

/// The Docker engine behind the seam.
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The engine runs on this machine, so a local volume's directory can be read and
    /// written here (snapshots that keep holes, hard links and xattrs).
    same_host: bool,
    /// Where "now" comes from (the daemon's one clock; the wall clock by default).
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("docker", &self.docker)
            .field("same_host", &self.same_host)
            .finish_non_exhaustive()
    }
}

impl DockerRuntime {
    /// An engine on this machine (a unix socket).
    pub fn new(docker: Docker) -> Self {
        Self {
            docker,
            same_host: true,
            clock: Arc::new(SystemClock),
        }
    }

    /// An engine on another machine (`tcp://`): its volumes are reached only through the
    /// archive API.
    pub fn remote(docker: Docker) -> Self {
        Self {
            docker,
            same_host: false,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time (the `until` of [`ContainerRuntime::events_since`]) from `clock`
    /// instead of the wall clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

impl ContainerRuntime for DockerRuntime {
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        crate::fault::point("pull.before").await;
        let result = async {
            match self.docker.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, &[404]) => {}
                Err(e) => return Err(err("inspect image", image)(e)),
            }
            let opts = CreateImageOptionsBuilder::default()
                .from_image(image)
                .build();
            let mut pull = self.docker.create_image(Some(opts), None, None);
            while let Some(item) = pull.next().await {
                let item = item.map_err(err("pull", image))?;
                if let Some(e) = item.error_detail.and_then(|d| d.message) {
                    return Err(RuntimeError::Refused {
                        op: "pull",
                        target: image.to_owned(),
                        message: e,
                    });
                }
            }
            self.docker
                .inspect_image(image)
                .await
                .map(|_| ())
                .map_err(err("inspect pulled image", image))
        }
        .await;
        crate::fault::point("pull.after").await;
        result
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(info_from_inspect(c))),
            Err(e) if is_status(&e, &[404]) => Ok(None),
            Err(e) => Err(err("inspect", name)(e)),
        }
    }

    async fn inspect_config(&self, name: &str) -> Result<Option<RunningConfig>, RuntimeError> {
        super::docker_config::inspect_config(&self.docker, name).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        crate::fault::point("create.before").await;
        let result = async {
            let opts = CreateContainerOptionsBuilder::default()
                .name(&spec.name)
                .build();
            let r = self
                .docker
                .create_container(Some(opts), body(spec))
                .await
                .map_err(err("create", &spec.name))?;
            if spec.networks.len() > 1 {
                crate::fault::point("create.networks").await;
            }
            // A container missing one of its networks must not look created: remove it,
            // so the step is retried whole.
            if let Err(e) = super::docker_config::connect_networks(&self.docker, spec).await {
                let _ = self.remove(&r.id).await;
                return Err(e);
            }
            Ok(r.id)
        }
        .await;
        crate::fault::point("create.after").await;
        result
    }

    async fn exec(
        &self,
        name: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<Option<i64>, RuntimeError> {
        super::docker_exec::exec(&self.docker, name, cmd, timeout).await
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        crate::fault::point("start.before").await;
        let result = async {
            match self.docker.start_container(name, None).await {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, &[304]) => Ok(()),
                Err(e) => Err(err("start", name)(e)),
            }
        }
        .await;
        crate::fault::point("start.after").await;
        result
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        crate::fault::point("stop.before").await;
        let result = async {
            let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
            let opts = StopContainerOptionsBuilder::default().t(t).build();
            match self.docker.stop_container(name, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, &[304, 404]) => Ok(()),
                Err(e) => Err(err("stop", name)(e)),
            }
        }
        .await;
        crate::fault::point("stop.after").await;
        result
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        crate::fault::point("remove.before").await;
        let result = async {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            match self.docker.remove_container(name, Some(opts)).await {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, &[404]) => Ok(()),
                Err(e) => Err(err("remove", name)(e)),
            }
        }
        .await;
        crate::fault::point("remove.after").await;
        result
    }

    async fn list_managed(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_MANAGED}=true")])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(err("list", "managed containers"))?;
        let mut out = Vec::new();
        for c in list {
            if let Some(id) = c.id
                && let Some(info) = self.inspect(&id).await?
            {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn archive_download(
        &self,
        container: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(u64, String), RuntimeError> {
        crate::fault::point("archive_download.before").await;
        let result = async {
            let opts = DownloadFromContainerOptionsBuilder::default()
                .path(path)
                .build();
            let mut stream = self.docker.download_from_container(container, Some(opts));
            let file = tokio::fs::File::create(dest).await.map_err(io_err(dest))?;
            let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(err("archive download", container))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io_err(dest))?;
            }
            file.flush().await.map_err(io_err(dest))?;
            file.get_ref().sync_all().await.map_err(io_err(dest))?;
            Ok((size, hex::encode(hasher.finalize())))
        }
        .await;
        crate::fault::point("archive_download.after").await;
        result
    }

    async fn archive_upload(
        &self,
        container: &str,
        dir: &str,
        src: &Path,
    ) -> Result<(), RuntimeError> {
        crate::fault::point("archive_upload.before").await;
        let result = async {
            let file = tokio::fs::File::open(src).await.map_err(io_err(src))?;
            let chunks = futures_util::stream::unfold(file, |mut f| async move {
                let mut buf = vec![0u8; 1 << 20];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            let opts = UploadToContainerOptionsBuilder::default().path(dir).build();
            self.docker
                .upload_to_container(container, Some(opts), bollard::body_try_stream(chunks))
                .await
                .map_err(err("archive upload", container))
        }
        .await;
        crate::fault::point("archive_upload.after").await;
        result
    }

    async fn volume_create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, RuntimeError> {
        crate::fault::point("volume_create.before").await;
        let result = async {
            if self.volume_inspect(name).await?.is_some() {
                return Ok(false);
            }
            let req = VolumeCreateRequest {
                name: Some(name.to_owned()),
                labels: Some(labels.clone().into_iter().collect()),
                ..Default::default()
            };
            self.docker
                .create_volume(req)
                .await
                .map_err(err("create volume", name))?;
            Ok(true)
        }
        .await;
        crate::fault::point("volume_create.after").await;
        result
    }

    async fn volume_inspect(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, RuntimeError> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(v.labels.into_iter().collect())),
            Err(e) if is_status(&e, &[404]) => Ok(None),
            Err(e) => Err(err("inspect volume", name)(e)),
        }
    }

    async fn ping(&self) -> bool {
        self.docker.ping().await.is_ok()
    }

    async fn volume_host_path(&self, name: &str) -> Result<Option<PathBuf>, RuntimeError> {
        if !self.same_host {
            return Ok(None);
        }
        let v = match self.docker.inspect_volume(name).await {
            Ok(v) => v,
            Err(e) if is_status(&e, &[404]) => return Ok(None),
            Err(e) => return Err(err("inspect volume", name)(e)),
        };
        if v.driver != "local" || !v.options.is_empty() {
            return Ok(None);
        }
        let dir = PathBuf::from(&v.mountpoint);
        match tokio::fs::symlink_metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(Some(dir)),
            _ => Ok(None),
        }
    }

    async fn volume_remove(&self, name: &str) -> Result<(), RuntimeError> {
        crate::fault::point("volume_remove.before").await;
        let result = async {
            match self
                .docker
                .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if is_status(&e, &[404]) => Ok(()),
                Err(e) => Err(err("remove volume", name)(e)),
            }
        }
        .await;
        crate::fault::point("volume_remove.after").await;
        result
    }

    async fn events_since(&self, since_secs: i64) -> Result<Vec<String>, RuntimeError> {
        let until = self.clock.now().timestamp() + 1;
        super::docker_events::exited_since(&self.docker, since_secs, until).await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        super::docker_swap::rename(&self.docker, from, to).await
    }

    async fn attach(&self, name: &str, network: &Attachment) -> Result<(), RuntimeError> {
        super::docker_swap::attach(&self.docker, name, network).await
    }

    async fn run_helper(&self, run: &super::HelperRun) -> Result<super::HelperExit, RuntimeError> {
        super::helper::run_helper_container(&self.docker, run).await
    }
}
