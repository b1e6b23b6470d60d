//! The health gate's probes against real containers: a TCP probe, a command run inside
//! the container, and the image's own HEALTHCHECK (`health.image`), each passing a good
//! version and failing — and rolling back — one that does not answer.

use std::process::Command;

use sluice::domain::spec::{HealthProbe, TcpProbe};
use sluice::domain::{Digest, UpdatePhase};

use crate::reconciler::{Env, env_with};
use crate::support::run;

/// Builds `FROM` the pinned fixture `base` with `lines` added, pushes it to the env's
/// repository as `tag`, and returns its digest (cleaned up with the env).
fn derived(e: &mut Env, base: &Digest, lines: &str, tag: &str) -> Digest {
    let from = e.local_image(base);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {from}\n{lines}\n"),
    )
    .unwrap();
    let tag = format!("{}:{tag}", e.repo);
    run(Command::new("docker").args([
        "build",
        "-q",
        "--label",
        "sluice.test=1",
        "-t",
        &tag,
        &dir.path().to_string_lossy(),
    ]));
    run(Command::new("docker").args(["push", "-q", &tag]));
    let repo_digests = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range .RepoDigests}}{{println .}}{{end}}",
        &tag,
    ]));
    let d = repo_digests
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}@", e.repo)))
        .and_then(|d| Digest::parse(d).ok())
        .expect("the pushed digest");
    e.cleanup.images.push(tag);
    e.cleanup.images.push(e.pinned(&d));
    d
}

async fn converge(e: &Env) {
    e.rec.converge_all().await.expect("converge");
}

#[tokio::test]
async fn a_tcp_probe_passes_a_listening_port_and_rolls_back_a_silent_one() {
    let mut e = env_with(
        "hp-tcp",
        |s, _| {
            s.health = Some(HealthProbe {
                tcp: Some(TcpProbe { port: 8080 }),
                ..Default::default()
            });
        },
        |_| {},
    )
    .await;
    let d1 = e.fixture("good", "v1");
    // v2 listens on 9090 only, so 8080 never accepts: the gate fails and v1 comes back.
    let d2 = derived(&mut e, &d1, "ENV PORT=9090", "v2-elsewhere");
    e.desire(&d1).await;
    converge(&e).await;
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    e.desire(&d2).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    let error = u.error.unwrap_or_default();
    assert!(error.contains("tcp"), "{error}");
    assert_eq!(e.workspace().await.actual_digest, Some(d1));
}

#[tokio::test]
async fn the_image_probe_waits_for_the_images_own_healthcheck() {
    let mut e = env_with(
        "hp-image",
        |s, _| {
            s.health = Some(HealthProbe {
                image: true,
                ..Default::default()
            });
        },
        |_| {},
    )
    .await;
    // The fixture with a HEALTHCHECK of its own, built from it; then one without.
    let plain = e.fixture("good", "v1");
    let with_check = derived(
        &mut e,
        &plain,
        "HEALTHCHECK --interval=1s --timeout=2s --retries=3 \
         CMD [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/health\"]",
        "healthcheck",
    );
    e.desire(&with_check).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    let health = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.State.Health.Status}}",
        &e.container(),
    ]));
    assert_eq!(health.trim(), "healthy");

    let without = e.fixture("good", "v2");
    e.desire(&without).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    let error = u.error.unwrap_or_default();
    assert!(error.contains("no HEALTHCHECK"), "{error}");
    assert_eq!(e.workspace().await.actual_digest, Some(with_check));
}

#[tokio::test]
async fn a_command_probe_runs_inside_the_container() {
    let mut e = env_with(
        "hp-cmd",
        |s, _| {
            s.health = Some(HealthProbe {
                command: Some(
                    [
                        "/bin/busybox",
                        "wget",
                        "-q",
                        "-O",
                        "/dev/null",
                        "http://127.0.0.1:8080/health",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ),
                ..Default::default()
            });
        },
        |_| {},
    )
    .await;
    let d1 = e.fixture("good", "v1");
    // bad-health runs and listens, but its /health answers 500: wget exits 1 inside it.
    let d2 = e.fixture("bad-health", "v2");
    e.desire(&d1).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
    e.desire(&d2).await;
    converge(&e).await;
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    let error = u.error.unwrap_or_default();
    assert!(error.contains("health command exited 1"), "{error}");
    assert_eq!(e.workspace().await.actual_digest, Some(d1));
}
