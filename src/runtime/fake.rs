//! An in-memory [`ContainerRuntime`] for unit tests and scale benchmarks. It keeps the
//! behaviours the contract suite checks: idempotent stop/remove/volume create, refusing
//! to remove a volume in use, unknown images failing to pull, archives round-tripping.
//! A started container appends a line to every mounted volume (like the fixture images'
//! `boots.log`), so volume data visibly changes across boots.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::docker_convert::io_err;
use super::fake_views::{config_of, info};
use super::{
    Attachment, ContainerInfo, ContainerRuntime, ContainerSpec, LABEL_MANAGED, RunningConfig,
    RuntimeError,
};

#[derive(Debug)]
pub(super) struct FakeContainer {
    pub(super) id: String,
    pub(super) spec: ContainerSpec,
    pub(super) running: bool,
}

#[derive(Debug, Default)]
struct State {
    images: BTreeSet<String>,
    containers: HashMap<String, FakeContainer>,
    volumes: HashMap<String, (BTreeMap<String, String>, Vec<u8>)>,
    next_id: u64,
    /// Images whose containers exit at once when started.
    crashing: BTreeSet<String>,
    /// Names of managed containers stopped or removed (the fake's event log).
    events: Vec<String>,
    /// Every stop of a running container: (name, grace before a kill).
    stops: Vec<(String, Duration)>,
    /// The next this many calls (pings included) fail as if the engine were down.
    unreachable: usize,
    /// Operation → how many of its next calls fail (an engine hiccup; pings still answer).
    failing: HashMap<&'static str, usize>,
    /// When this operation is next called, the engine goes down for that many calls.
    down_at: Option<(&'static str, usize)>,
}

/// In-memory runtime; clones share state.
#[derive(Clone, Debug, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

pub(super) fn refused(op: &'static str, target: &str, message: &str) -> RuntimeError {
    RuntimeError::Refused {
        op,
        target: target.to_owned(),
        message: message.to_owned(),
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine goes down for `calls` calls (this one included) when `op` is next
    /// called: a dockerd restart at a chosen moment.
    pub fn go_down_at(&self, op: &'static str, calls: usize) {
        self.lock().down_at = Some((op, calls));
    }

    /// The next `calls` calls of `op` (e.g. `"volume remove"`) fail as a busy engine's do
    /// (a transient error) while pings still answer.
    pub fn fail_next(&self, op: &'static str, calls: usize) {
        self.lock().failing.insert(op, calls);
    }

    /// Fails the call while the engine is down or the operation is set to fail.
    fn answer(&self, op: &'static str, target: &str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        if let Some((at, calls)) = s.down_at
            && at == op
        {
            s.down_at = None;
            s.unreachable = calls;
        }
        if s.unreachable > 0 {
            s.unreachable -= 1;
            return Err(RuntimeError::Unavailable {
                op,
                target: target.to_owned(),
            });
        }
        if let Some(n) = s.failing.get_mut(op).filter(|n| **n > 0) {
            *n -= 1;
            return Err(RuntimeError::Unavailable {
                op,
                target: target.to_owned(),
            });
        }
        Ok(())
    }

    /// Makes `image` pullable (the fake's registry).
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_owned());
    }

    /// Containers of `image` exit with status 1 as soon as they start.
    pub fn add_crashing_image(&self, image: &str) {
        let mut s = self.lock();
        s.images.insert(image.to_owned());
        s.crashing.insert(image.to_owned());
    }

    /// The bytes stored in a volume.
    pub fn volume_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.lock().volumes.get(name).map(|(_, b)| b.clone())
    }

    /// Replaces the bytes of an existing volume (a tenant writing data).
    pub fn write_volume(&self, name: &str, bytes: &[u8]) {
        if let Some((_, b)) = self.lock().volumes.get_mut(name) {
            *b = bytes.to_vec();
        }
    }

    /// Every stop of a running container so far: (name, grace before a kill).
    pub fn stops(&self) -> Vec<(String, Duration)> {
        self.lock().stops.clone()
    }

    /// The spec a container was created from.
    pub fn spec_of(&self, name: &str) -> Option<ContainerSpec> {
        self.lock().containers.get(name).map(|c| c.spec.clone())
    }

    fn find<'a>(s: &'a mut State, name: &str) -> Option<&'a mut FakeContainer> {
        if s.containers.contains_key(name) {
            return s.containers.get_mut(name);
        }
        s.containers.values_mut().find(|c| c.id == name)
    }
}

