//! The crash matrix: a real `sluice run` process is stopped at every fault point of a
//! successful update and of a failing one (`src/fault.rs`), by SIGKILL and again by
//! SIGTERM, then started again; each time the workspace must converge (the new digest
//! for a good image, the old one for a failing image) with its volume data exactly as
//! before (contents, modes, owners, symlinks, hard links, mtimes, empty dirs), the
//! snapshots the outcome may still need present, and exactly one terminal outcome
//! audited for the attempt.
//!
//! Start-first updates (`update_order = "start-first"`, a shared volume, a network alias
//! the new container takes over, a `file` router whose upstream file must end up naming
//! the container that serves) go through the same matrix with their own lists: the
//! failing one there is a new version that fails its health gate (a start-first update
//! shares the volume with the new version, so its data is the application's to keep).
//!
//! A first run of each update with `SLUICE_FAULT_TRACE=1` lists the points it reaches;
//! the list must equal [`GOOD`] / [`FAILING`] below, so a fault point added to the code
//! and not to the matrix fails this test. Each volume holds 64 MiB and a few small
//! entries; the kills inside a snapshot stage (`stopping/precopy.mid` while the container
//! still runs, `snapshotting/delta.mid` once it is stopped: after the first file, before
//! the big one) and inside a restore (`restoring/refill.mid`, halfway through the
//! entries) land with the store or the volume half written.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::domain::{Digest, UpdatePhase};

use crate::reconciler::{TEST_ENV, env_in_repo};
use crate::snapshot_fidelity::{manifest, mountpoint, random_file, set_mtime};
use crate::support::{Daemon, build_fixture, registry, unique};

/// Every fault point a successful update reaches, in order.
const GOOD: &[&str] = &[
    "pulling/pull.before",
    "pulling/pull.after",
    "stopping/precopy.mid",
    "stopping/precopy.written",
    "stopping/stop.before",
    "stopping/stop.after",
    "snapshotting/delta.mid",
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
    "stopping/precopy.mid",
    "stopping/precopy.written",
    "stopping/stop.before",
    "stopping/stop.after",
    "snapshotting/delta.mid",
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
    "restoring/refill.mid",
    "restoring/volume_create.before",
    "restoring/volume_create.after",
    "restoring/create.before",
    "restoring/create.after",
    "reverting/pull.before",
    "reverting/pull.after",
    "verifying/start.before",
    "verifying/start.after",
];

/// Every fault point a successful start-first update reaches.
const START_FIRST_GOOD: &[&str] = &[
    "pulling/pull.before",
    "pulling/pull.after",
    "recreating/volume_create.before",
    "recreating/volume_create.after",
    "recreating/create.before",
    "recreating/create.after",
    "starting/start.before",
    "starting/start.after",
    "health_checking/start.before",
    "health_checking/start.after",
    "stopping/attach.before",
    "stopping/attach.after",
    "stopping/route.before",
    "stopping/route.after",
    "stopping/stop.before",
    "stopping/stop.after",
    "stopping/remove.before",
    "stopping/remove.after",
    "stopping/rename.before",
    "stopping/rename.after",
];

/// Every fault point a start-first update whose new version fails its gate reaches.
const START_FIRST_FAILING: &[&str] = &[
    "pulling/pull.before",
    "pulling/pull.after",
    "recreating/volume_create.before",
    "recreating/volume_create.after",
    "recreating/create.before",
    "recreating/create.after",
    "starting/start.before",
    "starting/start.after",
    "health_checking/start.before",
    "health_checking/start.after",
    "rolling_back/pull.before",
    "rolling_back/pull.after",
    "rolling_back/start.before",
    "rolling_back/start.after",
    "rolling_back/route.before",
    "rolling_back/route.after",
    "rolling_back/remove.before",
    "rolling_back/remove.after",
    "verifying/start.before",
    "verifying/start.after",
];

/// Cases running at once (each runs a daemon and a container).
const PARALLEL: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Good,
    Failing,
    StartFirstGood,
    StartFirstFailing,
}

impl Scenario {
    fn start_first(self) -> bool {
        matches!(self, Scenario::StartFirstGood | Scenario::StartFirstFailing)
    }

