//! Controller behaviour end to end on the store: waves, soak, failure policy, operations.

use sluice::api::rollouts::op_error_status;
use sluice::domain::{ApplyTier, FleetMode, RolloutState, Tier};
use sluice::domain::{Digest, WorkspaceName};
use sluice::rollout::ops::{OpError, parse_tier};

use crate::rollout_harness::{Env, d, settings};

/// How the API answers an operation's error (the operations themselves know no HTTP).
trait AsHttp {
    fn http_status(&self) -> u16;
    fn code(&self) -> &'static str;
}

impl AsHttp for OpError {
    fn http_status(&self) -> u16 {
        op_error_status(self).0.as_u16()
    }
    fn code(&self) -> &'static str {
        op_error_status(self).1
    }
}

fn ws(name: &str) -> WorkspaceName {
    WorkspaceName::parse(name).unwrap()
}

/// 2 canaries + 5 production on v1, release v2 queued.
async fn fleet(env: &Env) -> i64 {
    for n in ["c1", "c2"] {
        env.workspace(n, Tier::Canary, &d(1)).await;
    }
    for n in ["p1", "p2", "p3", "p4", "p5"] {
        env.workspace(n, Tier::Production, &d(1)).await;
    }
    env.release(&d(2)).await
}

#[tokio::test]
async fn canary_soak_promote_then_production_in_waves_to_completed() {
    let env = Env::new(settings()).await;
    let rel = fleet(&env).await;
    let out = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap();
    let id = out.rollout.id;
    assert_eq!(out.rollout.status.state, RolloutState::Canary);
    assert_eq!(env.release_status(rel).await, "rolling_out");

    // Canaries one at a time (max_parallel 1); production untouched.
    env.tick().await;
    assert_eq!(env.in_flight().await, ["c1"]);
    env.tick().await;
    assert_eq!(
        env.in_flight().await,
        ["c1"],
        "max_parallel holds the second canary"
    );
    env.reconcile(&[]).await;
    env.tick().await;
    assert_eq!(env.in_flight().await, ["c2"]);
    env.reconcile(&[]).await;
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Soaking);
    for p in ["p1", "p2", "p3", "p4", "p5"] {
        assert_eq!(
            env.desired(p).await,
            d(1),
            "{p} must not move during the canary"
        );
    }

    // Promote before the soak has passed: refused; after it: production.
    let e = env.ops().promote(id, false, "ops").await.unwrap_err();
    assert_eq!(e.http_status(), 409);
    assert!(e.to_string().contains("soak has not passed"), "{e}");
    env.advance(600);
    env.tick().await;
    assert_eq!(
        env.state(id).await,
        RolloutState::Soaking,
        "no auto_promote"
    );
    env.ops().promote(id, false, "ops").await.unwrap();
    assert_eq!(env.state(id).await, RolloutState::Production);

    // Waves of 2, one update at a time, 30 s between waves.
    let mut order = Vec::new();
    for _ in 0..40 {
        env.tick().await;
        let fl = env.in_flight().await;
        assert!(fl.len() <= 1, "max_parallel 1 broken: {fl:?}");
        order.extend(fl.iter().cloned());
        if env.state(id).await == RolloutState::Completed {
            break;
        }
        if fl.is_empty() {
            env.advance(15);
        }
        env.reconcile(&[]).await;
    }
    assert_eq!(order, ["p1", "p2", "p3", "p4", "p5"]);
    assert_eq!(env.state(id).await, RolloutState::Completed);
    assert_eq!(env.release_status(rel).await, "completed");
    env.assert_replay_matches(id).await;

    // Metrics: state gauge, transitions, and no per-workspace series for a finished rollout.
    env.tick().await;
    let m = &env.ops().deps().metrics;
    assert_eq!(m.rollouts.with_label_values(&["completed"]).get(), 1);
    assert_eq!(m.rollouts.with_label_values(&["production"]).get(), 0);
    assert_eq!(
        m.transitions
            .with_label_values(&["production", "completed"])
            .get(),
        1
    );
    assert_eq!(
        m.transitions
            .with_label_values(&["canary", "soaking"])
            .get(),
        1
    );
    let families = prometheus::core::Collector::collect(&m.workspaces);
    assert!(
        families.iter().all(|f| f.get_metric().is_empty()),
        "only active rollouts"
    );
    assert!(m.tick.get_sample_count() > 0);
}

