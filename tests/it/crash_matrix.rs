//! The crash matrix: a real `sluice run` process is stopped at every fault point of a
//! successful update and of a failing one (`src/fault.rs`), by SIGKILL and again by
//! SIGTERM, then started again; each time the workspace must converge (the new digest
//! for a good image, the old one for a failing image) with its volume data exactly as
//! before (contents, modes, owners, symlinks, hard links, mtimes, empty dirs), the
//! snapshots the outcome may still need present, and exactly one terminal outcome
//! audited for the attempt.
//!
//! A first run of each update with `SLUICE_FAULT_TRACE=1` lists the points it reaches;
//! the list must equal [`GOOD`] / [`FAILING`] below, so a fault point added to the code
//! and not to the matrix fails this test. Each volume holds 64 MiB, so the kills inside
//! the snapshot and restore streams (`…/archive.mid`, `…/unpack.mid`) land mid-stream.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::domain::{Digest, UpdatePhase};

use crate::reconciler::{TEST_ENV, env_in_repo};
use crate::snapshot_fidelity::{manifest, mountpoint, random_file};
use crate::support::{Daemon, build_fixture, registry, unique};

/// Every fault point a successful update reaches, in order.
const GOOD: &[&str] = &[
    "pulling/pull.before",
    "pulling/pull.after",
    "stopping/stop.before",
    "stopping/stop.after",
    "snapshotting/archive.mid",
    "snapshotting/snapshot.renamed",
    "recreating/remove.before",
    "recreating/remove.after",
    "recreating/volume_create.before",
    "recreating/volume_create.after",
    "recreating/create.before",
    "recreating/create.after",
    "starting/start.before",
    "starting/start.after",
    "health_checking/start.before",
    "health_checking/start.after",
];

/// Every fault point an update whose new version fails (and is rolled back) reaches.
const FAILING: &[&str] = &[
    "pulling/pull.before",
    "pulling/pull.after",
    "stopping/stop.before",
    "stopping/stop.after",
    "snapshotting/archive.mid",
    "snapshotting/snapshot.renamed",
    "recreating/remove.before",
    "recreating/remove.after",
    "recreating/volume_create.before",
    "recreating/volume_create.after",
    "recreating/create.before",
    "recreating/create.after",
    "starting/start.before",
    "starting/start.after",
    "health_checking/start.before",
    "health_checking/start.after",
    "rolling_back/stop.before",
    "rolling_back/stop.after",
    "restoring/pull.before",
    "restoring/pull.after",
    "restoring/remove.before",
    "restoring/remove.after",
    "restoring/restore.cleared",
    "restoring/unpack.mid",
    "restoring/volume_create.before",
    "restoring/volume_create.after",
    "restoring/create.before",
    "restoring/create.after",
    "reverting/pull.before",
    "reverting/pull.after",
    "verifying/start.before",
    "verifying/start.after",
];

/// Cases running at once (each runs a daemon and a container).
const PARALLEL: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Good,
    Failing,
}

struct Images {
    repo: String,
    v1: Digest,
    good: Digest,
    failing: Digest,
}