    fn tag(self) -> &'static str {
        match self {
            Scenario::Good => "cm-g",
            Scenario::Failing => "cm-f",
            Scenario::StartFirstGood => "cm-sg",
            Scenario::StartFirstFailing => "cm-sf",
        }
    }

    /// The digest the update goes to, the one it must end on, and its last phase.
    fn outcome(self, i: &Images) -> (&Digest, &Digest, UpdatePhase) {
        match self {
            Scenario::Good | Scenario::StartFirstGood => (&i.good, &i.good, UpdatePhase::Succeeded),
            Scenario::Failing => (&i.failing, &i.v1, UpdatePhase::RolledBack),
            Scenario::StartFirstFailing => (&i.unhealthy, &i.v1, UpdatePhase::RolledBack),
        }
    }
}

struct Images {
    repo: String,
    v1: Digest,
    good: Digest,
    failing: Digest,
    /// Fails its health gate without touching the data.
    unhealthy: Digest,
}

/// The workspace of one case: start-first ones share their volume and answer to the
/// alias `app` on a network of their own (removed on drop).
async fn workspace(
    images: &Images,
    scenario: Scenario,
    tag: &str,
) -> (
    Option<crate::recreate_fidelity::NetworkGuard>,
    crate::reconciler::Env,
) {
    let network = scenario.start_first().then(|| unique("sluice-cm-net"));
    if let Some(n) = &network {
        crate::support::run(Command::new("docker").args([
            "network",
            "create",
            "--label",
            "sluice.test=1",
            n,
        ]));
    }
    let net = network.clone();
    let mut e = env_in_repo(
        tag,
        Some(images.repo.clone()),
        move |s, _| {
            if let Some(n) = net {
                s.update_order = Some(sluice::domain::spec::UpdateOrder::StartFirst);
                for v in &mut s.volumes {
                    v.shared = true;
                }
                s.networks = vec![sluice::domain::spec::NetworkSpec {
                    name: n,
                    aliases: vec!["app".into()],
                }];
            }
        },
        |s| {
            if scenario.start_first() {
                s.router = router_settings(&s.data.dir);
            }
        },
    )
    .await;
    e.cleanup.images.clear();
    e.cleanup.containers.push(format!("{}.next", e.container()));
    (network.map(crate::recreate_fidelity::NetworkGuard), e)
}

/// The `[router]` of a start-first case: an upstream file per workspace in its data
/// dir, and a reload that does nothing (what is checked is the file).
fn router_settings(dir: &Path) -> sluice::config::RouterSettings {
    sluice::config::RouterSettings {
        kind: sluice::config::RouterKind::File,
        file: Some(dir.join("{workspace}.upstream")),
        reload: vec!["true".into()],
        ..Default::default()
    }
}