#[tokio::test]
async fn the_next_wave_waits_for_pause_between_waves() {
    let env = Env::new(settings()).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    for _ in 0..2 {
        env.tick().await;
        env.reconcile(&[]).await;
    }
    env.tick().await; // records p2's success; wave 0 done
    env.tick().await;
    assert!(env.in_flight().await.is_empty(), "wave 1 must wait 30 s");
    env.advance(29);
    env.tick().await;
    assert!(env.in_flight().await.is_empty());
    env.advance(1);
    env.tick().await;
    assert_eq!(env.in_flight().await, ["p3"]);
    let canary_targets = env
        .scalar_s(&format!(
            "SELECT CAST(COUNT(*) AS TEXT) FROM rollout_targets WHERE rollout_id = {id} AND tier = 'canary'"
        ))
        .await;
    assert_eq!(
        canary_targets.as_deref(),
        Some("0"),
        "production excludes canaries"
    );
}

#[tokio::test]
async fn the_soak_survives_a_controller_restart() {
    let mut s = settings();
    s.auto_promote = true;
    s.max_parallel = 4;
    let mut env = Env::new(s).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    env.reconcile(&[]).await;
    env.tick().await;
    let soak = env.ops().rollout(id).await.unwrap().status;
    assert_eq!(soak.state, RolloutState::Soaking);
    env.advance(300);
    env.restart();
    env.tick().await;
    let again = env.ops().rollout(id).await.unwrap().status;
    assert_eq!(again, soak, "a restart continues the same soak");
    env.advance(299);
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Soaking);
    env.advance(1);
    env.restart();
    env.tick().await;
    assert_eq!(
        env.state(id).await,
        RolloutState::Production,
        "auto_promote after the full soak"
    );
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn a_failing_canary_is_retried_then_aborts_and_blocks_the_release() {
    let mut s = settings();
    s.retries = 1;
    let env = Env::new(s).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    env.reconcile(&["c1"]).await;
    assert_eq!(env.desired("c1").await, d(1), "the stand-in rolled it back");
    env.tick().await;
    // Retry: the failed digest is forgotten and the desired digest written again.
    assert_eq!(env.in_flight().await, ["c1"]);
    env.reconcile(&["c1"]).await;
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Aborted);
    assert_eq!(env.release_status(rel).await, "blocked");
    assert_eq!(env.target_status(id, "c1").await, "rolled_back");
    // Nothing else starts, and production never moved.
    env.tick().await;
    assert!(env.in_flight().await.is_empty());
    for p in ["c2", "p1", "p5"] {
        assert_eq!(env.desired(p).await, d(1));
    }
    let e = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409);
    assert!(e.to_string().contains("aborted"), "{e}");
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn production_failures_past_the_threshold_abort_and_start_nothing_more() {
    let mut s = settings();
    s.batch = "5".to_owned();
    s.max_parallel = 2;
    s.max_failures = 1;
    s.max_failure_ratio = 1.0;
    let env = Env::new(s).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    assert_eq!(env.in_flight().await, ["p1", "p2"]);
    env.reconcile(&["p1"]).await; // one failure is tolerated
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Production);
    assert_eq!(env.in_flight().await, ["p3", "p4"]);
    env.reconcile(&["p3"]).await; // the second is not
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Aborted);
    assert_eq!(env.release_status(rel).await, "blocked");
    env.tick().await;
    assert!(env.in_flight().await.is_empty());
    assert_eq!(
        env.target_status(id, "p4").await,
        "updated",
        "it stays where it is"
    );
    assert_eq!(
        env.target_status(id, "p5").await,
        "pending",
        "never started"
    );
    assert_eq!(env.desired("p5").await, d(1));
}

