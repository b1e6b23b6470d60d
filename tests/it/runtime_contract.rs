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

/// A port mapping is published even when the image declares no `EXPOSE` for it, as
/// `docker run -p` does: the fixture listens on 9090 (its `PORT`), which its image does
/// not expose, and the host port answers.
#[tokio::test]
async fn docker_publishes_a_port_the_image_does_not_expose() {
    use sluice::runtime::{ContainerRuntime, PortSpec};
    let s = setup("fx-contract-port").await;
    let mut spec = contract::spec(&s.prefix, &s.image);
    spec.volumes.clear();
    spec.env = vec!["PORT=9090".to_owned()];
    spec.ports = vec![PortSpec {
        container: 9090,
        protocol: "tcp".to_owned(),
        host: None,
        host_ip: "127.0.0.1".to_owned(),
    }];
    s.rt.ensure_image(&s.image).await.expect("image");
    s.rt.create(&spec).await.expect("create");
    s.rt.start(&spec.name).await.expect("start");
    let info =
        s.rt.inspect(&spec.name)
            .await
            .expect("inspect")
            .expect("exists");
    let host_port = *info
        .host_ports
        .get(&9090)
        .unwrap_or_else(|| panic!("9090 is not published: {:?}", info.host_ports));
    let url = format!("http://127.0.0.1:{host_port}/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "{url} never answered: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn docker_config_reads_back() {
    let s = setup("fx-contract-config").await;
    let network = unique("sluice-contract-net");
    crate::support::run(std::process::Command::new("docker").args([
        "network",
        "create",
        "--label",
        "sluice.test=1",
        &network,
    ]));
    let _net = crate::recreate_fidelity::NetworkGuard(network.clone());
    contract::config_reads_back(&s.rt, &s.image, &s.prefix, &network).await;
}
