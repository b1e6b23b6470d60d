//! The runtime contract suite (src/runtime/contract.rs) against the real Docker engine;
//! the same functions run against the fake in the library's unit tests.

use sluice::config::DockerSettings;
use sluice::runtime::{DockerRuntime, connect, contract};

use crate::support::{DockerCleanup, build_fixture, registry, unique};

struct Setup {
    rt: DockerRuntime,
    image: String,
    prefix: String,
    _cleanup: DockerCleanup,
}

async fn setup(tag: &str) -> Setup {
    let repo = format!("{}/{}/good", registry(), unique(tag));
    let digest = build_fixture("good", "v1", &format!("{repo}:v1"));
    let image = format!("{repo}@{digest}");
    let prefix = unique("sluice-contract");
    let mut cleanup = DockerCleanup::default();
    for c in ["c", "u"] {
        cleanup.containers.push(format!("{prefix}-{c}"));
    }
    for v in ["v", "w"] {
        cleanup.volumes.push(format!("{prefix}-{v}"));
    }
    cleanup.images.push(image.clone());
    let rt = DockerRuntime::new(connect(&DockerSettings::default()).await.expect("docker"));
    Setup {
        rt,
        image,
        prefix,
        _cleanup: cleanup,
    }
}

#[tokio::test]
async fn docker_lifecycle() {
    let s = setup("fx-contract-life").await;
    contract::lifecycle(&s.rt, &s.image, &s.prefix).await;
}

#[tokio::test]
async fn docker_volumes() {
    let s = setup("fx-contract-vol").await;
    contract::volumes(&s.rt, &s.prefix).await;
}

#[tokio::test]
async fn docker_archive_round_trip() {
    let s = setup("fx-contract-arch").await;
    contract::archive_round_trip(&s.rt, &s.image, &s.prefix).await;
}

#[tokio::test]
async fn docker_missing_image_fails() {
    let s = setup("fx-contract-miss").await;
    let missing = format!(
        "{}/{}/good@{}",
        registry(),
        unique("fx-none"),
        sluice::domain::Digest::of_bytes(s.prefix.as_bytes())
    );
    contract::missing_image_fails(&s.rt, &missing).await;
}

#[tokio::test]
async fn docker_stop_is_an_event() {
    let s = setup("fx-contract-ev").await;
    contract::stop_is_an_event(&s.rt, &s.image, &s.prefix).await;
}

#[tokio::test]
async fn docker_unmanaged_not_listed() {
    let s = setup("fx-contract-unm").await;
    contract::unmanaged_not_listed(&s.rt, &s.image, &s.prefix).await;
}