#[tokio::test]
async fn pause_holds_new_updates_and_resume_returns_to_the_same_state() {
    let mut s = settings();
    s.batch = "5".to_owned();
    let env = Env::new(s).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    assert_eq!(env.in_flight().await, ["p1"]);
    let g = &env.ops().deps().metrics.workspaces;
    assert_eq!(g.with_label_values(&[&id.to_string(), "updating"]).get(), 1);
    assert_eq!(g.with_label_values(&[&id.to_string(), "pending"]).get(), 4);
    let p = env.ops().pause(id, "ops").await.unwrap();
    assert_eq!(p.rollout.status.state, RolloutState::Paused);
    env.reconcile(&[]).await; // the running update finishes
    env.tick().await;
    assert!(
        env.in_flight().await.is_empty(),
        "paused: nothing new starts"
    );
    assert_eq!(
        env.target_status(id, "p1").await,
        "updated",
        "outcomes still recorded"
    );
    assert_eq!(
        env.ops().pause(id, "ops").await.unwrap_err().http_status(),
        409
    );
    let r = env.ops().resume(id, "ops").await.unwrap();
    assert_eq!(r.rollout.status.state, RolloutState::Production);
    env.tick().await;
    assert_eq!(env.in_flight().await, ["p2"]);
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn apply_rules_idempotence_force_and_errors() {
    let env = Env::new(settings()).await;
    // No canary workspace: canary apply says so.
    env.workspace("p1", Tier::Production, &d(1)).await;
    let rel = env.release(&d(2)).await;
    let e = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409);
    assert!(e.to_string().contains("canary tier"), "{e}");
    // `all` and early production need force.
    let e = env
        .ops()
        .apply(rel, ApplyTier::All, false, "ops")
        .await
        .unwrap_err();
    assert_eq!((e.http_status(), e.code()), (409, "invalid_state"));
    assert!(e.to_string().contains("force"), "{e}");
    let e = env
        .ops()
        .apply(rel, ApplyTier::Production, false, "ops")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("force"), "{e}");
    // Unknown release / rollout, bad tier.
    assert_eq!(
        env.ops()
            .apply(999, ApplyTier::Canary, false, "ops")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    assert_eq!(
        env.ops().pause(999, "ops").await.unwrap_err().http_status(),
        404
    );
    let e = parse_tier("everything").unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert!(e.to_string().contains("canary production all"), "{e}");
    // Canary, then the same again: a no-op returning the same rollout.
    env.workspace("c1", Tier::Canary, &d(1)).await;
    let a = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap();
    let b = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap();
    assert!(!a.no_op && b.no_op);
    assert_eq!(a.rollout.id, b.rollout.id);
    assert_eq!(
        a.rollout.version, b.rollout.version,
        "a no-op changes nothing"
    );
    // `all` with force: everything at once, audited with the actor.
    let all = env
        .ops()
        .apply(rel, ApplyTier::All, true, "alice")
        .await
        .unwrap();
    assert_eq!(all.rollout.status.state, RolloutState::Production);
    env.tick().await;
    assert_eq!(env.in_flight().await, ["c1", "p1"]);
    let events = env.store.events(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.actor == "alice"
        && e.action == "release.applied"
        && e.detail["tier"] == "all"
        && e.detail["force"] == true));
}

#[tokio::test]
async fn a_new_release_queues_behind_a_running_rollout_and_supersedes_older_queued() {
    let env = Env::new(settings()).await;
    let rel = fleet(&env).await;
    env.ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap();
    env.advance(1);
    let r3 = env.release(&d(3)).await;
    env.advance(1);
    let r4 = env.release(&d(4)).await;
    let e = env
        .ops()
        .apply(r4, ApplyTier::Canary, false, "ops")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409);
    assert!(e.to_string().contains("stays queued"), "{e}");
    env.tick().await;
    assert_eq!(env.release_status(r3).await, "superseded");
    assert_eq!(env.release_status(r4).await, "queued");
    assert_eq!(env.release_status(rel).await, "rolling_out");
}