/// The same `[router]` for a `sluice run` of a start-first case, as its environment.
fn router_env(scenario: Scenario, dir: &Path) -> Vec<(&'static str, String)> {
    if !scenario.start_first() {
        return Vec::new();
    }
    let file = dir.join("{workspace}.upstream").display().to_string();
    vec![
        ("SLUICE__ROUTER__KIND", "file".into()),
        ("SLUICE__ROUTER__FILE", file),
        ("SLUICE__ROUTER__RELOAD", "true".into()),
    ]
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

/// A write the pre-copy cannot have seen: `nested/config` rewritten in place with the
/// same size and its mtime put back (only its ctime moves), and a new file.
fn tenant_writes_during_precopy(data: &Path) {
    use std::os::unix::fs::MetadataExt;
    let config = data.join("nested/config");
    let m = std::fs::metadata(&config).unwrap();
    std::fs::write(&config, b"k=w\n").unwrap();
    set_mtime(&config, m.mtime(), m.mtime_nsec());
    std::fs::write(data.join("written-during-precopy"), b"late\n").unwrap();
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
    // Bound first, dropped last: the network goes after the container on it.
    let (_network, e) = workspace(images, scenario, "cm-trace").await;
    e.desire(&images.v1).await;
    e.rec.converge_all().await.expect("converge v1");
    fill(&mountpoint(&e.volume));
    let (target, _, _) = scenario.outcome(images);
    e.desire(target).await;
    let routes = router_env(scenario, e.dir.path());
    let mut envs = TEST_ENV.to_vec();
    envs.extend(routes.iter().map(|(k, v)| (*k, v.as_str())));
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
    let (_network, e) = workspace(&images, scenario, scenario.tag()).await;
    e.desire(&images.v1).await;
    e.rec.converge_all().await.expect("converge v1");
    let data = mountpoint(&e.volume);
    fill(&data);
    let mut before = manifest(&data, &["boots.log"]);
    let (target, expected_digest, expected_phase) = scenario.outcome(&images);
    e.desire(target).await;
    let routes = router_env(scenario, e.dir.path());
    let mut resumed = TEST_ENV.to_vec();
    resumed.extend(routes.iter().map(|(k, v)| (*k, v.as_str())));
    let mut envs = resumed.clone();
    envs.push(("SLUICE_FAULT_AT", point.as_str()));
    envs.push(("SLUICE__UPDATE__SHUTDOWN_GRACE", "30s"));
    let at = format!("{point} by SIG{signal}");
    let mut d = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), &envs));
    let reached = tokio::task::block_in_place(|| {
        wait_for_log(&d, "fault point paused", Duration::from_secs(90))
    });
    assert!(reached, "{at}: never reached");
    if point.starts_with("stopping/precopy") {
        // The tenant still writes while the pre-copy runs (the container serves): what
        // a rollback brings back is the volume as it was when stopped, so the delta
        // must catch these even though the first file keeps its size and mtime.
        tenant_writes_during_precopy(&data);
        before = manifest(&data, &["boots.log"]);
    }
    d.signal(signal);
    let status = tokio::task::block_in_place(|| d.wait_timeout(Duration::from_secs(60)))
        .unwrap_or_else(|| panic!("{at}: the daemon did not exit"));
    if signal == "TERM" {
        assert!(status.success(), "{at}: exit status {status}");
    }
    drop(d);
    let d2 = tokio::task::block_in_place(|| Daemon::start(e.dir.path(), &resumed));
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
    if scenario.start_first() {
        let staged = format!("{}.next", e.container());
        let left = Command::new("docker")
            .args(["inspect", &staged])
            .output()
            .unwrap();
        assert!(!left.status.success(), "{at}: {staged} was left behind");
        let aliases = crate::support::run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{json .Aliases}}{{end}}",
            &e.container(),
        ]));
        assert!(
            aliases.contains("\"app\""),
            "{at}: the alias is lost: {aliases}"
        );
        let address = crate::support::run(Command::new("docker").args([
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &e.container(),
        ]));
        let upstream = e.dir.path().join(format!("{}.upstream", e.ws.name));
        let route = std::fs::read_to_string(&upstream).unwrap_or_default();
        assert!(
            route.contains(&format!("server {}:8080;", address.trim())),
            "{at}: the route names another container than {address}: {route}"
        );
    }
    eprintln!("crash matrix: {at}: converged in {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_point_survives_sigkill_and_sigterm() {
    let repo = format!("{}/{}/app", registry(), unique("cm"));
    let images = Arc::new(Images {
        v1: build_fixture("good", "v1", &format!("{repo}:v1")),
        good: build_fixture("good", "v2", &format!("{repo}:v2")),
        failing: build_fixture("migrates-then-fails", "v3", &format!("{repo}:v3")),
        unhealthy: build_fixture("bad-health", "v4", &format!("{repo}:v4")),
        repo,
    });
    let mut cells = Vec::new();
    for (scenario, expected) in [
        (Scenario::Good, GOOD),
        (Scenario::Failing, FAILING),
        (Scenario::StartFirstGood, START_FIRST_GOOD),
        (Scenario::StartFirstFailing, START_FIRST_FAILING),
    ] {
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
    for tag in ["v1", "v2", "v3", "v4"] {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &format!("{}:{tag}", images.repo)])
            .output();
    }
    println!(
        "crash matrix: stop-first {} good + {} failing, start-first {} good + {} failing fault \
         points, each by SIGKILL and SIGTERM: {total} cells",
        GOOD.len(),
        FAILING.len(),
        START_FIRST_GOOD.len(),
        START_FIRST_FAILING.len()
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
