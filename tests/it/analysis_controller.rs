//! Metric-gated rollouts: the controller (real store, manual clock, the reconciler
//! stand-in of `rollout_harness`) asks a real Prometheus (Debian's, on loopback) that
//! scrapes a metrics endpoint the test changes. A clean canary lets `auto_promote`
//! promote; a rising error rate aborts the rollout before production and blocks the
//! release; a query without data pauses it for an operator; a Prometheus that does not
//! answer never counts as a pass. Every evaluation is stored and shown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice::config::{AnalysisCheck, Comparison, Inconclusive, RolloutSettings};
use sluice::domain::{AnalysisOutcome, AnalysisVerdict, ApplyTier, RolloutState, Tier};
use sluice::rollout::analysis::Sample;
use sluice::rollout::controller::Controller;
use sluice::rollout::prometheus::Prometheus;

use crate::prometheus_analysis::{metrics_endpoint, start_prometheus};
use crate::rollout_harness::{Env, d, settings};

const ERRORS: &str = r#"sum(rate(tenant_errors_total{workspace=~"{{ canary_workspaces }}"}[5s]))"#;

fn check(query: &str, inconclusive: Inconclusive) -> AnalysisCheck {
    AnalysisCheck {
        name: "canary errors".into(),
        image: None,
        query: query.into(),
        comparison: Comparison::Below,
        threshold: 0.5,
        interval: Duration::from_secs(30),
        failure_limit: 2,
        inconclusive,
        after_waves: false,
    }
}

fn gated(checks: Vec<AnalysisCheck>) -> RolloutSettings {
    RolloutSettings {
        auto_promote: true,
        analysis: checks,
        ..settings()
    }
}

/// The harness's controller, asking `url`.
fn ask(env: &mut Env, url: &str) {
    let p = Prometheus::new(url, Duration::from_secs(5)).unwrap();
    env.ctl = Controller::new(env.ops().deps().clone(), Duration::from_secs(5))
        .with_analysis(Arc::new(p));
}

