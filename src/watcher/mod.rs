//! The registry watcher: finds new digests of every tracked image reference and records
//! them as `queued` releases.
//!
//! Guarantees: one probe per distinct reference per pass, however many workspaces track
//! it; a probe error never creates a release and never touches a workspace (it is logged,
//! counted, and stored as the image's `last_error`); a push notification is only a hint
//! to probe sooner — the registry's answer to the probe is the truth.
//!
//! Architecture invariant: the watcher writes `releases` and `tracked_images` only, and
//! wakes the controller; it never writes workspaces. Scheduling is pure
//! ([`schedule`]); this file is the adapter that reads the clock and does I/O.

mod changelog_file;
pub mod schedule;
mod task;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{Digest, ImageRef};
use crate::registry::{Registry, RegistryMetrics};
use crate::store::{ProbeSuccess, Store, StoreError, TrackedImage};
use crate::wake::Wakers;
pub use changelog_file::{CHANGELOG_INTERVAL, ChangelogReader, ChangelogTask, ReadOutcome};
pub use schedule::Policy;
pub use task::WatcherTask;

/// Longest wait between passes: new workspaces are noticed at least this often even
/// without a wake-up.
pub const RESCAN: Duration = Duration::from_secs(15);
/// Probes in flight at once within one pass.
pub const CONCURRENCY: usize = 8;
/// Probes a push notification asks for before it is dropped when the tag has not moved
/// yet. The distribution registry sends its push event before it moves the tag, so the
/// first probe can still see the old digest.
pub const HINT_TRIES: u8 = 5;
/// Pause between the probes of a hint whose tag has not moved yet.
pub const HINT_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    #[error("watcher store access failed: {0}")]
    Store(#[from] StoreError),
}

/// Repositories named by push notifications, waiting for the next pass.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// Repository → probes left.
    repositories: Arc<Mutex<HashMap<String, u8>>>,
    wake: Arc<Notify>,
}

impl Hints {
    /// Hints that wake the watcher through `wake` (normally `Wakers::watcher`).
    pub fn new(wake: Arc<Notify>) -> Self {
        Self {
            repositories: Arc::default(),
            wake,
        }
    }

    /// Asks for a probe of every tracked reference in `repository` (e.g. `acme/app`).
    pub fn push(&self, repository: &str) {
        self.repositories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(repository.to_owned(), HINT_TRIES);
        self.wake.notify_one();
    }

