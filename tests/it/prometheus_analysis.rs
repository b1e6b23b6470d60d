//! Metric analysis against a real Prometheus (Debian's, on loopback): it scrapes a small
//! metrics endpoint the test serves and changes; the adapter's queries and the pure
//! verdicts decide as a rollout will — a rising error rate aborts, a clean one passes,
//! no data and an unreachable Prometheus are inconclusive, a query Prometheus cannot
//! parse is refused with its message.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice::config::{AnalysisCheck, Comparison, Inconclusive};
use sluice::rollout::analysis::{Outcome, Sample, Verdict, decide, judge, render};
use sluice::rollout::prometheus::Prometheus;

/// A Prometheus process, killed on drop (its data directory goes with it).
pub struct PromProcess {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for PromProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `tenant_errors_total{workspace="acme"}` (the counter) and a steady one for
/// `globex` on a loopback port; returns the port.
pub async fn metrics_endpoint(errors: Arc<AtomicU64>) -> u16 {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let n = errors.load(Ordering::SeqCst);
            async move {
                format!(
                    "# TYPE tenant_errors_total counter\n\
                     tenant_errors_total{{workspace=\"acme\"}} {n}\n\
                     tenant_errors_total{{workspace=\"globex\"}} 1000\n"
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

pub async fn start_prometheus(target: u16) -> (PromProcess, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tenant\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let port = crate::support::free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's prometheus is installed (tests/env/up.sh)");
    let url = format!("http://127.0.0.1:{port}");
    let guard = PromProcess { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/-/ready")).await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (guard, url)
}

fn check(query: &str, limit: u32) -> AnalysisCheck {
    AnalysisCheck {
        name: "canary errors".into(),
        image: None,
        query: query.into(),
        comparison: Comparison::Below,
        threshold: 0.5,
        interval: Duration::from_secs(1),
        failure_limit: limit,
        inconclusive: Inconclusive::Pause,
        after_waves: false,
    }
}

/// Queries until `want` says yes (Prometheus needs a few scrapes), bounded.
async fn until(p: &Prometheus, q: &str, want: impl Fn(&Sample) -> bool) -> Sample {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = p.query(q).await;
        if want(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{q}: still {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_rising_error_rate_aborts_and_a_clean_one_passes() {
    let errors = Arc::new(AtomicU64::new(0));
    let target = metrics_endpoint(errors.clone()).await;
    let (_prom, url) = start_prometheus(target).await;
    let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
    let template = r#"sum(rate(tenant_errors_total{workspace=~"{{ canary_workspaces }}"}[5s]))"#;
    let q = render(template, &["acme"], "sha256:ab").unwrap();
    let c = check(template, 2);

    // Clean: the canary's counter stands still (globex's is not the canary's).
    let s = until(&p, &q, |s| matches!(s, Sample::Value(_))).await;
    let outcome = judge(c.comparison, c.threshold, &s);
    assert!(
        matches!(outcome, Outcome::Pass(v) if v == 0.0),
        "{outcome:?}"
    );
    assert_eq!(decide(&c, 0, &outcome), (0, Verdict::Continue));

    // Rising: 10 errors a second on the canary; two failed evaluations abort.
    let ticker = {
        let errors = errors.clone();
        tokio::spawn(async move {
            for _ in 0..400 {
                errors.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let mut failures = 0;
    let mut verdict = Verdict::Continue;
    for _ in 0..2 {
        let s = until(&p, &q, |s| matches!(s, Sample::Value(v) if *v > 1.0)).await;
        (failures, verdict) = decide(&c, failures, &judge(c.comparison, c.threshold, &s));
    }
    ticker.abort();
    let Verdict::Abort(why) = verdict else {
        panic!("a rising error rate aborts: {verdict:?}")
    };
    assert!(
        why.contains("analysis `canary errors`") && why.contains("is not < 0.5"),
        "{why}"
    );
}

#[tokio::test]
async fn no_data_a_bad_query_and_a_silent_prometheus_are_never_a_pass() {
    let target = metrics_endpoint(Arc::new(AtomicU64::new(0))).await;
    let (prom, url) = start_prometheus(target).await;
    let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
    let c = check("x", 1);

    let s = p.query("sum(nothing_scrapes_this_total)").await;
    assert!(matches!(s, Sample::NoData | Sample::Value(_)), "{s:?}");
    let s = p.query("nothing_scrapes_this_total").await;
    assert_eq!(s, Sample::NoData);
    let (_, v) = decide(&c, 0, &judge(c.comparison, c.threshold, &s));
    assert!(
        matches!(v, Verdict::Pause(ref why) if why.contains("no data")),
        "{v:?}"
    );

    // Several series: the check must aggregate them.
    let s = until(&p, "tenant_errors_total", |s| matches!(s, Sample::Error(_))).await;
    assert!(
        matches!(s, Sample::Error(ref e) if e.contains("2 series")),
        "{s:?}"
    );

    let bad = "sum(rate(tenant_errors_total[1m]";
    let e = p.check_syntax(bad).await.unwrap_err();
    assert!(
        e.contains("Prometheus refused the query") && e.contains("parse error"),
        "{e}"
    );
    assert!(
        p.check_syntax("sum(rate(tenant_errors_total[1m]))")
            .await
            .is_ok()
    );
    assert!(matches!(p.query(bad).await, Sample::Refused(ref e) if e.contains("parse error")));

    drop(prom);
    let s = p.query("up").await;
    assert!(
        matches!(s, Sample::Error(ref e) if e.contains("does not answer")),
        "{s:?}"
    );
    assert!(!e_has_url(&s, &url), "the URL is not in the message: {s:?}");
    assert!(matches!(
        judge(c.comparison, c.threshold, &s),
        Outcome::Inconclusive(_)
    ));
}

fn e_has_url(s: &Sample, url: &str) -> bool {
    matches!(s, Sample::Error(e) if e.contains(url))
}