impl ContainerRuntime for FakeRuntime {
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.answer("ensure image", image)?;
        if self.lock().images.contains(image) {
            Ok(())
        } else {
            Err(refused("pull", image, "manifest unknown"))
        }
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        self.answer("inspect", name)?;
        Ok(Self::find(&mut self.lock(), name).map(|c| info(c)))
    }

    async fn inspect_config(&self, name: &str) -> Result<Option<RunningConfig>, RuntimeError> {
        self.answer("inspect", name)?;
        Ok(Self::find(&mut self.lock(), name).map(|c| config_of(c)))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.answer("create", &spec.name)?;
        let mut s = self.lock();
        if s.containers.contains_key(&spec.name) {
            return Err(refused("create", &spec.name, "name already in use"));
        }
        if !s.images.contains(&spec.image) {
            return Err(refused("create", &spec.name, "no such image"));
        }
        for (v, _) in &spec.volumes {
            s.volumes.entry(v.clone()).or_default();
        }
        s.next_id += 1;
        let id = format!("{:064x}", s.next_id);
        s.containers.insert(
            spec.name.clone(),
            FakeContainer {
                id: id.clone(),
                spec: spec.clone(),
                running: false,
            },
        );
        Ok(id)
    }

    async fn start(&self, name: &str) -> Result<(), RuntimeError> {
        self.answer("start", name)?;
        let mut s = self.lock();
        let crashing = s.crashing.clone();
        let c =
            Self::find(&mut s, name).ok_or_else(|| refused("start", name, "no such container"))?;
        if c.running {
            return Ok(());
        }
        c.running = !crashing.contains(&c.spec.image);
        let line = format!("boot {}\n", c.spec.image);
        let vols: Vec<String> = c.spec.volumes.iter().map(|(v, _)| v.clone()).collect();
        for v in vols {
            s.volumes
                .entry(v)
                .or_default()
                .1
                .extend_from_slice(line.as_bytes());
        }
        Ok(())
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.answer("stop", name)?;
        let mut s = self.lock();
        if s.containers.get(name).is_some_and(|c| c.running) {
            s.stops.push((name.to_owned(), grace));
        }
        let stopped = Self::find(&mut s, name).and_then(|c| {
            let was = c.running;
            c.running = false;
            let managed = c.spec.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true");
            (was && managed).then(|| c.spec.name.clone())
        });
        if let Some(n) = stopped
            && !s.events.contains(&n)
        {
            s.events.push(n);
        }
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.answer("remove", name)?;
        let mut s = self.lock();
        let key = Self::find(&mut s, name).map(|c| c.spec.name.clone());
        if let Some(k) = key {
            s.containers.remove(&k);
        }
        Ok(())
    }

    async fn list_managed(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let s = self.lock();
        let mut v: Vec<_> = s
            .containers
            .values()
            .filter(|c| c.spec.labels.get(LABEL_MANAGED).map(String::as_str) == Some("true"))
            .map(info)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn archive_download(
        &self,
        container: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(u64, String), RuntimeError> {
        self.answer("archive download", container)?;
        let bytes = {
            let mut s = self.lock();
            let c = Self::find(&mut s, container)
                .ok_or_else(|| refused("archive download", container, "no such container"))?;
            let vol = c
                .spec
                .volumes
                .iter()
                .find(|(_, m)| m == path)
                .map(|(v, _)| v.clone())
                .ok_or_else(|| refused("archive download", path, "no volume mounted there"))?;
            s.volumes
                .get(&vol)
                .map(|(_, b)| b.clone())
                .unwrap_or_default()
        };
        tokio::fs::write(dest, &bytes).await.map_err(io_err(dest))?;
        Ok((bytes.len() as u64, hex::encode(Sha256::digest(&bytes))))
    }

    async fn archive_upload(
        &self,
        container: &str,
        dir: &str,
        src: &Path,
    ) -> Result<(), RuntimeError> {
        self.answer("archive upload", container)?;
        let bytes = tokio::fs::read(src).await.map_err(io_err(src))?;
        let mut s = self.lock();
        let c = Self::find(&mut s, container)
            .ok_or_else(|| refused("archive upload", container, "no such container"))?;
        // The fake's archives are the volume's bytes; they land in the volume mounted
        // directly below `dir`.
        let vol = c
            .spec
            .volumes
            .iter()
            .find(|(_, m)| Path::new(m).parent() == Some(Path::new(dir)))
            .map(|(v, _)| v.clone())
            .ok_or_else(|| refused("archive upload", dir, "no volume mounted below"))?;
        s.volumes.entry(vol).or_default().1 = bytes;
        Ok(())
    }

    async fn volume_create(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, RuntimeError> {
        self.answer("volume create", name)?;
        let mut s = self.lock();
        if s.volumes.contains_key(name) {
            return Ok(false);
        }
        s.volumes
            .insert(name.to_owned(), (labels.clone(), Vec::new()));
        Ok(true)
    }

    async fn volume_inspect(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, RuntimeError> {
        self.answer("volume inspect", name)?;
        Ok(self.lock().volumes.get(name).map(|(l, _)| l.clone()))
    }

    /// The fake keeps volumes in memory: there is no directory to reach.
    async fn volume_host_path(
        &self,
        _name: &str,
    ) -> Result<Option<std::path::PathBuf>, RuntimeError> {
        Ok(None)
    }

    async fn volume_remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.answer("volume remove", name)?;
        let mut s = self.lock();
        if s.containers
            .values()
            .any(|c| c.spec.volumes.iter().any(|(v, _)| v == name))
        {
            return Err(refused("remove volume", name, "volume is in use"));
        }
        s.volumes.remove(name);
        Ok(())
    }

    /// The fake keeps no times: every stop of a managed container since creation.
    /// The fake runs nothing: a command ending in `false` exits 1, any other 0.
    async fn exec(
        &self,
        name: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<Option<i64>, RuntimeError> {
        self.answer("exec", name)?;
        let mut s = self.lock();
        match Self::find(&mut s, name) {
            Some(c) if c.running => Ok(Some(i64::from(cmd.last().is_some_and(|a| a == "false")))),
            Some(_) => Err(refused("exec", name, "container is not running")),
            None => Err(refused("exec", name, "no such container")),
        }
    }

    async fn ping(&self) -> bool {
        self.answer("ping", "engine").is_ok()
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        self.answer("rename", from)?;
        super::fake_views::rename(&mut self.lock().containers, from, to)
    }

    async fn attach(&self, name: &str, network: &Attachment) -> Result<(), RuntimeError> {
        self.answer("attach", name)?;
        super::fake_views::attach(&mut self.lock().containers, name, network)
    }

    async fn events_since(&self, _since_secs: i64) -> Result<Vec<String>, RuntimeError> {
        Ok(self.lock().events.clone())
    }

    async fn run_helper(&self, run: &super::HelperRun) -> Result<super::HelperExit, RuntimeError> {
        let why = "the in-memory runtime runs no helper";
        Err(refused("helper run", &run.name, why))
    }
}
