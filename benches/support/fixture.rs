//! What the Docker benches share: running a command and wanting it to succeed, building
//! and pushing a fixture image (`tests/env/build-fixture.sh`), and the workspace of the
//! fixture app (its volume at `/data`, its HTTP probe, the test label that cleanup uses).
//! Each bench includes this file with `#[path]`.

#![allow(dead_code)] // reason: each bench uses a different part

use std::process::Command;

use sluice::clock::{Clock, SystemClock};
use sluice::domain::spec::{HealthProbe, HttpProbe, VolumeMount, WorkspaceSpec};
use sluice::domain::{Digest, ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::store::{NewWorkspace, Store, Workspace};

/// Runs `cmd`, panics with its stderr if it fails, returns its stdout trimmed.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn docker(args: &[&str]) -> String {
    sh(Command::new("docker").args(args))
}

/// Builds the `good` fixture at `version`, pushes it as `repo:version`, returns its digest.
pub fn fixture(version: &str, repo: &str) -> Digest {
    let out = sh(Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/env/build-fixture.sh"
    ))
    .args(["good", version, &format!("{repo}:{version}")]));
    Digest::parse(&out).expect("digest")
}

/// The spec of a workspace of the fixture app with its data on `volume`.
pub fn fixture_spec(volume: &str) -> WorkspaceSpec {
    WorkspaceSpec {
        volumes: vec![VolumeMount::new(volume.to_owned(), "/data")],
        health: Some(HealthProbe {
            http: Some(HttpProbe {
                port: 8080,
                path: "/health".into(),
                status: Some(200),
            }),
            ..Default::default()
        }),
        labels: [("sluice.test".to_owned(), "1".to_owned())].into(),
        ..Default::default()
    }
}

/// Stores workspace `name` of `image` (an automatic production workspace).
pub async fn insert_workspace(
    store: &Store,
    name: &str,
    image: &str,
    spec: WorkspaceSpec,
) -> Workspace {
    store
        .insert_workspace(
            &NewWorkspace {
                host: sluice::domain::HostName::local(),
                name: WorkspaceName::parse(name).expect("name"),
                image: ImageRef::parse(image).expect("image"),
                update_tier: Tier::Production,
                update_mode: UpdateMode::Auto,
                maintenance_window: None,
                spec,
            },
            SystemClock.now(),
        )
        .await
        .expect("workspace")
}
