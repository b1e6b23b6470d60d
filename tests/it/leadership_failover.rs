//! Failover of real daemons: two `sluice run` processes on one PostgreSQL database and the
//! real Docker engine. A rollout (one canary with a soak, then three production waves,
//! one workspace each) is started; the leader is SIGKILLed (a) while the canary's update
//! runs, (b) during the soak, (c) between production waves. Each time the standby leads
//! within the lease TTL, the rollout ends `completed`, every workspace runs the new
//! digest with its volume exactly as before, the soak keeps its stored deadline, and
//! every workspace was updated exactly once (journal and audit trail). A leader frozen
//! with SIGSTOP past its lease and then resumed lands no write and exits with status 3.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::RolloutSettings;
use sluice::domain::{ApplyTier, Digest, RolloutState, Tier, UpdatePhase, WorkspaceName};
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::store::{Engine, Store, TestDb};
use sluice::wake::Wakers;

use crate::reconciler::TEST_ENV;
use crate::snapshot_fidelity::{manifest, mountpoint};
use crate::support::{
    Daemon, DockerCleanup, build_fixture, fixture_workspace, registry, run, unique,
};

/// The lease of these tests' daemons.
const TTL: Duration = Duration::from_secs(3);
/// Slack on top of the TTL for a standby to notice, claim and start its loops on a
/// loaded 2-core machine (the goal: takeover within one TTL + 2 s).
const TAKEOVER_SLACK: Duration = Duration::from_secs(2);
const SOAK: Duration = Duration::from_secs(6);
const PAUSE_BETWEEN_WAVES: Duration = Duration::from_secs(4);

struct Fleet {
    db: TestDb,
    store: Store,
    ops: Ops,
    snapshots: tempfile::TempDir,
    dirs: Vec<tempfile::TempDir>,
    _cleanup: DockerCleanup,
    image: String,
    v2: Digest,
    soak: Duration,
    /// Canary first, then the production workspaces.
    names: Vec<String>,
    ids: Vec<i64>,
}

