//! Many Docker hosts from one control plane, on real processes: one PostgreSQL database,
//! a `sluice run` control plane that converges no host itself (`[agent] in_process =
//! false`), and one `sluice agent` per Docker host — host `a` on the test environment's
//! engine, host `b` on a second `dockerd` this test starts. Each agent converges only
//! the workspaces placed on its host, with snapshots in its own directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::clock::{Clock, SystemClock};
use sluice::config::{HostTimeoutPolicy, RolloutSettings};
use sluice::domain::{ApplyTier, Digest, HostName, RolloutState, Tier, WorkspaceName};
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::store::{Engine, Store, TestDb};
use sluice::wake::Wakers;

use crate::api::ADMIN_TOKEN;
use crate::reconciler::TEST_ENV;
use crate::second_engine::SecondEngine;
use crate::snapshot_fidelity::manifest;
use crate::support::{
    Daemon, DockerCleanup, build_fixture, fixture_workspace, registry, run, sluice_bin, unique,
};

const SOAK: Duration = Duration::from_secs(3);
/// The control plane takes a host for down after this long without a heartbeat.
const DOWN_AFTER: &str = "3s";
const HOST_TIMEOUT: Duration = Duration::from_secs(2);

fn host(name: &str) -> HostName {
    HostName::parse(name).unwrap()
}

/// Registers `name` for an agent the way `POST /api/v1/hosts` does; returns its token.
async fn add_host(store: &Store, name: &str) -> String {
    let token = format!("slh_test_{}", unique(name));
    store
        .add_host(
            &host(name),
            &BTreeMap::new(),
            &sluice::api::hosts::token_sha256(&token),
            "ops",
            SystemClock.now(),
        )
        .await
        .unwrap();
    token
}

/// One workspace of the fleet: its name and the host it is placed on.
struct Placed {
    name: String,
    host: &'static str,
    id: i64,
}

struct Hosts {
    db: TestDb,
    store: Store,
    ops: Ops,
    b: SecondEngine,
    tokens: BTreeMap<&'static str, String>,
    snapshots: BTreeMap<&'static str, tempfile::TempDir>,
    dirs: Vec<tempfile::TempDir>,
    /// The control plane's configuration (its admin token).
    config: (tempfile::TempDir, String),
    _cleanup: DockerCleanup,
    image: String,
    v1: Digest,
    v2: Digest,
    workspaces: Vec<Placed>,
}

