//! The test environment itself: the local registry serves what Docker pushed, and the
//! Docker engine runs the fixtures.

use std::process::Command;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::support::{DockerCleanup, build_fixture, registry, run, unique};

#[tokio::test]
async fn a_pushed_fixture_resolves_to_the_digest_the_push_reported() {
    let reg = registry();
    let repo = unique("fx-resolve");
    let reference = format!("{reg}/{repo}/good:stable");
    let pushed = build_fixture("good", "v1", &reference);

    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![reg.clone()]),
        ..Default::default()
    });
    let r: Reference = reference.parse().unwrap();
    let resolved = client
        .fetch_manifest_digest(&r, &RegistryAuth::Anonymous)
        .await
        .expect("HEAD manifest");
    assert_eq!(resolved, pushed.as_str());

    // v2 under the same tag moves it to a different digest.
    let v2 = build_fixture("good", "v2", &reference);
    assert_ne!(v2, pushed);
    let resolved = client
        .fetch_manifest_digest(&r, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(resolved, v2.as_str());
}

#[tokio::test]
async fn docker_runs_the_good_fixture_and_its_health_answers_200() {
    let reg = registry();
    let reference = format!("{reg}/{}/good:v1", unique("fx-run"));
    let digest = build_fixture("good", "v7", &reference);
    let pinned = format!("{}@{digest}", reference.rsplit_once(':').unwrap().0);
    let name = unique("sluice-test-run");
    let volume = unique("sluice-test-vol");
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(name.clone());
    cleanup.volumes.push(volume.clone());
    cleanup.images.push(pinned.clone());

    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "sluice.test=1",
        "-p",
        "127.0.0.1::8080",
        "-v",
        &format!("{volume}:/data"),
        &pinned,
    ]));
    let port = run(Command::new("docker").args(["port", &name, "8080/tcp"]));
    let addr = port.lines().next().unwrap().trim().to_owned();
    let mut last = String::new();
    for _ in 0..50 {
        match reqwest::get(format!("http://{addr}/health")).await {
            Ok(r) if r.status() == 200 => {
                let v = reqwest::get(format!("http://{addr}/version"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                assert_eq!(v.trim(), "v7");
                let boots =
                    run(Command::new("docker").args(["exec", &name, "cat", "/data/boots.log"]));
                assert_eq!(
                    boots.lines().count(),
                    1,
                    "one boot recorded in the volume: {boots}"
                );
                return;
            }
            Ok(r) => last = format!("status {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fixture never became healthy: {last}");
}

#[tokio::test]
async fn the_bad_health_fixture_answers_500() {
    let reg = registry();
    let reference = format!("{reg}/{}/bad:v1", unique("fx-bad"));
    let digest = build_fixture("bad-health", "v1", &reference);
    let pinned = format!("{}@{digest}", reference.rsplit_once(':').unwrap().0);
    let name = unique("sluice-test-bad");
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(name.clone());
    cleanup.images.push(pinned.clone());
    run(Command::new("docker").args([
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "sluice.test=1",
        "-p",
        "127.0.0.1::8080",
        &pinned,
    ]));
    let port = run(Command::new("docker").args(["port", &name, "8080/tcp"]));
    let addr = port.lines().next().unwrap().trim().to_owned();
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(format!("http://{addr}/health")).await {
            assert_eq!(r.status(), 500);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bad-health fixture never answered");
}