impl Fleet {
    /// Four workspaces (one canary) on v1, converged by a first daemon that is then
    /// stopped, so each test starts from running containers with data in their volumes.
    async fn new(tag: &str, soak: Duration) -> Self {
        let db = TestDb::on(Engine::Postgres).await;
        let store = db.store(4).await;
        let repo = format!("{}/{}/app", registry(), unique(tag));
        let image = format!("{repo}:stable");
        let mut cleanup = DockerCleanup::default();
        let v1 = build_fixture("good", "v1", &format!("{repo}:v1"));
        let v2 = build_fixture("good", "v2", &format!("{repo}:v2"));
        cleanup
            .images
            .extend([format!("{repo}@{v1}"), format!("{repo}@{v2}")]);
        let base = unique(tag).replace('_', "-");
        let names: Vec<String> = ["c", "p1", "p2", "p3"]
            .iter()
            .map(|n| format!("{base}-{n}"))
            .collect();
        let mut ids = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let tier = if i == 0 {
                Tier::Canary
            } else {
                Tier::Production
            };
            let w = store
                .insert_workspace(
                    &fixture_workspace(name, &image, tier, &mut cleanup),
                    SystemClock.now(),
                )
                .await
                .unwrap();
            store
                .set_desired_digest(w.id, Some(&v1), None, SystemClock.now())
                .await
                .unwrap();
            ids.push(w.id);
        }
        let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
            store: store.clone(),
            // The rollout's strategy is fixed when it is applied: the same as the daemons'.
            settings: Arc::new(RolloutSettings {
                soak,
                auto_promote: true,
                batch: "1".to_owned(),
                max_parallel: 1,
                pause_between_waves: PAUSE_BETWEEN_WAVES,
                ..RolloutSettings::default()
            }),
            wakers: Wakers::new(),
            clock: Arc::new(SystemClock),
            metrics: RolloutMetrics::unregistered(),
        });
        let mut f = Fleet {
            db,
            store,
            ops,
            snapshots: tempfile::tempdir().unwrap(),
            dirs: Vec::new(),
            _cleanup: cleanup,
            image,
            v2,
            soak,
            names,
            ids,
        };
        let mut first = f.daemon("setup", &[]);
        f.wait_for(
            "every workspace runs v1",
            Duration::from_secs(90),
            async |f| {
                for i in 0..f.names.len() {
                    if f.actual(i).await != Some(v1.clone()) {
                        return false;
                    }
                }
                true
            },
        )
        .await;
        first.signal("TERM");
        let status = first
            .wait_timeout(Duration::from_secs(30))
            .expect("setup daemon stops");
        assert!(status.success(), "{status:?}");
        for name in &f.names {
            run(std::process::Command::new("docker").args([
                "exec",
                &format!("sluice-{name}"),
                "sh",
                "-c",
                &format!("echo {name} > /data/tenant && mkdir -p /data/d && echo x > /data/d/f"),
            ]));
        }
        f
    }

    /// A `sluice run` on this fleet's database, with a data directory of its own and the
    /// shared snapshot directory (both instances must reach the snapshots).
    fn daemon(&mut self, instance: &str, extra: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let soak = format!("{}s", self.soak.as_secs());
        let ttl = format!("{}s", TTL.as_secs());
        let pause = format!("{}s", PAUSE_BETWEEN_WAVES.as_secs());
        let snapshots = self.snapshots.path().display().to_string();
        let mut env: Vec<(&str, &str)> = TEST_ENV.to_vec();
        env.extend([
            ("SLUICE__DATABASE__URL", self.db.url()),
            ("SLUICE__SNAPSHOTS__DIR", snapshots.as_str()),
            ("SLUICE__LEADER__LEASE_TTL", ttl.as_str()),
            ("SLUICE__LEADER__INSTANCE", instance),
            ("SLUICE__ROLLOUT__SOAK", soak.as_str()),
            ("SLUICE__ROLLOUT__AUTO_PROMOTE", "true"),
            ("SLUICE__ROLLOUT__BATCH", "1"),
            ("SLUICE__ROLLOUT__MAX_PARALLEL", "1"),
            ("SLUICE__ROLLOUT__PAUSE_BETWEEN_WAVES", pause.as_str()),
            ("SLUICE__ROLLOUT__TICK_INTERVAL", "500ms"),
            ("SLUICE__POLL__INTERVAL", "1h"),
        ]);
        env.extend_from_slice(extra);
        let d = Daemon::start(dir.path(), &env);
        self.dirs.push(dir);
        d
    }

    async fn wait_for(&self, what: &str, limit: Duration, check: impl AsyncFn(&Self) -> bool) {
        assert!(
            self.try_wait_for(limit, check).await,
            "timed out after {limit:?} waiting until {what}"
        );
    }

    /// Whether `check` held within `limit`.
    async fn try_wait_for(&self, limit: Duration, check: impl AsyncFn(&Self) -> bool) -> bool {
        let start = Instant::now();
        while !check(self).await {
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        true
    }

    /// Every volume's full manifest (contents, modes, owners, links, mtimes), but for the
    /// fixture app's own boot log, which each start of the app appends to.
    fn volumes(&self) -> BTreeMap<String, BTreeMap<Vec<u8>, String>> {
        self.names
            .iter()
            .map(|n| {
                let v = format!("{n}-data");
                (v.clone(), manifest(&mountpoint(&v), &["boots.log"]))
            })
            .collect()
    }

    async fn start_rollout(&self) -> i64 {
        let release: i64 = sqlx::query_scalar(
            "INSERT INTO releases (image, digest, detected_at, updated_at) \
             VALUES ($1, $2, $3, $3) RETURNING id",
        )
        .bind(&self.image)
        .bind(self.v2.as_str())
        .bind(sluice::clock::to_millis(SystemClock.now()))
        .fetch_one(self.store.raw_pool())
        .await
        .unwrap();
        self.ops
            .apply(release, ApplyTier::Canary, false, "ops")
            .await
            .expect("apply the canary tier")
            .rollout
            .id
    }

    async fn actual(&self, i: usize) -> Option<Digest> {
        let name = WorkspaceName::parse(&self.names[i]).unwrap();
        self.store.workspace(&name).await.unwrap().actual_digest
    }

    async fn state(&self, rollout: i64) -> RolloutState {
        self.store.rollout_row(rollout).await.unwrap().state
    }

    async fn updated_targets(&self, rollout: i64) -> (usize, usize) {
        let targets = self.store.rollout_targets(rollout).await.unwrap();
        let done = targets
            .iter()
            .filter(|t| t.tier == Tier::Production && t.status.as_str() == "updated")
            .count();
        let moving = targets
            .iter()
            .filter(|t| t.status.as_str() == "updating")
            .count();
        (done, moving)
    }
}

