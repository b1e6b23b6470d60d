//! The changelog reader: for every release not read yet, reads `[images] changelog_file`
//! from inside the release's image (by digest, without running it: see
//! `src/runtime/image_file.rs`) and stores it with the release.
//!
//! It runs as a task of its own beside the watcher, so a slow pull or a broken image
//! never holds up a probe: the watcher records the release with its label changelog and
//! moves on. An image without the file is recorded as having none; a failed read is
//! logged with the release id and tried again on later passes, at most
//! [`CHANGELOG_FILE_ATTEMPTS`] times, and the label changelog stays either way. While
//! Docker is not connected nothing is counted: the reads wait for it.
//!
//! With `[images] changelog_pull` (the default) a release's image is pulled by digest as
//! soon as the release is found, so the changelog is there before anyone decides to roll
//! it out (and the canary's pull finds the image already there). Without it, a release
//! waits until its image is on the engine. Only releases that may still be rolled out
//! (`queued`, `approved`, `rolling_out`) and whose image `[images] allow` admits are read.
//!
//! Writes only the release's changelog file columns (`Store::record_changelog_file`).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::config::ImageSettings;
use crate::domain::{ChangelogFile, ImageRef};
use crate::metrics::TaskMetrics;
use crate::runtime::{ImageFiles, RuntimeError};
use crate::store::{CHANGELOG_FILE_ATTEMPTS, ChangelogFileDue, Store};
use crate::task::{Action, Driver, Pass, Task};

use super::WatcherError;

/// How often releases waiting for a read are looked for.
pub const CHANGELOG_INTERVAL: Duration = Duration::from_secs(3);
/// Releases looked at per pass.
const BATCH: i64 = 32;

/// What happened to one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Read and stored; `true` when the image holds the file.
    Stored(bool),
    /// The image is not on the engine and is not to be pulled: later.
    Deferred,
    /// The read failed and was counted.
    Failed,
    /// Docker is not reachable: nothing counted, the pass stops.
    Unavailable,
}

/// Reads the changelog files of new releases through `files`.
pub struct ChangelogReader<F> {
    store: Store,
    files: F,
    clock: Arc<dyn Clock>,
    /// Where the file is, how much of it is kept, whether to pull.
    settings: ImageSettings,
}

impl<F: ImageFiles> ChangelogReader<F> {
    pub fn new(store: Store, files: F, clock: Arc<dyn Clock>, settings: ImageSettings) -> Self {
        Self {
            store,
            files,
            clock,
            settings,
        }
    }

    /// Reads every release due, one at a time; returns what happened to each.
    pub async fn pass(&self, stop: Option<&Pass>) -> Result<Vec<(i64, ReadOutcome)>, WatcherError> {
        let mut out = Vec::new();
        for due in self.store.changelog_files_due(BATCH).await? {
            if stop.is_some_and(|cx| cx.stop().is_cancelled()) {
                break;
            }
            let outcome = self.read(&due).await?;
            let unavailable = outcome == ReadOutcome::Unavailable;
            out.push((due.id, outcome));
            if unavailable {
                break;
            }
        }
        Ok(out)
    }

    async fn read(&self, due: &ChangelogFileDue) -> Result<ReadOutcome, WatcherError> {
        let image = match ImageRef::parse_tracked(&due.image) {
            Ok(r) if !super::schedule::allowed(&r.to_string(), &self.settings.allow) => {
                // `[images] allow` changed since the release was found: never pull it.
                tracing::info!(release = due.id, image = %due.image, "changelog file not read: the image is outside [images] allow");
                self.store
                    .record_changelog_file(due.id, None, self.clock.now())
                    .await?;
                return Ok(ReadOutcome::Stored(false));
            }
            Ok(r) => r.pinned(&due.digest).to_string(),
            Err(e) => {
                tracing::warn!(release = due.id, image = %due.image, error = %e, "changelog file not read: the release's image reference is invalid");
                self.store
                    .record_changelog_file(due.id, None, self.clock.now())
                    .await?;
                return Ok(ReadOutcome::Stored(false));
            }
        };
        match self.fetch(&image).await {
            Ok(None) => Ok(ReadOutcome::Deferred),
            Ok(Some(file)) => {
                let found = file.is_some();
                if let Some(f) = &file {
                    tracing::info!(release = due.id, image = %image, path = %f.path, format = ?f.format, truncated = f.truncated, "changelog file read");
                } else {
                    tracing::info!(release = due.id, image = %image, path = %self.settings.changelog_file, "the image holds no changelog file");
                }
                self.store
                    .record_changelog_file(due.id, file.as_ref(), self.clock.now())
                    .await?;
                Ok(ReadOutcome::Stored(found))
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(release = due.id, image = %image, error = %e, "changelog file not read yet: docker is not reachable");
                Ok(ReadOutcome::Unavailable)
            }
            Err(e) => {
                let attempts = self.store.record_changelog_file_failure(due.id).await?;
                tracing::warn!(release = due.id, image = %image, error = %e, attempts, given_up = attempts >= CHANGELOG_FILE_ATTEMPTS, "changelog file not read; the release keeps its label changelog");
                Ok(ReadOutcome::Failed)
            }
        }
    }

    /// `None` when the image is not here and is not to be pulled; else the file, if any.
    async fn fetch(&self, image: &str) -> Result<Option<Option<ChangelogFile>>, RuntimeError> {
        if !self.files.has_image(image).await? {
            if !self.settings.changelog_pull {
                return Ok(None);
            }
            self.files.pull(image).await?;
        }
        let limit = self.settings.changelog_file_max_bytes;
        let file = self
            .files
            .read_file(image, &self.settings.changelog_file, limit)
            .await?;
        Ok(Some(file.map(|f| {
            ChangelogFile::parse(&f.path, &f.head, f.size, limit)
        })))
    }
}

/// Drives [`ChangelogReader::pass`] every [`CHANGELOG_INTERVAL`]. A read in progress is
/// finished at shutdown (so its helper container is removed); no new one starts.
pub struct ChangelogTask<F> {
    reader: ChangelogReader<F>,
    /// Whether the helpers a killed process left have been removed yet.
    swept: bool,
}

/// A helper container older than this was left by a process killed mid-read.
const STALE_HELPER: Duration = Duration::from_secs(600);

impl<F: ImageFiles + 'static> ChangelogTask<F> {
    pub fn driver(reader: ChangelogReader<F>, metrics: TaskMetrics) -> Driver<Self> {
        Driver::new(
            Self {
                reader,
                swept: false,
            },
            metrics,
        )
    }
}

impl<F: ImageFiles + 'static> Task for ChangelogTask<F> {
    const NAME: &'static str = "changelog_reader";
    type Error = WatcherError;

    async fn pass(&mut self, cx: &mut Pass) -> Result<Action, WatcherError> {
        if !self.swept {
            let cutoff = self.reader.clock.now() - STALE_HELPER;
            match self.reader.files.sweep(cutoff).await {
                Ok(n) => {
                    self.swept = true;
                    if n > 0 {
                        tracing::info!(
                            removed = n,
                            "removed changelog helper containers a killed process left"
                        );
                    }
                }
                Err(e) => tracing::debug!(error = %e, "changelog helper containers not swept yet"),
            }
        }
        let done = self.reader.pass(Some(cx)).await?;
        for (id, _) in &done {
            cx.worked_on(format_args!("release:{id}"));
        }
        Ok(Action::requeue(CHANGELOG_INTERVAL))
    }
}