#[tokio::test]
async fn fleet_auto_starts_inside_the_window_and_paused_starts_nothing() {
    let mut s = settings();
    s.window = Some("11:00-13:00".to_owned()); // the clock starts at 12:00 UTC
    let env = Env::new(s).await;
    let rel = fleet(&env).await;
    env.tick().await;
    assert_eq!(
        env.release_status(rel).await,
        "queued",
        "fleet mode manual waits"
    );
    env.store
        .set_fleet_mode(FleetMode::Paused, "ops", env.clock_now())
        .await
        .unwrap();
    env.tick().await;
    assert_eq!(env.release_status(rel).await, "queued");
    env.store
        .set_fleet_mode(FleetMode::Auto, "ops", env.clock_now())
        .await
        .unwrap();
    env.advance(3600); // 13:00: outside the window
    env.tick().await;
    assert_eq!(env.release_status(rel).await, "queued");
    env.advance(22 * 3600); // 11:00 next day
    let report = env.ctl.tick().await.unwrap();
    assert_eq!(report.started_rollouts.len(), 1);
    let id = report.started_rollouts[0];
    assert_eq!(env.state(id).await, RolloutState::Canary);
    env.tick().await;
    assert_eq!(env.in_flight().await, ["c1"]);
    // Fleet paused: running steps finish, nothing new starts.
    env.store
        .set_fleet_mode(FleetMode::Paused, "ops", env.clock_now())
        .await
        .unwrap();
    env.reconcile(&[]).await;
    env.tick().await;
    assert!(env.in_flight().await.is_empty());
    assert_eq!(env.target_status(id, "c1").await, "updated");
}

#[tokio::test]
async fn rollback_with_data_marks_the_restore_for_the_reconciler() {
    let mut s = settings();
    s.max_parallel = 4;
    let env = Env::new(s).await;
    let rel = fleet(&env).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    env.reconcile(&[]).await;
    env.tick().await;
    let out = env.ops().rollback(id, true, "ops").await.unwrap();
    assert_eq!(out.rollout.status.state, RolloutState::RolledBack);
    assert!(out.warning.unwrap().contains("lost"));
    assert_eq!(env.desired("c1").await, d(1));
    assert_eq!(env.release_status(rel).await, "blocked");
    let restore = env
        .scalar_s(&format!(
            "SELECT CAST(t.restore_snapshot_of_update_id AS TEXT) FROM rollout_targets t \
             JOIN workspaces w ON w.id = t.workspace_id WHERE t.rollout_id = {id} AND w.name = 'c1'"
        ))
        .await;
    let update = env
        .scalar_s(&format!(
            "SELECT CAST(MAX(u.id) AS TEXT) FROM workspace_updates u JOIN workspaces w ON w.id = u.workspace_id \
             WHERE w.name = 'c1' AND u.rollout_id = {id}"
        ))
        .await;
    assert_eq!(
        restore, update,
        "the restore names the update whose snapshots to use"
    );
    // Terminal: nothing more.
    assert_eq!(
        env.ops().resume(id, "ops").await.unwrap_err().http_status(),
        409
    );
    assert_eq!(
        env.ops()
            .apply(rel, ApplyTier::Production, true, "ops")
            .await
            .unwrap_err()
            .http_status(),
        409
    );
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn update_now_sets_one_workspace_to_the_newest_usable_release() {
    let env = Env::new(settings()).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    let e = env
        .ops()
        .update_workspace_now(&ws("p1"), None, "ops")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409);
    env.release(&d(2)).await;
    env.advance(1);
    let r3 = env.release(&d(3)).await;
    env.sql(&format!(
        "UPDATE releases SET status = 'blocked' WHERE id = {r3}"
    ))
    .await;
    let got = env
        .ops()
        .update_workspace_now(&ws("p1"), None, "ops")
        .await
        .unwrap();
    assert_eq!(got, d(2));
    assert_eq!(env.desired("p1").await, d(2));
    assert_eq!(
        env.ops()
            .update_workspace_now(&ws("nope"), None, "ops")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    // An invalid digest never reaches the operation: the API refuses the body with 400
    // `invalid_digest` (`api::invalid_bodies_get_400_naming_the_field`).
    assert!(Digest::parse("sha256:zz").is_err());
}

/// The reconciler stand-in for one host's agent: converges only the named workspaces.
async fn converge(env: &Env, names: &[&str]) {
    let now = sluice::clock::to_millis(env.clock_now());
    for name in names {
        env.sql(&format!(
            "INSERT INTO workspace_updates (workspace_id, rollout_id, from_digest, to_digest, phase, \
             started_at, updated_at, finished_at) SELECT id, desired_rollout_id, actual_digest, \
             desired_digest, 'succeeded', {now}, {now}, {now} FROM workspaces WHERE name = '{name}'"
        ))
        .await;
        env.sql(&format!(
            "UPDATE workspaces SET actual_digest = desired_digest WHERE name = '{name}'"
        ))
        .await;
    }
}

/// One heartbeat of `host`'s agent at the test clock's now.
async fn beat(env: &Env, host: &sluice::domain::HostName) {
    let hb = sluice::store::Heartbeat {
        host,
        instance: "agent-1",
        version: "test",
        capacity: None,
    };
    env.store.heartbeat(&hb, env.clock_now()).await.unwrap();
}

async fn rollout_json(env: &Env, id: i64) -> serde_json::Value {
    let r = env.ops().rollout(id).await.unwrap();
    let targets = env.store.rollout_targets(id).await.unwrap();
    let hosts = env.ops().host_states().await.unwrap();
    let analysis = env.store.latest_analysis(id).await.unwrap();
    serde_json::to_value(sluice::api::rollouts::rollout_view(
        r, targets, &hosts, analysis,
    ))
    .unwrap()
}

fn shown(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let s = |k: &str| w[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("host"), s("status"))
        })
        .collect()
}