/// The last `n` log lines of a daemon, for a failure message.
fn tail(d: &Daemon, n: usize) -> String {
    let logs = d.logs.lock().unwrap();
    logs[logs.len().saturating_sub(n)..].join("\n")
}

async fn metrics(d: &Daemon) -> String {
    reqwest::get(d.url("/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

async fn role(d: &Daemon) -> String {
    let r = reqwest::get(d.url("/readyz")).await;
    match r {
        Ok(r) => r.json::<serde_json::Value>().await.map_or_else(
            |_| String::new(),
            |v| {
                v["instance"]["role"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            },
        ),
        Err(_) => String::new(),
    }
}

async fn wait_role(d: &Daemon, want: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = role(d).await;
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "role {got:?}, not {want:?}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone, Copy, Debug)]
enum KillAt {
    CanaryUpdate,
    Soak,
    BetweenWaves,
}

async fn failover(at: KillAt) {
    let mut f = Fleet::new(&format!("fo-{at:?}").to_lowercase(), SOAK).await;
    let before = f.volumes();
    let mut a = f.daemon("inst-a", &[]);
    wait_role(&a, "leader", Duration::from_secs(20)).await;
    let b = f.daemon("inst-b", &[]);
    wait_role(&b, "standby", Duration::from_secs(20)).await;
    let rollout = f.start_rollout().await;
    let canary = f.ids[0];

    let limit = Duration::from_secs(90);
    match at {
        KillAt::CanaryUpdate => {
            f.wait_for("the canary's update runs", limit, async |f| {
                let u = f.store.latest_update(canary).await.unwrap();
                u.is_some_and(|u| u.to_digest == f.v2 && !u.phase.is_terminal())
            })
            .await;
        }
        KillAt::Soak => {
            f.wait_for("the canary soaks", limit, async |f| {
                f.state(rollout).await == RolloutState::Soaking
            })
            .await;
        }
        KillAt::BetweenWaves => {
            f.wait_for(
                "a production wave is done and the next waits",
                limit,
                async |f| {
                    let (done, moving) = f.updated_targets(rollout).await;
                    (1..3).contains(&done) && moving == 0
                },
            )
            .await;
        }
    }
    let soak_ends = f.store.rollout_row(rollout).await.unwrap().soak_ends_at;
    a.signal("KILL");
    a.wait_timeout(Duration::from_secs(10))
        .expect("the leader died");
    let takeover = wait_role(&b, "leader", TTL + TAKEOVER_SLACK + Duration::from_secs(1)).await;
    eprintln!("{at:?}: the standby led {takeover:?} after the SIGKILL");
    assert!(
        takeover <= TTL + TAKEOVER_SLACK,
        "{at:?}: takeover took {takeover:?}"
    );

    let completed = f
        .try_wait_for(Duration::from_secs(120), async |f| {
            f.state(rollout).await == RolloutState::Completed
        })
        .await;
    assert!(
        completed,
        "{at:?}: the rollout did not complete under the new leader ({:?}); its log:\n{}",
        f.state(rollout).await,
        tail(&b, 60)
    );
    for (i, name) in f.names.iter().enumerate() {
        assert_eq!(f.actual(i).await, Some(f.v2.clone()), "{name} runs v2");
    }
    assert_eq!(
        f.volumes(),
        before,
        "{at:?}: every volume is exactly as before"
    );
    assert_updated_once(&f, rollout).await;
    if let (KillAt::Soak, Some(ends)) = (at, soak_ends) {
        let promoted = f
            .store
            .rollout_transition_log(rollout)
            .await
            .unwrap()
            .into_iter()
            .find(|(d, _)| d["from"] == "soaking")
            .expect("the soak ended by a transition");
        assert!(
            promoted.1 >= ends,
            "the new leader kept the stored soak deadline {ends}, promoted at {}",
            promoted.1
        );
    }
    let leaders: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, detail FROM events WHERE subject = 'fleet' AND action LIKE 'leader.%' ORDER BY id",
    )
    .fetch_all(f.store.raw_pool())
    .await
    .unwrap();
    assert_eq!(
        leaders.len(),
        4,
        "setup acquired+released, a and b acquired: {leaders:?}"
    );
    assert!(leaders[3].1.contains("\"inst-b\""), "{leaders:?}");
    drop(b);
}

/// Exactly one journal row and one `update_succeeded` event per workspace for v2.
async fn assert_updated_once(f: &Fleet, rollout: i64) {
    for (id, name) in f.ids.iter().zip(&f.names) {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT phase FROM workspace_updates WHERE workspace_id = $1 AND to_digest = $2",
        )
        .bind(id)
        .bind(f.v2.as_str())
        .fetch_all(f.store.raw_pool())
        .await
        .unwrap();
        assert_eq!(
            rows,
            [("succeeded".to_owned(),)],
            "{name}: one update to v2"
        );
        let events: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE workspace = $1 AND action = 'update_succeeded' \
             AND rollout_id = $2",
        )
        .bind(name)
        .bind(rollout)
        .fetch_one(f.store.raw_pool())
        .await
        .unwrap();
        assert_eq!(events, 1, "{name}: one success in the audit trail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_during_a_canary_update() {
    failover(KillAt::CanaryUpdate).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_during_the_soak_and_keeps_its_deadline() {
    failover(KillAt::Soak).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_between_production_waves() {
    failover(KillAt::BetweenWaves).await;
}

/// Rows of the journal and the audit trail, to compare before and after a resume.
async fn journal_and_audit(store: &Store) -> (Vec<(i64, String, i64)>, i64) {
    let journal: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT id, phase, updated_at FROM workspace_updates ORDER BY id")
            .fetch_all(store.raw_pool())
            .await
            .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    (journal, events)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_lands_no_write_and_exits() {
    // A long soak: once the canary is done, nothing is written for a while.
    let mut f = Fleet::new("frozen", Duration::from_secs(600)).await;
    // The old leader holds each update in its health gate for 6 s: long enough to be
    // frozen in the middle of one.
    let mut a = f.daemon("inst-a", &[("SLUICE__UPDATE__MIN_HEALTHY_TIME", "6s")]);
    wait_role(&a, "leader", Duration::from_secs(20)).await;
    let b = f.daemon("inst-b", &[]);
    wait_role(&b, "standby", Duration::from_secs(20)).await;
    f.start_rollout().await;
    let canary = f.ids[0];
    f.wait_for(
        "the canary's update is in its health gate",
        Duration::from_secs(90),
        async |f| {
            let u = f.store.latest_update(canary).await.unwrap();
            u.is_some_and(|u| u.phase == UpdatePhase::HealthChecking)
        },
    )
    .await;
    a.signal("STOP");
    // The standby ends the frozen leader's session once its lease ran out, leads, and
    // finishes the update from the journal.
    wait_role(&b, "leader", Duration::from_secs(30)).await;
    f.wait_for(
        "the new leader finishes the canary",
        Duration::from_secs(60),
        async |f| {
            let u = f.store.latest_update(canary).await.unwrap();
            u.is_some_and(|u| u.phase == UpdatePhase::Succeeded)
        },
    )
    .await;
    // Let the rollout settle into its soak, where nothing is written for a while.
    f.wait_for("the canary soaks", Duration::from_secs(30), async |f| {
        f.store.rollout_rows().await.unwrap()[0].state == RolloutState::Soaking
    })
    .await;
    let settled = journal_and_audit(&f.store).await;

    a.signal("CONT");
    let status = a
        .wait_timeout(Duration::from_secs(15))
        .expect("the resumed old leader exits");
    assert_eq!(status.code(), Some(3), "exit status 3: lost leadership");
    assert_eq!(
        journal_and_audit(&f.store).await,
        settled,
        "the resumed old leader landed no journal row and no event"
    );
    let logs = a.logs.lock().unwrap().join("\n");
    assert!(logs.contains("lost leadership"), "{logs}");
    assert_eq!(role(&b).await, "leader", "the new leader leads on");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_its_lease_steps_down_and_a_standby_leads() {
    let db = TestDb::on(Engine::Postgres).await;
    let store = db.store(2).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = |instance| {
        vec![
            ("SLUICE__DATABASE__URL", db.url()),
            ("SLUICE__LEADER__LEASE_TTL", "3s"),
            ("SLUICE__LEADER__INSTANCE", instance),
        ]
    };
    let mut a = Daemon::start(dir_a.path(), &env("inst-a"));
    wait_role(&a, "leader", Duration::from_secs(20)).await;
    let b = Daemon::start(dir_b.path(), &env("inst-b"));
    wait_role(&b, "standby", Duration::from_secs(20)).await;
    assert!(metrics(&a).await.contains("\nsluice_leader 1\n"));
    assert!(metrics(&b).await.contains("\nsluice_leader 0\n"));
    // The database drops the leader's election session (a cut connection, a database
    // restart): it can no longer prove its lease.
    let ended: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(CAST(holder_session AS INTEGER)) FROM leases",
    )
    .fetch_one(store.raw_pool())
    .await
    .unwrap();
    assert!(ended);
    let status = a
        .wait_timeout(Duration::from_secs(10))
        .expect("the cut-off leader steps down");
    assert_eq!(status.code(), Some(3), "{}", tail(&a, 20));
    wait_role(&b, "leader", TTL + TAKEOVER_SLACK).await;
    let m = metrics(&b).await;
    assert!(m.contains("\nsluice_leader 1\n"), "{m}");
    assert!(m.contains("\nsluice_leader_changes_total 1\n"), "{m}");
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM leases WHERE name = 'leader'")
        .fetch_one(store.raw_pool())
        .await
        .unwrap();
    assert_eq!(epoch, 2, "one change of leader");
}

/// A workspace created and deleted through a standby's API is acted on by the leader at
/// once: the loops' timers are an hour here, so only the wake-up the standby publishes
/// can explain the container starting and being retired within the waits below.
#[tokio::test(flavor = "multi_thread")]
async fn writes_through_a_standby_wake_the_leader() {
    use crate::api::{ADMIN_TOKEN, fixture_image};
    let db = TestDb::on(Engine::Postgres).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n"),
    )
    .unwrap();
    let config_path = config.path().display().to_string();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = |instance| {
        let mut env: Vec<(&str, &str)> = TEST_ENV.to_vec();
        env.extend([
            ("SLUICE_CONFIG", config_path.as_str()),
            ("SLUICE__DATABASE__URL", db.url()),
            ("SLUICE__LEADER__LEASE_TTL", "3s"),
            ("SLUICE__LEADER__INSTANCE", instance),
            ("SLUICE__UPDATE__RECONCILE_INTERVAL", "1h"),
            ("SLUICE__ROLLOUT__TICK_INTERVAL", "1h"),
            ("SLUICE__POLL__INTERVAL", "1h"),
        ]);
        env
    };
    let a = Daemon::start(dir_a.path(), &env("inst-a"));
    wait_role(&a, "leader", Duration::from_secs(20)).await;
    let b = Daemon::start(dir_b.path(), &env("inst-b"));
    wait_role(&b, "standby", Duration::from_secs(20)).await;
    // Let the leader's first passes (at start) go by: from now on only wake-ups move it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let name = unique("via-standby").replace('_', "-");
    let mut cleanup = DockerCleanup::default();
    cleanup.containers.push(format!("sluice-{name}"));
    cleanup.volumes.push(format!("{name}-data"));
    let client = reqwest::Client::new();
    let r = client
        .post(b.url("/api/v1/workspaces"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": name, "image": fixture_image(),
            "volumes": [{"name": format!("{name}-data"), "mount": "/data"}],
            "health": {"http": {"port": 8080, "path": "/health"}},
        }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let running = async || {
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Running}}",
                &format!("sluice-{name}"),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    };
    let start = Instant::now();
    while !running().await {
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "the leader did not start the workspace created through the standby; its log:\n{}",
            tail(&a, 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The DELETE waits for the leader's reconciler to retire the container (a 409 while
    // the create's health gate still runs says to retry).
    let start = Instant::now();
    loop {
        let r = client
            .delete(b.url(&format!("/api/v1/workspaces/{name}?purge=true")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if status.is_success() {
            break;
        }
        assert!(
            status == reqwest::StatusCode::CONFLICT && start.elapsed() < Duration::from_secs(30),
            "{status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone = std::process::Command::new("docker")
        .args(["inspect", &format!("sluice-{name}")])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "the container is gone when the DELETE answers"
    );
    drop(cleanup);
}