/// A workspace's volume as the tenant left it: 64 MiB of data and one of each kind.
fn fill(data: &Path) {
    random_file(&data.join("tenant.db"), 64 << 20, 11);
    std::fs::create_dir_all(data.join("nested/empty")).unwrap();
    std::fs::write(data.join("nested/config"), b"k=v\n").unwrap();
    std::fs::hard_link(data.join("nested/config"), data.join("config.link")).unwrap();
    std::os::unix::fs::symlink("nested/config", data.join("current")).unwrap();
    std::os::unix::fs::lchown(data.join("nested/config"), Some(1234), Some(4321)).unwrap();
    std::fs::set_permissions(
        data.join("nested/config"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
}

fn wait_for_log(d: &Daemon, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if d.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The fault points an update reaches, in order, from a traced daemon's log.
async fn trace(images: &Images, scenario: Scenario) -> Vec<String> {
    let mut e = env_in_repo("cm-trace", Some(images.repo.clone()), |_, _| {}, |_| {}).await;
    e.cleanup.images.clear();
    e.desire(&images.v1).await;
    e.rec.converge_all().await.expect("converge v1");
    fill(&mountpoint(&e.volume));
    let target = match scenario {
        Scenario::Good => &images.good,
        Scenario::Failing => &images.failing,
    };
    e.desire(target).await;
    let mut envs = TEST_ENV.to_vec();
    envs.push(("SLUICE_FAULT_TRACE", "1"));
    let d = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), &envs));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(u) = e.store.latest_update(e.ws.id).await.unwrap()
            && &u.to_digest == target
            && u.phase.is_terminal()
        {
            break;
        }
        assert!(Instant::now() < deadline, "traced update never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut points = Vec::new();
    for line in d.logs.lock().unwrap().iter() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["message"] == "fault point"
            && let Some(p) = v["point"].as_str()
            && !points.iter().any(|q| q == p)
        {
            points.push(p.to_owned());
        }
    }
    points
}