/// Waits (bounded) until Prometheus answers `query` as `want` says: scrapes take a moment.
async fn until(url: &str, query: &str, want: impl Fn(&Sample) -> bool) {
    let p = Prometheus::new(url, Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = p.query(query).await;
        if want(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: still {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Applies `release` to the canary `acme` and converges it: the rollout soaks.
async fn to_soak(env: &Env, release: i64) -> i64 {
    let id = env
        .ops()
        .apply(release, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    env.tick().await;
    env.reconcile(&[]).await;
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Soaking);
    id
}

async fn events(env: &Env, id: i64, action: &str) -> Vec<serde_json::Value> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM events WHERE rollout_id = $1 AND action = $2 ORDER BY id",
    )
    .bind(id)
    .bind(action)
    .fetch_all(env.store.raw_pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

#[tokio::test]
async fn a_clean_canary_promotes_and_a_rising_error_rate_aborts_before_production() {
    let errors = Arc::new(AtomicU64::new(0));
    let (_prom, url) = start_prometheus(metrics_endpoint(errors.clone()).await).await;
    let mut env = Env::new(gated(vec![check(ERRORS, Inconclusive::Pause)])).await;
    ask(&mut env, &url);
    env.workspace("acme", Tier::Canary, &d(1)).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    let rendered = ERRORS.replace("{{ canary_workspaces }}", "acme");
    until(&url, &rendered, |s| matches!(s, Sample::Value(_))).await;

    // Clean: evaluated at once, and again when the soak ends; then promoted.
    let id = to_soak(&env, env.release(&d(2)).await).await;
    env.tick().await;
    let first = env.store.latest_analysis(id).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        (first[0].outcome, first[0].verdict, first[0].failures),
        (AnalysisOutcome::Pass, AnalysisVerdict::Continue, 0)
    );
    assert_eq!(first[0].query, rendered, "the canary's name is filled in");
    env.tick().await;
    assert_eq!(
        env.store.analysis_history(id, 10).await.unwrap().1,
        1,
        "not due again before its interval"
    );
    env.advance(600);
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Production);
    assert_eq!(env.store.analysis_history(id, 10).await.unwrap().1, 2);
    assert_eq!(events(&env, id, "rollout.analysis_passed").await.len(), 1);
    for _ in 0..6 {
        env.reconcile(&[]).await;
        env.tick().await;
        env.advance(30);
    }
    assert_eq!(env.state(id).await, RolloutState::Completed);

    // Rising: 10 errors a second on the canary after the next release reaches it.
    let bad = env.release(&d(3)).await;
    let id = to_soak(&env, bad).await;
    let ticker = tokio::spawn(async move {
        for _ in 0..600 {
            errors.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    until(
        &url,
        &rendered,
        |s| matches!(s, Sample::Value(v) if *v > 1.0),
    )
    .await;
    env.tick().await;
    assert_eq!(
        env.state(id).await,
        RolloutState::Soaking,
        "one failure of two"
    );
    env.advance(600);
    until(
        &url,
        &rendered,
        |s| matches!(s, Sample::Value(v) if *v > 1.0),
    )
    .await;
    env.tick().await;
    ticker.abort();
    assert_eq!(env.state(id).await, RolloutState::Aborted);
    assert_eq!(env.release_status(bad).await, "blocked");
    assert_eq!(
        env.desired("p1").await,
        d(2),
        "production never saw the release"
    );
    let last = env.store.latest_analysis(id).await.unwrap();
    assert_eq!(
        (last[0].outcome, last[0].verdict, last[0].failures),
        (AnalysisOutcome::Fail, AnalysisVerdict::Abort, 2)
    );
    assert!(last[0].value.is_some_and(|v| v > 0.5), "{last:?}");
    let audit = events(&env, id, "rollout.analysis").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["verdict"], "abort");
    assert!(
        audit[0]["detail"]
            .as_str()
            .unwrap()
            .contains("is not < 0.5"),
        "{audit:?}"
    );
    let reason: Option<String> = sqlx::query_scalar("SELECT reason FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_one(env.store.raw_pool())
        .await
        .unwrap();
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("analysis `canary errors`")),
        "{reason:?}"
    );
    env.assert_replay_matches(id).await;
}

#[tokio::test]
async fn no_data_pauses_for_an_operator_and_a_silent_prometheus_is_never_a_pass() {
    let (prom, url) = start_prometheus(metrics_endpoint(Arc::new(AtomicU64::new(0))).await).await;
    // The canary `nobody` has no series: no data.
    let absent = r#"sum(tenant_errors_total{workspace=~"{{ canary_workspaces }}"})"#;
    let mut env = Env::new(gated(vec![check(absent, Inconclusive::Pause)])).await;
    ask(&mut env, &url);
    env.workspace("nobody", Tier::Canary, &d(1)).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    until(&url, "up", |s| matches!(s, Sample::Value(_))).await;
    let id = to_soak(&env, env.release(&d(2)).await).await;
    env.advance(600);
    env.tick().await;
    let r = env.ops().rollout(id).await.unwrap().status;
    assert_eq!(
        (r.state, r.paused_from),
        (RolloutState::Paused, Some(RolloutState::Soaking)),
        "no data is never a pass, even with the soak over"
    );
    assert_eq!(env.desired("p1").await, d(1));
    let last = env.store.latest_analysis(id).await.unwrap();
    assert_eq!(
        (last[0].outcome, last[0].verdict, last[0].value),
        (AnalysisOutcome::Inconclusive, AnalysisVerdict::Pause, None)
    );
    assert!(last[0].detail.contains("no data"), "{last:?}");
    env.tick().await;
    assert_eq!(
        env.state(id).await,
        RolloutState::Paused,
        "a paused rollout asks nothing"
    );
    assert_eq!(env.store.analysis_history(id, 10).await.unwrap().1, 1);

    // A Prometheus that stops answering, counted as a failure: two in a row abort.
    drop(prom);
    let mut env = Env::new(gated(vec![check(ERRORS, Inconclusive::Fail)])).await;
    ask(&mut env, &url);
    env.workspace("acme", Tier::Canary, &d(1)).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    let id = to_soak(&env, env.release(&d(2)).await).await;
    env.advance(600);
    env.tick().await;
    assert_eq!(
        env.state(id).await,
        RolloutState::Soaking,
        "held, not promoted"
    );
    env.advance(30);
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Aborted);
    let last = env.store.latest_analysis(id).await.unwrap();
    assert!(last[0].detail.contains("does not answer"), "{last:?}");
    assert!(!last[0].detail.contains(&url), "no URL in what is stored");
}

#[tokio::test]
async fn with_after_waves_each_production_wave_waits_for_a_pass_made_after_the_last() {
    let (_prom, url) = start_prometheus(metrics_endpoint(Arc::new(AtomicU64::new(0))).await).await;
    let mut c = check(ERRORS, Inconclusive::Pause);
    c.after_waves = true;
    c.interval = Duration::from_secs(60);
    let mut s = gated(vec![c]);
    s.batch = "1".into();
    s.pause_between_waves = Duration::ZERO;
    let mut env = Env::new(s).await;
    ask(&mut env, &url);
    env.workspace("acme", Tier::Canary, &d(1)).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    env.workspace("p2", Tier::Production, &d(1)).await;
    let rendered = ERRORS.replace("{{ canary_workspaces }}", "acme");
    until(&url, &rendered, |s| matches!(s, Sample::Value(_))).await;
    let id = to_soak(&env, env.release(&d(2)).await).await;
    env.advance(600);
    env.tick().await;
    assert_eq!(env.state(id).await, RolloutState::Production);
    // The first production wave needs no pass after an earlier one; the check runs at once.
    env.tick().await;
    assert_eq!(env.in_flight().await, ["p1"]);
    env.advance(10);
    env.reconcile(&[]).await;
    env.tick().await;
    assert_eq!(env.target_status(id, "p1").await, "updated");
    env.advance(20);
    env.tick().await;
    assert!(
        env.in_flight().await.is_empty(),
        "the last pass predates p1's wave: p2 waits for the next evaluation"
    );
    env.advance(30);
    env.tick().await;
    assert_eq!(
        env.in_flight().await,
        ["p2"],
        "a pass after p1's wave lets p2 go"
    );
    let production: Vec<_> = env
        .store
        .analysis_history(id, 50)
        .await
        .unwrap()
        .0
        .into_iter()
        .filter(|a| a.stage == sluice::domain::AnalysisStage::Production)
        .collect();
    assert_eq!(production.len(), 2, "{production:?}");
    assert!(
        production
            .iter()
            .all(|a| a.outcome == AnalysisOutcome::Pass)
    );
}

#[tokio::test]
async fn the_daemon_takes_the_checks_and_names_a_query_prometheus_refuses() {
    let (_prom, url) = start_prometheus(metrics_endpoint(Arc::new(AtomicU64::new(0))).await).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[rollout.prometheus]\nurl = \"{url}\"\n\n\
             [[rollout.analysis]]\nname = \"unbalanced\"\n\
             query = 'sum(rate(tenant_errors_total{{workspace=~\"{{{{ canary_workspaces }}}}\"}}[1m])'\n\
             comparison = \"<\"\nthreshold = 1\n\n\
             [[rollout.analysis]]\nname = \"fine\"\nquery = 'sum(up)'\ncomparison = \">\"\nthreshold = 0\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let daemon =
        crate::support::Daemon::start(&data, &[("SLUICE_CONFIG", config.to_str().unwrap())]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let logs = daemon.logs.lock().unwrap().clone();
        if let Some(line) = logs
            .iter()
            .find(|l| l.contains("does not accept a metric check's query"))
        {
            break (line.clone(), logs);
        }
        assert!(
            Instant::now() < deadline,
            "no log about the refused query: {logs:?}"
        );
        drop(logs);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (line, logs) = refused;
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["check"], "unbalanced", "{line}");
    assert!(line.contains("parse error"), "{line}");
    assert!(!line.contains(&url), "the URL is not logged: {line}");
    assert!(
        !logs
            .iter()
            .any(|l| l.contains("\"check\":\"fine\"") && l.contains("ERROR")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn a_query_prometheus_cannot_parse_pauses_the_rollout_with_the_reason() {
    let (_prom, url) = start_prometheus(metrics_endpoint(Arc::new(AtomicU64::new(0))).await).await;
    // Counted as a failure when inconclusive, a broken query still only pauses: it is
    // the configuration that is wrong, not the release.
    let broken = r#"sum(rate(tenant_errors_total{workspace=~"{{ canary_workspaces }}"}[5s])"#;
    let mut c = check(broken, Inconclusive::Fail);
    c.failure_limit = 1;
    let mut env = Env::new(gated(vec![c])).await;
    ask(&mut env, &url);
    env.workspace("acme", Tier::Canary, &d(1)).await;
    env.workspace("p1", Tier::Production, &d(1)).await;
    until(&url, "up", |s| matches!(s, Sample::Value(_))).await;
    let id = to_soak(&env, env.release(&d(2)).await).await;
    env.tick().await;
    let r = env.ops().rollout(id).await.unwrap().status;
    assert_eq!(
        (r.state, r.paused_from),
        (RolloutState::Paused, Some(RolloutState::Soaking))
    );
    let last = env.store.latest_analysis(id).await.unwrap();
    assert!(last[0].detail.contains("parse error"), "{last:?}");
    let paused = events(&env, id, "rollout.paused").await;
    let audit = events(&env, id, "rollout.analysis").await;
    assert_eq!(audit.len(), 1, "{audit:?} {paused:?}");
    assert_eq!(audit[0]["verdict"], "pause");
}