    fn take(&self) -> HashMap<String, u8> {
        std::mem::take(
            &mut *self
                .repositories
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Puts back a hint whose probe saw no change yet (without waking anyone: the task
    /// comes back after [`HINT_RETRY`]).
    fn retry(&self, repository: String, tries_left: u8) {
        self.repositories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(repository)
            .or_insert(tries_left);
    }

    fn pending(&self) -> bool {
        !self
            .repositories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// References probed (one registry resolution each).
    pub probed: usize,
    pub failed: usize,
    /// Releases created.
    pub releases: Vec<i64>,
    /// The earliest next probe of any tracked reference.
    pub next_due: Option<DateTime<Utc>>,
}

/// The watcher loop and its dependencies.
pub struct Watcher<R> {
    store: Store,
    registry: R,
    clock: Arc<dyn Clock>,
    policy: Policy,
    allow: Vec<String>,
    wakers: Wakers,
    hints: Hints,
    metrics: RegistryMetrics,
}

enum Outcome {
    /// The release created, if any, and whether the tag moved since the last probe.
    Ok {
        release: Option<i64>,
        moved: bool,
    },
    Failed,
}

impl<R: Registry> Watcher<R> {
    /// The same watcher writing through `store` (the leader's fenced store).
    pub fn on_store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    pub fn new(
        store: Store,
        registry: R,
        clock: Arc<dyn Clock>,
        settings: &Settings,
        wakers: Wakers,
        hints: Hints,
        metrics: RegistryMetrics,
    ) -> Self {
        Self {
            store,
            registry,
            clock,
            policy: Policy::from_settings(&settings.poll),
            allow: settings.images.allow.clone(),
            wakers,
            hints,
            metrics,
        }
    }

    /// Distinct, valid, allowed references of live workspaces.
    async fn tracked(&self) -> Result<Vec<ImageRef>, WatcherError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for raw in self.store.workspace_images().await? {
            match ImageRef::parse_tracked(&raw) {
                Ok(r) if schedule::allowed(&r.to_string(), &self.allow) => {
                    if seen.insert(r.to_string()) {
                        out.push(r);
                    }
                }
                Ok(r) => {
                    tracing::debug!(image = %r, "image is outside [images] allow; not tracked");
                }
                Err(e) => {
                    tracing::warn!(image = %raw, error = %e, "stored image reference is invalid; not tracked")
                }
            }
        }
        Ok(out)
    }

    /// One pass: sync the tracked set, probe every due (or hinted) reference once.
    pub async fn pass(&self) -> Result<PassReport, WatcherError> {
        let now = self.clock.now();
        let tracked = self.tracked().await?;
        let names: Vec<String> = tracked.iter().map(ToString::to_string).collect();
        for gone in self.store.sync_tracked_images(&names).await? {
            // No workspace tracks it any more: stop exporting its last-success time.
            let _ = self
                .metrics
                .last_success
                .remove_label_values(&[gone.as_str()]);
        }
        let status = self.store.tracked_images().await?;
        let hinted = self.hints.take();
        let due: Vec<(ImageRef, TrackedImage)> = tracked
            .into_iter()
            .filter_map(|r| {
                let s = status.iter().find(|s| s.image == r.to_string())?.clone();
                let hint = hinted.contains_key(r.repository());
                (hint || schedule::is_due(s.next_probe_at, now)).then_some((r, s))
            })
            .collect();
        let mut report = PassReport::default();
        let outcomes: Vec<(String, Result<Outcome, WatcherError>)> =
            futures_util::stream::iter(due)
                .map(|(image, s)| async move {
                    let o = self.probe(&image, &s, now).await;
                    (image.repository().to_owned(), o)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        // Repositories whose probe answered: the tag moved, or not (yet).
        let (mut moved, mut unmoved) = (HashSet::new(), HashSet::new());
        for (repository, o) in outcomes {
            report.probed += 1;
            match o? {
                Outcome::Ok { release, moved: m } => {
                    report.releases.extend(release);
                    if m {
                        moved.insert(repository);
                    } else {
                        unmoved.insert(repository);
                    }
                }
                Outcome::Failed => report.failed += 1,
            }
        }
        for (repository, tries) in hinted {
            if tries > 1 && unmoved.contains(&repository) && !moved.contains(&repository) {
                self.hints.retry(repository, tries - 1);
            }
        }
        report.releases.sort_unstable();
        report.next_due = self
            .store
            .tracked_images()
            .await?
            .iter()
            .map(|s| s.next_probe_at.unwrap_or(now))
            .min();
        if !report.releases.is_empty() {
            self.wakers.controller.notify_one();
        }
        Ok(report)
    }

    async fn changelog(&self, image: &ImageRef, digest: &Digest) -> Option<String> {
        match self.registry.changelog(image, digest).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(image = %image, digest = %digest, error = %e, "changelog not read; release recorded without it");
                None
            }
        }
    }

    async fn probe(
        &self,
        image: &ImageRef,
        status: &TrackedImage,
        now: DateTime<Utc>,
    ) -> Result<Outcome, WatcherError> {
        let name = image.to_string();
        match self.registry.resolve(image).await {
            Ok(resolved) => {
                let digest = resolved.digest;
                let changelog = if self.store.is_new_digest(&name, &digest).await? {
                    self.changelog(image, &digest).await
                } else {
                    None
                };
                let record = self
                    .store
                    .record_probe_success(&ProbeSuccess {
                        image: &name,
                        digest: &digest,
                        changelog: changelog.as_deref(),
                        next_probe_at: self.policy.after_success(&name, now, rand::random()),
                        now,
                    })
                    .await?;
                #[allow(clippy::cast_precision_loss)] // reason: Unix seconds fit an f64 exactly
                self.metrics
                    .last_success
                    .with_label_values(&[name.as_str()])
                    .set(now.timestamp_millis() as f64 / 1000.0);
                if let Some(id) = record.release_id {
                    self.metrics.releases_detected.inc();
                    tracing::info!(image = %name, digest = %digest, release = id, superseded = ?record.superseded, via = resolved.via.as_str(), "new release detected");
                } else {
                    tracing::debug!(image = %name, digest = %digest, "probe: no new digest");
                }
                Ok(Outcome::Ok {
                    release: record.release_id,
                    moved: status.latest_digest.as_ref() != Some(&digest),
                })
            }
            Err(e) => {
                let failures = status.consecutive_failures.saturating_add(1);
                let next =
                    self.policy
                        .after_failure(failures, e.retry_after(), now, rand::random());
                tracing::warn!(image = %name, error = %e, failures, next_probe_at = %next, "registry probe failed");
                self.store
                    .record_probe_failure(&name, &e.to_string(), next, now)
                    .await?;
                Ok(Outcome::Failed)
            }
        }
    }
}