/// One cell of the matrix: stop the daemon at `point` with `signal`, start it again,
/// check everything the tenant relies on.
async fn case(images: Arc<Images>, scenario: Scenario, point: String, signal: &'static str) {
    let started = Instant::now();
    let tag = format!("cm-{}", if scenario == Scenario::Good { "g" } else { "f" });
    let mut e = env_in_repo(&tag, Some(images.repo.clone()), |_, _| {}, |_| {}).await;
    e.cleanup.images.clear();
    e.desire(&images.v1).await;
    e.rec.converge_all().await.expect("converge v1");
    let data = mountpoint(&e.volume);
    fill(&data);
    let before = manifest(&data, &["boots.log"]);
    let (target, expected_digest, expected_phase) = match scenario {
        Scenario::Good => (&images.good, &images.good, UpdatePhase::Succeeded),
        Scenario::Failing => (&images.failing, &images.v1, UpdatePhase::RolledBack),
    };
    e.desire(target).await;
    let mut envs = TEST_ENV.to_vec();
    envs.push(("SLUICE_FAULT_AT", point.as_str()));
    envs.push(("SLUICE__UPDATE__SHUTDOWN_GRACE", "30s"));
    let at = format!("{point} by SIG{signal}");
    let mut d = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), &envs));
    let reached = tokio::task::block_in_place(|| {
        wait_for_log(&d, "fault point paused", Duration::from_secs(90))
    });
    assert!(reached, "{at}: never reached");
    d.signal(signal);
    let status = tokio::task::block_in_place(|| d.wait_timeout(Duration::from_secs(60)))
        .unwrap_or_else(|| panic!("{at}: the daemon did not exit"));
    if signal == "TERM" {
        assert!(status.success(), "{at}: exit status {status}");
    }
    drop(d);
    let d2 = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), TEST_ENV));
    let deadline = Instant::now() + Duration::from_secs(120);
    let u = loop {
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        let w = e.workspace().await;
        if &u.to_digest == target
            && u.phase.is_terminal()
            && w.actual_digest.as_ref() == Some(expected_digest)
        {
            break u;
        }
        assert!(
            Instant::now() < deadline,
            "{at}: did not converge: {:?} {:?}",
            u.phase,
            u.error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(u.phase, expected_phase, "{at}: {:?}", u.error);
    assert_eq!(
        manifest(&data, &["boots.log"]),
        before,
        "{at}: volume data changed"
    );
    let outcomes = e
        .store
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| {
            ev.subject == format!("workspace:{}", e.ws.name)
                && ev.detail["update_id"] == u.id
                && [
                    "update_succeeded",
                    "update_rolled_back",
                    "update_failed",
                    "update_quarantined",
                ]
                .contains(&ev.action.as_str())
        })
        .count();
    assert_eq!(outcomes, 1, "{at}: terminal outcomes audited");
    for s in e.store.snapshots_of_update(u.id).await.unwrap() {
        if s.state == sluice::domain::SnapshotState::Complete {
            assert!(Path::new(&s.path).exists(), "{at}: snapshot {} lost", s.id);
        }
    }
    drop(d2);
    eprintln!("crash matrix: {at}: converged in {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_point_survives_sigkill_and_sigterm() {
    let repo = format!("{}/{}/app", registry(), unique("cm"));
    let images = Arc::new(Images {
        v1: build_fixture("good", "v1", &format!("{repo}:v1")),
        good: build_fixture("good", "v2", &format!("{repo}:v2")),
        failing: build_fixture("migrates-then-fails", "v3", &format!("{repo}:v3")),
        repo,
    });
    let mut cells = Vec::new();
    for (scenario, expected) in [(Scenario::Good, GOOD), (Scenario::Failing, FAILING)] {
        let found = trace(&images, scenario).await;
        assert_eq!(
            found, expected,
            "the {scenario:?} update's fault points differ from the matrix; found:\n{found:#?}"
        );
        for p in expected {
            for signal in ["KILL", "TERM"] {
                cells.push((scenario, (*p).to_owned(), signal));
            }
        }
    }
    let total = cells.len();
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (scenario, point, signal) in cells {
        let images = images.clone();
        let slot = slots.clone().acquire_owned().await.expect("slot");
        set.spawn(async move {
            let _slot = slot;
            case(images, scenario, point, signal).await;
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            failures.push(e.to_string());
        }
    }
    for tag in ["v1", "v2", "v3"] {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("{}:{tag}", images.repo)])
            .output();
    }
    println!(
        "crash matrix: {} good + {} failing fault points, each by SIGKILL and SIGTERM: {total} cells",
        GOOD.len(),
        FAILING.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A daemon killed after it created a container and before it attached the second of its
/// networks: the resumed update must not start that container short of a network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_create_and_the_next_network_leaves_no_network_out() {
    use crate::recreate_fidelity::NetworkGuard;
    use sluice::domain::spec::NetworkSpec;
    let front = unique("sluice-cm-front");
    let back = unique("sluice-cm-back");
    for n in [&front, &back] {
        crate::support::run(Command::new("docker").args([
            "network",
            "create",
            "--label",
            "sluice.test=1",
            n,
        ]));
    }
    let _guards = (NetworkGuard(front.clone()), NetworkGuard(back.clone()));
    let nets = vec![
        NetworkSpec {
            name: front.clone(),
            aliases: vec![],
        },
        NetworkSpec {
            name: back.clone(),
            aliases: vec!["api".into()],
        },
    ];
    let mut e = env_in_repo("cm-net", None, |s, _| s.networks = nets, |_| {}).await;
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    e.desire(&v1).await;
    e.rec.converge_all().await.expect("converge v1");
    e.desire(&v2).await;
    let mut envs = TEST_ENV.to_vec();
    envs.push(("SLUICE_FAULT_AT", "recreating/create.networks"));
    let mut d = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), &envs));
    let reached = tokio::task::block_in_place(|| {
        wait_for_log(&d, "fault point paused", Duration::from_secs(90))
    });
    assert!(
        reached,
        "the point between create and connect was never reached"
    );
    d.signal("KILL");
    tokio::task::block_in_place(|| d.wait_timeout(Duration::from_secs(30)))
        .expect("the daemon exits");
    drop(d);
    let d2 = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), TEST_ENV));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        if u.to_digest == v2 && u.phase.is_terminal() {
            assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
            break;
        }
        assert!(Instant::now() < deadline, "did not converge: {:?}", u.phase);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(d2);
    let inspect = crate::support::run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{json .NetworkSettings.Networks}}",
        &e.container(),
    ]));
    let networks: serde_json::Value = serde_json::from_str(inspect.trim()).unwrap();
    assert!(networks.get(&front).is_some(), "{networks}");
    let aliases = &networks[&back]["Aliases"];
    assert!(
        aliases
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "api")),
        "on {back} with its alias: {networks}"
    );
}
