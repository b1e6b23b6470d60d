//! An in-memory registry for unit tests and scale benchmarks: tags map to digests, every
//! resolution is counted, and a tag can be made to fail.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Registry, RegistryError, RequestKind, Resolved};
use crate::domain::{Digest, ImageRef};

#[derive(Clone, Debug)]
enum Entry {
    Digest(Digest, Option<String>),
    Down,
    RateLimited(Option<Duration>),
}

/// Tags, their digests and changelogs, in memory.
#[derive(Debug, Default)]
pub struct FakeRegistry {
    tags: Mutex<HashMap<String, Entry>>,
    heads: AtomicU64,
    changelogs: AtomicU64,
}

impl FakeRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Points `image` (a tag) at `digest`, with an optional changelog.
    pub fn push(&self, image: &ImageRef, digest: &Digest, changelog: Option<&str>) {
        self.set(
            image,
            Entry::Digest(digest.clone(), changelog.map(str::to_owned)),
        );
    }

    /// Makes `image` unreachable until pushed again.
    pub fn take_down(&self, image: &ImageRef) {
        self.set(image, Entry::Down);
    }

    /// Makes `image` answer 429 with `retry_after` until pushed again.
    pub fn rate_limit(&self, image: &ImageRef, retry_after: Option<Duration>) {
        self.set(image, Entry::RateLimited(retry_after));
    }

    fn set(&self, image: &ImageRef, e: Entry) {
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(image.to_string(), e);
    }

    /// Resolutions so far (each one is a HEAD on a real registry).
    pub fn heads(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }

    pub fn changelog_reads(&self) -> u64 {
        self.changelogs.load(Ordering::Relaxed)
    }

    fn entry(&self, image: &ImageRef) -> Option<Entry> {
        self.tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&image.to_string())
            .cloned()
    }
}

impl Registry for FakeRegistry {
    async fn resolve(&self, image: &ImageRef) -> Result<Resolved, RegistryError> {
        self.heads.fetch_add(1, Ordering::Relaxed);
        match self.entry(image) {
            Some(Entry::Digest(digest, _)) => Ok(Resolved {
                digest,
                via: RequestKind::Head,
            }),
            Some(Entry::Down) => Err(RegistryError::Unreachable {
                registry: image.registry().to_owned(),
                message: "connection refused (fake)".to_owned(),
            }),
            Some(Entry::RateLimited(retry_after)) => Err(RegistryError::RateLimited {
                registry: image.registry().to_owned(),
                retry_after,
            }),
            None => Err(RegistryError::NotFound {
                image: image.to_string(),
            }),
        }
    }

    async fn changelog(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        self.changelogs.fetch_add(1, Ordering::Relaxed);
        match self.entry(image) {
            Some(Entry::Digest(d, c)) if &d == digest => Ok(c),
            _ => Ok(None),
        }
    }
}