#[tokio::test]
async fn a_stale_host_waits_while_the_other_progresses_then_is_skipped_after_host_timeout() {
    use sluice::domain::HostName;
    let s = sluice::config::RolloutSettings {
        batch: "4".to_owned(),
        max_parallel: 4,
        max_parallel_per_host: 1,
        host_timeout: std::time::Duration::from_secs(600),
        on_host_timeout: sluice::config::HostTimeoutPolicy::Skip,
        ..settings()
    };
    let env = Env::new(s).await;
    let (h1, h2) = (
        HostName::parse("h1").unwrap(),
        HostName::parse("h2").unwrap(),
    );
    for h in [&h1, &h2] {
        env.store
            .add_host(
                h,
                &Default::default(),
                "0".repeat(64).as_str(),
                "ops",
                env.clock_now(),
            )
            .await
            .unwrap();
        beat(&env, h).await;
    }
    for (n, h) in [("a1", "h1"), ("a2", "h1"), ("b1", "h2"), ("b2", "h2")] {
        env.workspace(n, Tier::Production, &d(1)).await;
        env.sql(&format!(
            "UPDATE workspaces SET host = '{h}' WHERE name = '{n}'"
        ))
        .await;
    }
    let rel = env.release(&d(2)).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap()
        .rollout
        .id;

    // Both hosts up: one update per host (max_parallel_per_host 1).
    env.tick().await;
    assert_eq!(env.in_flight().await, ["a1", "b1"]);

    // h2's agent goes quiet: past [hosts] down_after its targets wait, h1 goes on.
    env.advance(40);
    beat(&env, &h1).await;
    env.tick().await;
    let v = rollout_json(&env, id).await;
    let st = |name: &str| {
        shown(&v)
            .into_iter()
            .find(|w| w.0 == name)
            .map(|w| (w.1, w.2))
            .unwrap()
    };
    assert_eq!(st("a1"), ("h1".into(), "updating".into()));
    assert_eq!(st("b1"), ("h2".into(), "waiting_for_host".into()));
    assert_eq!(st("b2"), ("h2".into(), "waiting_for_host".into()));
    let h2v = v["hosts"].as_array().unwrap()[1].clone();
    assert_eq!(h2v["host"], "h2");
    assert_eq!(h2v["state"], "down");
    assert_eq!(h2v["waiting_for_host"], 2);
    assert_eq!(v["counts"]["waiting_for_host"], 2);
    for (attempt, next) in [("a1", Some("a2")), ("a2", None)] {
        converge(&env, &[attempt]).await;
        env.advance(5);
        beat(&env, &h1).await;
        env.tick().await;
        assert_eq!(env.target_status(id, attempt).await, "updated");
        if let Some(n) = next {
            assert_eq!(env.target_status(id, n).await, "updating");
        }
    }
    // Everything on h1 is done; h2 still waits (policy skip, but not past host_timeout).
    assert_eq!(env.state(id).await, RolloutState::Production);
    assert_eq!(env.target_status(id, "b1").await, "updating");
    assert_eq!(env.target_status(id, "b2").await, "pending");

    // Past host_timeout: h2's targets are skipped with a reason, and the rollout completes.
    env.advance(600);
    beat(&env, &h1).await;
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Completed);
    for n in ["b1", "b2"] {
        assert_eq!(env.target_status(id, n).await, "skipped");
    }
    let v = rollout_json(&env, id).await;
    let b1 = v["workspaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "b1")
        .unwrap()
        .clone();
    let reason = b1["status_reason"].as_str().unwrap();
    assert!(reason.contains("host h2 down since"), "{reason}");
    assert_eq!(v["hosts"][1]["skipped"], 2);
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT workspace, detail FROM events WHERE rollout_id = $1 \
         AND action = 'target.skipped_for_host' ORDER BY workspace",
    )
    .bind(id)
    .fetch_all(env.store.raw_pool())
    .await
    .unwrap();
    assert_eq!(
        events.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["b1", "b2"]
    );
    let detail: serde_json::Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(detail["host"], "h2");
    assert!(detail["reason"].as_str().unwrap().contains("h2"));
    // Skipped is not rolled back: each workspace keeps the desired digest it had.
    assert_eq!(env.desired("b1").await, d(2));
    assert_eq!(env.desired("b2").await, d(1));
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn with_on_host_timeout_wait_a_down_host_keeps_the_rollout_open() {
    use sluice::domain::HostName;
    let env = Env::new(sluice::config::RolloutSettings {
        batch: "4".to_owned(),
        max_parallel: 4,
        ..settings()
    })
    .await;
    let h1 = HostName::parse("h1").unwrap();
    env.store
        .add_host(
            &h1,
            &Default::default(),
            "0".repeat(64).as_str(),
            "ops",
            env.clock_now(),
        )
        .await
        .unwrap();
    // h2's workspace is on a host with no row: unseen, waited for.
    for (n, h) in [("a1", "h1"), ("b1", "h2")] {
        env.workspace(n, Tier::Production, &d(1)).await;
        env.sql(&format!(
            "UPDATE workspaces SET host = '{h}' WHERE name = '{n}'"
        ))
        .await;
    }
    let rel = env.release(&d(2)).await;
    let id = env
        .ops()
        .apply(rel, ApplyTier::Production, true, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    for _ in 0..3 {
        beat(&env, &h1).await;
        env.tick().await;
        converge(&env, &["a1"]).await;
        env.advance(3600);
    }
    assert_eq!(env.target_status(id, "a1").await, "updated");
    assert_eq!(env.target_status(id, "b1").await, "pending");
    assert_eq!(env.state(id).await, RolloutState::Production);
    let v = rollout_json(&env, id).await;
    assert_eq!(v["hosts"][1]["state"], "unseen");
    assert_eq!(v["hosts"][1]["waiting_for_host"], 1);
}