impl Hosts {
    /// Hosts `a` and `b` registered; `layout` lists (name suffix, host, tier).
    async fn new(tag: &str, layout: &[(&str, &'static str, Tier)]) -> Self {
        Self::with_policy(tag, layout, HostTimeoutPolicy::Wait).await
    }

    /// The same, rollouts applied with `on_host_timeout = policy` after [`HOST_TIMEOUT`].
    async fn with_policy(
        tag: &str,
        layout: &[(&str, &'static str, Tier)],
        policy: HostTimeoutPolicy,
    ) -> Self {
        let db = TestDb::on(Engine::Postgres).await;
        let store = db.store(4).await;
        let b = SecondEngine::start();
        let repo = format!("{}/{}/app", registry(), unique(tag));
        let image = format!("{repo}:stable");
        let mut cleanup = DockerCleanup::default();
        let v1 = build_fixture("good", "v1", &format!("{repo}:v1"));
        let v2 = build_fixture("good", "v2", &format!("{repo}:v2"));
        cleanup
            .images
            .extend([format!("{repo}@{v1}"), format!("{repo}@{v2}")]);
        let mut tokens = BTreeMap::new();
        for h in ["a", "b"] {
            tokens.insert(h, add_host(&store, h).await);
        }
        let base = unique(tag).replace('_', "-");
        let mut workspaces = Vec::new();
        for (suffix, on, tier) in layout {
            let name = format!("{base}-{suffix}");
            let mut new = fixture_workspace(&name, &image, *tier, &mut cleanup);
            new.host = host(on);
            let w = store
                .insert_workspace(&new, SystemClock.now())
                .await
                .unwrap();
            store
                .set_desired_digest(w.id, Some(&v1), None, SystemClock.now())
                .await
                .unwrap();
            workspaces.push(Placed {
                name,
                host: on,
                id: w.id,
            });
        }
        let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
            store: store.clone(),
            settings: Arc::new(RolloutSettings {
                soak: SOAK,
                auto_promote: true,
                batch: "1".to_owned(),
                max_parallel: 2,
                max_parallel_per_host: 1,
                host_timeout: HOST_TIMEOUT,
                on_host_timeout: policy,
                pause_between_waves: Duration::ZERO,
                ..RolloutSettings::default()
            }),
            wakers: Wakers::new(),
            clock: Arc::new(SystemClock),
            metrics: RolloutMetrics::unregistered(),
        });
        let snapshots = ["a", "b"]
            .into_iter()
            .map(|h| (h, tempfile::tempdir().unwrap()))
            .collect();
        let conf = tempfile::tempdir().unwrap();
        let conf_file = conf.path().join("sluice.toml");
        std::fs::write(
            &conf_file,
            format!(
                "[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n"
            ),
        )
        .unwrap();
        let conf_file = conf_file.display().to_string();
        Hosts {
            db,
            store,
            ops,
            b,
            tokens,
            snapshots,
            dirs: Vec::new(),
            config: (conf, conf_file),
            _cleanup: cleanup,
            image,
            v1,
            v2,
            workspaces,
        }
    }

    fn common_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = TEST_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for (k, v) in [
            ("SLUICE__DATABASE__URL", self.db.url()),
            ("SLUICE__ROLLOUT__SOAK", "3s"),
            ("SLUICE__ROLLOUT__AUTO_PROMOTE", "true"),
            ("SLUICE__ROLLOUT__BATCH", "1"),
            ("SLUICE__ROLLOUT__MAX_PARALLEL", "2"),
            ("SLUICE__ROLLOUT__PAUSE_BETWEEN_WAVES", "0s"),
            ("SLUICE__ROLLOUT__TICK_INTERVAL", "500ms"),
            ("SLUICE__POLL__INTERVAL", "1h"),
            ("SLUICE__AGENT__HEARTBEAT_INTERVAL", "500ms"),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
        env
    }

    fn spawn(&mut self, command: &str, extra: &[(&str, String)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let mut env = self.common_env();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let d = Daemon::start_as(command, dir.path(), &env);
        self.dirs.push(dir);
        d
    }

    /// The control plane: API, election, controller; no host of its own.
    fn control_plane(&mut self) -> Daemon {
        self.spawn(
            "run",
            &[
                ("SLUICE_CONFIG", self.config.1.clone()),
                ("SLUICE__AGENT__IN_PROCESS", "false".to_owned()),
                ("SLUICE__LEADER__INSTANCE", "control".to_owned()),
                ("SLUICE__HOSTS__DOWN_AFTER", DOWN_AFTER.to_owned()),
            ],
        )
    }

    /// The agent of host `a` (the test environment's engine) or `b` (the second one).
    fn agent(&mut self, on: &'static str) -> Daemon {
        self.agent_with(on, &[])
    }

    fn agent_with(&mut self, on: &'static str, more: &[(&'static str, String)]) -> Daemon {
        let snaps = self.snapshots[on].path().display().to_string();
        let mut extra = vec![
            ("SLUICE__AGENT__HOST", on.to_owned()),
            ("SLUICE__AGENT__TOKEN", self.tokens[on].clone()),
            ("SLUICE__SNAPSHOTS__DIR", snaps),
        ];
        if on == "b" {
            extra.push(("SLUICE__DOCKER__HOST", self.b.unix_host()));
        }
        extra.extend(more.iter().cloned());
        self.spawn("agent", &extra)
    }

    async fn wait_for(&self, what: &str, limit: Duration, check: impl AsyncFn(&Self) -> bool) {
        let start = Instant::now();
        while !check(self).await {
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn actual(&self, i: usize) -> Option<Digest> {
        let name = WorkspaceName::parse(&self.workspaces[i].name).unwrap();
        self.store.workspace(&name).await.unwrap().actual_digest
    }

    async fn all_run(&self, digest: &Digest) -> bool {
        for i in 0..self.workspaces.len() {
            if self.actual(i).await.as_ref() != Some(digest) {
                return false;
            }
        }
        true
    }

    /// The `docker` CLI of the engine behind `on`.
    fn docker(&self, on: &str) -> std::process::Command {
        if on == "b" {
            self.b.cli()
        } else {
            let mut c = std::process::Command::new("docker");
            c.env_remove("DOCKER_HOST");
            c
        }
    }

    fn mountpoint(&self, w: &Placed) -> PathBuf {
        let volume = format!("{}-data", w.name);
        PathBuf::from(
            run(self
                .docker(w.host)
                .args(["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]))
            .trim(),
        )
    }

    /// Writes tenant data into every workspace through its own engine.
    fn write_data(&self) {
        for w in &self.workspaces {
            run(self.docker(w.host).args([
                "exec",
                &format!("sluice-{}", w.name),
                "sh",
                "-c",
                &format!(
                    "echo {} > /data/tenant && mkdir -p /data/d && echo x > /data/d/f",
                    w.name
                ),
            ]));
        }
    }

    /// Every volume's full manifest, read on its own host.
    fn volumes(&self) -> BTreeMap<String, BTreeMap<Vec<u8>, String>> {
        self.workspaces
            .iter()
            .map(|w| {
                (
                    w.name.clone(),
                    manifest(&self.mountpoint(w), &["boots.log"]),
                )
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
}

/// Runs a `sluice` client command against `d` with the admin token: (success, stdout,
/// stderr).
fn cli(d: &Daemon, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(sluice_bin())
        .arg("--server")
        .arg(d.url(""))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Files directly in `dir`.
fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The last `n` log lines of a process, for a failure message.
fn tail(d: &Daemon, n: usize) -> String {
    let logs = d.logs.lock().unwrap();
    logs[logs.len().saturating_sub(n)..].join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_goes_from_the_canary_on_one_host_to_production_on_both() {
    let mut f = Hosts::new(
        "mh-release",
        &[
            ("c", "a", Tier::Canary),
            ("pa", "a", Tier::Production),
            ("pb1", "b", Tier::Production),
            ("pb2", "b", Tier::Production),
        ],
    )
    .await;
    let control = f.control_plane();
    let agent_a = f.agent("a");
    let agent_b = f.agent("b");
    let v1 = f.v1.clone();
    f.wait_for(
        "every workspace runs v1 on its host",
        Duration::from_secs(120),
        async |f| f.all_run(&v1).await,
    )
    .await;
    // Each container runs on its own host's engine and only there.
    for w in &f.workspaces {
        let other = if w.host == "a" { "b" } else { "a" };
        let on = |h: &str| {
            f.docker(h)
                .args(["container", "inspect", &format!("sluice-{}", w.name)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(on(w.host), "{} runs on host {}", w.name, w.host);
        assert!(!on(other), "{} does not run on host {other}", w.name);
    }
    f.write_data();
    let before = f.volumes();

    let rollout = f.start_rollout().await;
    let completed = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            if f.store.rollout_row(rollout).await.unwrap().state == RolloutState::Completed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        completed.is_ok(),
        "the rollout completed ({:?}); control plane:\n{}\nagent a:\n{}\nagent b:\n{}",
        f.store.rollout_row(rollout).await.unwrap().state,
        tail(&control, 30),
        tail(&agent_a, 30),
        tail(&agent_b, 30)
    );
    assert!(f.all_run(&f.v2.clone()).await, "every workspace runs v2");
    assert_eq!(f.volumes(), before, "every volume is exactly as before");

    // Each update's snapshots were written by its own host's agent, into its own
    // directory, and recorded with that host.
    for w in &f.workspaces {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, host, path FROM snapshots WHERE workspace_id = $1 AND state = 'complete'",
        )
        .bind(w.id)
        .fetch_all(f.store.raw_pool())
        .await
        .unwrap();
        assert!(!rows.is_empty(), "{} has a snapshot of its update", w.name);
        let other = if w.host == "a" { "b" } else { "a" };
        for (id, on, path) in rows {
            assert_eq!(on, w.host, "snapshot {id} is recorded on {}'s host", w.name);
            assert!(
                Path::new(&path).starts_with(f.snapshots[w.host].path()),
                "snapshot {id} of {} is in host {}'s directory: {path}",
                w.name,
                w.host
            );
            assert!(
                !files_in(f.snapshots[other].path())
                    .iter()
                    .any(|n| n.starts_with(&id)),
                "snapshot {id} never reached host {other}"
            );
        }
    }

    // The hosts are listed with their agents, and exported as metrics.
    let (ok, out, err) = cli(&control, &["--json", "host", "list"]);
    assert!(ok, "{err}");
    let hosts: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed: Vec<(String, String, i64)> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["state"].as_str().unwrap().to_owned(),
                h["workspaces"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("a".to_owned(), "ready".to_owned(), 2),
            ("b".to_owned(), "ready".to_owned(), 2)
        ],
        "{hosts}"
    );
    let metrics = reqwest::get(control.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sluice_hosts{state=\"ready\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_agent_heartbeat_age_seconds{host=\"b\"}"),
        "{metrics}"
    );
    drop((agent_a, agent_b, control));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cordoned_host_starts_no_update_until_it_is_uncordoned() {
    let mut f = Hosts::new("mh-cordon", &[("w", "a", Tier::Production)]).await;
    let control = f.control_plane();
    let agent = f.agent("a");
    let v1 = f.v1.clone();
    f.wait_for(
        "the workspace runs v1",
        Duration::from_secs(90),
        async |f| f.all_run(&v1).await,
    )
    .await;
    let (ok, out, err) = cli(&control, &["host", "cordon", "a"]);
    assert!(ok && out.contains("cordoned"), "{out}{err}");
    let id = f.workspaces[0].id;
    f.store
        .set_desired_digest(id, Some(&f.v2), None, SystemClock.now())
        .await
        .unwrap();
    // The agent passes every second: a few passes with the host cordoned start nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let journal = f.store.latest_update(id).await.unwrap();
    assert!(
        journal.as_ref().is_none_or(|u| u.to_digest != f.v2),
        "no update started on a cordoned host: {journal:?}"
    );
    assert_eq!(f.actual(0).await, Some(f.v1.clone()));
    let (ok, out, err) = cli(&control, &["host", "uncordon", "a"]);
    assert!(ok && out.contains("ready"), "{out}{err}");
    // Drained while its update runs, the host is given back only once it finished.
    f.wait_for(
        "the update runs once uncordoned",
        Duration::from_secs(60),
        async |f| {
            f.store
                .latest_update(id)
                .await
                .unwrap()
                .is_some_and(|u| u.to_digest == f.v2 && !u.phase.is_terminal())
        },
    )
    .await;
    let (ok, out, err) = cli(&control, &["host", "drain", "a"]);
    assert!(ok, "drain waits and succeeds: {out}{err}");
    let last = f.store.latest_update(id).await.unwrap().unwrap();
    assert!(
        last.phase.is_terminal(),
        "drain returned only once the running update ended: {last:?}"
    );
    assert!(out.contains("draining"), "{out}");
    assert_eq!(f.actual(0).await, Some(f.v2.clone()));
    let audit: Vec<(String, String)> =
        sqlx::query_as("SELECT action, actor FROM events WHERE subject = 'host:a' ORDER BY id")
            .fetch_all(f.store.raw_pool())
            .await
            .unwrap();
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        [
            "host.added",
            "host.cordoned",
            "host.uncordoned",
            "host.drained"
        ]
    );
    assert!(
        audit.iter().skip(1).all(|(_, actor)| actor == "ops"),
        "{audit:?}"
    );
    drop((agent, control));
}

/// `sluice agent` with a host name it cannot prove exits with status 2 and one line
/// naming the key to fix, before it touches Docker.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_cannot_prove_its_host_is_refused_at_start() {
    let db = TestDb::on(Engine::Postgres).await;
    let store = db.store(2).await;
    let token_a = add_host(&store, "a").await;
    let token_b = add_host(&store, "b").await;
    store
        .ensure_builtin_host(&host("local"), SystemClock.now())
        .await
        .unwrap();
    // Another agent of `c` heartbeated a moment ago.
    let token_c = add_host(&store, "c").await;
    let hb = sluice::store::Heartbeat {
        host: &host("c"),
        instance: "c@elsewhere",
        version: "0",
        capacity: None,
    };
    store.heartbeat(&hb, SystemClock.now()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = |env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(sluice_bin());
        cmd.arg("agent")
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE__DATA__DIR", dir.path())
            .env("SLUICE__API__LISTEN", "127.0.0.1:0")
            .env("SLUICE__DATABASE__URL", db.url())
            .env("SLUICE__LOG__LEVEL", "error");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run sluice agent");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 6] = [
        (
            "unregistered",
            vec![
                ("SLUICE__AGENT__HOST", "zz"),
                ("SLUICE__AGENT__TOKEN", &token_a),
            ],
            "agent.host: host `zz` is not registered",
        ),
        (
            "another host's token",
            vec![
                ("SLUICE__AGENT__HOST", "a"),
                ("SLUICE__AGENT__TOKEN", &token_b),
            ],
            "agent.token: the token is not the one registered for host `a`",
        ),
        (
            "no token",
            vec![("SLUICE__AGENT__HOST", "a")],
            "agent.token: `sluice agent` needs the token",
        ),
        (
            "the built-in host",
            vec![
                ("SLUICE__AGENT__HOST", "local"),
                ("SLUICE__AGENT__TOKEN", &token_a),
            ],
            "agent.host: host `local` has no agent token",
        ),
        (
            "a host with a live agent",
            vec![
                ("SLUICE__AGENT__HOST", "c"),
                ("SLUICE__AGENT__TOKEN", &token_c),
            ],
            "agent.host: host `c` already has a live agent (instance `c@elsewhere`",
        ),
        (
            "an invalid host name",
            vec![
                ("SLUICE__AGENT__HOST", "A_B"),
                ("SLUICE__AGENT__TOKEN", &token_a),
            ],
            "agent.host",
        ),
    ];
    for (what, env, want) in cases {
        let (code, stderr) = agent(&env);
        assert_ne!(code, Some(0), "{what}: refused");
        assert!(stderr.contains(want), "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    }
    // Nothing was written for any of them: no heartbeat but c's.
    for h in ["a", "b", "local"] {
        assert_eq!(
            store.host(&host(h)).await.unwrap().heartbeat_at,
            None,
            "{h}"
        );
    }
}

/// The rollout as the API shows it: (state, per workspace (status, host, reason)).
async fn rollout_view(control: &Daemon, id: i64) -> serde_json::Value {
    let (ok, out, err) = cli(control, &["--json", "rollout", "show", &id.to_string()]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn statuses_on(view: &serde_json::Value, host: &str) -> Vec<String> {
    view["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["host"] == host)
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

/// Hosts a (canary + two production) and b (two production); b's agent is held at its
/// first update's health gate and SIGKILLed there, during production.
async fn lose_host_b(tag: &str, policy: HostTimeoutPolicy) -> (Hosts, Daemon, Daemon, i64) {
    let mut f = Hosts::with_policy(
        tag,
        &[
            ("c", "a", Tier::Canary),
            ("pa1", "a", Tier::Production),
            ("pa2", "a", Tier::Production),
            ("pb1", "b", Tier::Production),
            ("pb2", "b", Tier::Production),
        ],
        policy,
    )
    .await;
    let control = f.control_plane();
    let agent_a = f.agent("a");
    let mut agent_b = f.agent("b");
    let v1 = f.v1.clone();
    f.wait_for(
        "every workspace runs v1",
        Duration::from_secs(120),
        async |f| f.all_run(&v1).await,
    )
    .await;
    f.write_data();
    // Restarted so that its updates stop at the health gate, as a host that dies mid-update.
    agent_b.signal("TERM");
    agent_b
        .wait_timeout(Duration::from_secs(30))
        .expect("agent b stops");
    let mut agent_b = f.agent_with(
        "b",
        &[("SLUICE_TEST_PAUSE_AT", "health_checking".to_owned())],
    );
    let rollout = f.start_rollout().await;
    let b_ids: Vec<i64> = f
        .workspaces
        .iter()
        .filter(|w| w.host == "b")
        .map(|w| w.id)
        .collect();
    f.wait_for(
        "an update on b reaches its health gate",
        Duration::from_secs(120),
        async |f| {
            for id in &b_ids {
                if let Some(u) = f.store.latest_update(*id).await.unwrap()
                    && u.to_digest == f.v2
                    && u.phase == sluice::domain::UpdatePhase::HealthChecking
                {
                    return true;
                }
            }
            false
        },
    )
    .await;
    agent_b.signal("KILL");
    agent_b
        .wait_timeout(Duration::from_secs(10))
        .expect("agent b died");
    drop(agent_b);
    (f, control, agent_a, rollout)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_goes_away_waits_and_its_agent_resumes_the_update_when_it_returns() {
    let (mut f, control, agent_a, rollout) = lose_host_b("mh-wait", HostTimeoutPolicy::Wait).await;
    let before = f.volumes();
    // Host a's workspaces all finish; b's wait for their host, and nothing counts as failed.
    let v2 = f.v2.clone();
    f.wait_for(
        "host a's workspaces run v2",
        Duration::from_secs(120),
        async |f| {
            let mut all = true;
            for (i, w) in f.workspaces.iter().enumerate() {
                if w.host == "a" && f.actual(i).await.as_ref() != Some(&v2) {
                    all = false;
                }
            }
            all
        },
    )
    .await;
    let mut view = rollout_view(&control, rollout).await;
    let start = Instant::now();
    // The actual digest moves before the controller records the target as
    // updated, so wait for both views to agree rather than racing them.
    while statuses_on(&view, "b") != ["waiting_for_host", "waiting_for_host"]
        || statuses_on(&view, "a") != ["updated", "updated", "updated"]
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a's targets are updated and b's wait for their host: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        view = rollout_view(&control, rollout).await;
    }
    assert_eq!(view["state"], "production", "{view}");
    assert_eq!(
        statuses_on(&view, "a"),
        ["updated", "updated", "updated"],
        "{view}"
    );
    let b = view["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "b")
        .unwrap();
    assert_eq!(
        (b["waiting_for_host"].as_i64(), b["failed"].as_i64()),
        (Some(2), Some(0)),
        "{view}"
    );
    let (ok, hosts, _) = cli(&control, &["--json", "host", "show", "b"]);
    assert!(ok && hosts.contains("\"down\""), "{hosts}");
    // Past a few more passes nothing changes: the rollout waits (policy `wait`).
    tokio::time::sleep(HOST_TIMEOUT + Duration::from_secs(2)).await;
    let still = rollout_view(&control, rollout).await;
    assert_eq!(still["state"], "production");
    assert_eq!(
        statuses_on(&still, "b"),
        ["waiting_for_host", "waiting_for_host"]
    );

    // The agent comes back: it resumes its update from the journal, then does the next.
    let agent_b = f.agent("b");
    let done = tokio::time::timeout(Duration::from_secs(180), async {
        while f.store.rollout_row(rollout).await.unwrap().state != RolloutState::Completed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        done.is_ok(),
        "the rollout completed once b returned: {}\nagent b:\n{}",
        rollout_view(&control, rollout).await,
        tail(&agent_b, 40)
    );
    assert!(f.all_run(&f.v2.clone()).await);
    assert_eq!(f.volumes(), before, "every volume is exactly as before");
    // Each workspace was updated exactly once: the interrupted update was resumed, not redone.
    for w in &f.workspaces {
        let phases: Vec<(String,)> = sqlx::query_as(
            "SELECT phase FROM workspace_updates WHERE workspace_id = $1 AND to_digest = $2",
        )
        .bind(w.id)
        .bind(f.v2.as_str())
        .fetch_all(f.store.raw_pool())
        .await
        .unwrap();
        assert_eq!(phases, [("succeeded".to_owned(),)], "{}", w.name);
    }
    drop((agent_a, agent_b, control));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_policy_skip_a_rollout_completes_without_a_host_gone_past_host_timeout() {
    let (mut f, control, agent_a, rollout) = lose_host_b("mh-skip", HostTimeoutPolicy::Skip).await;
    let before = f.volumes();
    let done = tokio::time::timeout(Duration::from_secs(120), async {
        while f.store.rollout_row(rollout).await.unwrap().state != RolloutState::Completed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let view = rollout_view(&control, rollout).await;
    assert!(done.is_ok(), "the rollout completed without b: {view}");
    for t in view["workspaces"].as_array().unwrap() {
        if t["host"] == "b" {
            assert_eq!(t["status"], "skipped", "{t}");
            let reason = t["status_reason"].as_str().unwrap_or_default();
            assert!(reason.contains("host b"), "the reason names the host: {t}");
        } else {
            assert_eq!(t["status"], "updated", "{t}");
        }
    }
    let skipped: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE action = 'target.skipped_for_host' AND rollout_id = $1",
    )
    .bind(rollout)
    .fetch_one(f.store.raw_pool())
    .await
    .unwrap();
    assert_eq!(skipped, 2, "each skip is audited");
    // Host b returns later: its agent finishes the interrupted update from the journal, and
    // no tenant's data changed anywhere.
    let agent_b = f.agent("b");
    f.wait_for(
        "b's interrupted update ends",
        Duration::from_secs(90),
        async |f| {
            let mut ended = true;
            for w in f.workspaces.iter().filter(|w| w.host == "b") {
                if f.store
                    .latest_update(w.id)
                    .await
                    .unwrap()
                    .is_some_and(|u| !u.phase.is_terminal())
                {
                    ended = false;
                }
            }
            ended
        },
    )
    .await;
    let mut resumed = 0;
    for w in f.workspaces.iter().filter(|w| w.host == "b") {
        if let Some(u) = f.store.latest_update(w.id).await.unwrap()
            && u.to_digest == f.v2
        {
            assert_eq!(
                u.phase,
                sluice::domain::UpdatePhase::Succeeded,
                "{}",
                w.name
            );
            resumed += 1;
        }
    }
    assert_eq!(
        resumed, 1,
        "the one update in flight on b was finished, none started"
    );
    assert_eq!(f.volumes(), before, "every volume is exactly as before");
    drop((agent_a, agent_b, control));
}
