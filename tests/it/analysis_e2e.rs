//! A metric-gated rollout on the real Docker engine, registry and Prometheus: Debian's
//! Prometheus scrapes the canary fixture's own `/metrics` (a file in its volume that the
//! test writes) through its published port; the controller (manual clock) drives the
//! real reconciler. A clean release soaks, passes its check and `auto_promote` promotes
//! it; the next release raises the canary's error ratio, and the rollout aborts before
//! production, which never leaves the good release; `rollback` returns the canary.

use std::time::{Duration, Instant};

use chrono::TimeZone;
use sluice::clock::{Clock, ManualClock, SystemClock};
use sluice::config::{AnalysisCheck, Comparison, Inconclusive, RolloutSettings};
use sluice::domain::spec::PortMapping;
use sluice::domain::{AnalysisOutcome, AnalysisVerdict, ApplyTier, RolloutState, Tier};
use sluice::rollout::analysis::Sample;
use sluice::rollout::controller::Controller;
use sluice::rollout::metrics::RolloutMetrics;
use sluice::rollout::ops::Ops;
use sluice::rollout::prometheus::Prometheus;
use sluice::wake::Wakers;
use std::sync::Arc;

use crate::prometheus_analysis::start_prometheus;
use crate::rollout_e2e::{Fleet, e2e_store, exec, reconciler};
use crate::support::{DockerCleanup, build_fixture, fixture_workspace, registry, unique};

const QUERY: &str = r#"max(fixture_error_ratio{workspace=~"{{ canary_workspaces }}"})"#;

/// Writes the canary's metrics file (served at `/metrics` by the fixture).
fn error_ratio(container: &str, workspace: &str, ratio: f64) {
    exec(
        container,
        &format!(
            "printf '# TYPE fixture_error_ratio gauge\\nfixture_error_ratio{{workspace=\"{workspace}\"}} {ratio}\\n' \
             > /data/metrics.prom.new && mv /data/metrics.prom.new /data/metrics.prom"
        ),
    );
}

/// Waits (bounded) until Prometheus has scraped `want` for the query.
async fn scraped(p: &Prometheus, q: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = p.query(q).await;
        if s == Sample::Value(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{q}: still {s:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn prometheus_scraping_the_canary_gates_its_promotion() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = e2e_store(dir.path()).await;
    let repo = format!("{}/{}/app", registry(), unique("gate"));
    let image = format!("{repo}:stable");
    let mut cleanup = DockerCleanup::default();
    let (v1, v2, v3) = (
        build_fixture("good", "v1", &format!("{repo}:v1")),
        build_fixture("good", "v2", &format!("{repo}:v2")),
        build_fixture("good", "v3", &format!("{repo}:v3")),
    );
    for d in [&v1, &v2, &v3] {
        cleanup.images.push(format!("{repo}@{d}"));
    }
    let base = unique("ga").replace('_', "-");
    let names = vec![format!("{base}-c"), format!("{base}-p")];
    let port = crate::support::free_port();
    for (name, tier) in names.iter().zip([Tier::Canary, Tier::Production]) {
        let mut w = fixture_workspace(name, &image, tier, &mut cleanup);
        if tier == Tier::Canary {
            w.spec.ports = vec![PortMapping {
                container: 8080,
                host: Some(port),
                host_ip: None,
                protocol: None,
            }];
        }
        let w = store.insert_workspace(&w, SystemClock.now()).await.unwrap();
        store
            .set_desired_digest(w.id, Some(&v1), None, SystemClock.now())
            .await
            .unwrap();
    }
    let rec = reconciler(&s, &store).await;
    rec.converge_all().await.unwrap();
    let canary = format!("sluice-{}", names[0]);
    error_ratio(&canary, &names[0], 0.0);
    let (_prom, url) = start_prometheus(port).await;
    let prom = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
    let rendered = QUERY.replace("{{ canary_workspaces }}", &names[0]);
    scraped(&prom, &rendered, 0.0).await;

    let clock = ManualClock::new(chrono::Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
    let rollout = RolloutSettings {
        auto_promote: true,
        analysis: vec![AnalysisCheck {
            name: "canary error ratio".into(),
            image: Some(image.clone()),
            query: QUERY.into(),
            comparison: Comparison::AtMost,
            threshold: 0.05,
            interval: Duration::from_secs(30),
            failure_limit: 2,
            inconclusive: Inconclusive::Pause,
            after_waves: false,
        }],
        ..RolloutSettings::default()
    };
    let ops = Ops::new(sluice::rollout::deps::RolloutDeps {
        store: store.clone(),
        settings: Arc::new(rollout),
        wakers: Wakers::new(),
        clock: Arc::new(clock.clone()),
        metrics: RolloutMetrics::unregistered(),
    });
    let f = Fleet {
        store: store.clone(),
        rec,
        ctl: Controller::new(ops.deps().clone(), Duration::from_secs(5))
            .with_analysis(Arc::new(prom.clone())),
        ops,
        clock,
        image,
        names: names.clone(),
    };

    // Clean: the canary moves, Prometheus keeps scraping it, the soak ends, promoted.
    let r2 = f.release(&v2).await;
    let id = f
        .ops
        .apply(r2, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    f.step().await;
    f.step().await;
    assert_eq!(f.state(id).await, RolloutState::Soaking);
    assert_eq!(f.actual(&names[0]).await, Some(v2.clone()));
    scraped(&prom, &rendered, 0.0).await;
    f.clock.advance(chrono::Duration::minutes(60));
    f.step().await;
    assert_eq!(
        f.state(id).await,
        RolloutState::Production,
        "auto_promote after a pass"
    );
    for _ in 0..6 {
        f.step().await;
        f.clock.advance(chrono::Duration::seconds(30));
    }
    assert_eq!(f.state(id).await, RolloutState::Completed);
    assert_eq!(f.actual(&names[1]).await, Some(v2.clone()));

    // Rising errors on the canary of the next release: two failed evaluations abort.
    let r3 = f.release(&v3).await;
    let id3 = f
        .ops
        .apply(r3, ApplyTier::Canary, false, "ops")
        .await
        .unwrap()
        .rollout
        .id;
    f.step().await;
    f.step().await;
    assert_eq!(f.state(id3).await, RolloutState::Soaking);
    error_ratio(&canary, &names[0], 0.4);
    scraped(&prom, &rendered, 0.4).await;
    f.step().await;
    assert_eq!(
        f.state(id3).await,
        RolloutState::Soaking,
        "one failure of two"
    );
    f.clock.advance(chrono::Duration::minutes(60));
    f.step().await;
    assert_eq!(f.state(id3).await, RolloutState::Aborted);
    assert_eq!(f.release_status(r3).await, "blocked");
    let last = f.store.latest_analysis(id3).await.unwrap();
    assert_eq!(
        (last[0].outcome, last[0].verdict, last[0].value),
        (AnalysisOutcome::Fail, AnalysisVerdict::Abort, Some(0.4))
    );
    assert_eq!(
        f.actual(&names[1]).await,
        Some(v2.clone()),
        "production stays on v2"
    );
    // The operator returns the canary.
    f.ops.rollback(id3, false, "ops").await.unwrap();
    for _ in 0..3 {
        f.step().await;
    }
    assert_eq!(f.actual(&names[0]).await, Some(v2.clone()));
    drop(cleanup);
}
