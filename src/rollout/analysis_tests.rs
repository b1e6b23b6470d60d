//! The pure verdicts and the gate of metric analysis.
use std::time::Duration;

use super::*;

fn check(limit: u32, inconclusive: Inconclusive) -> AnalysisCheck {
    AnalysisCheck {
        name: "errors".into(),
        image: None,
        query: "sum(rate(errors_total[1m]))".into(),
        comparison: Comparison::Below,
        threshold: 0.05,
        interval: Duration::from_secs(30),
        failure_limit: limit,
        inconclusive,
        after_waves: false,
    }
}

#[test]
fn templates_fill_the_canaries_and_the_digest() {
    let q = r#"sum(rate(http_errors_total{workspace=~"{{ canary_workspaces }}",digest="{{digest}}"}[1m]))"#;
    assert_eq!(
        render(q, &["acme", "globex"], "sha256:ab").unwrap(),
        r#"sum(rate(http_errors_total{workspace=~"acme|globex",digest="sha256:ab"}[1m]))"#
    );
    assert!(
        check_template("up{job=\"{{ tenant }}\"}")
            .unwrap_err()
            .contains("unknown variable")
    );
    assert!(check_template("up{{").unwrap_err().contains("never closed"));
    assert!(check_template("  ").is_err());
}

#[test]
fn a_value_passes_only_on_the_right_side_of_the_threshold() {
    assert_eq!(
        judge(Comparison::Below, 0.05, &Sample::Value(0.01)),
        Outcome::Pass(0.01)
    );
    assert_eq!(
        judge(Comparison::Below, 0.05, &Sample::Value(0.05)),
        Outcome::Fail(0.05)
    );
    assert_eq!(
        judge(Comparison::AtMost, 0.05, &Sample::Value(0.05)),
        Outcome::Pass(0.05)
    );
    assert_eq!(
        judge(Comparison::Above, 1.0, &Sample::Value(1.0)),
        Outcome::Fail(1.0)
    );
    assert_eq!(
        judge(Comparison::AtLeast, 1.0, &Sample::Value(1.0)),
        Outcome::Pass(1.0)
    );
    for s in [
        Sample::NoData,
        Sample::Error("down".into()),
        Sample::Value(f64::NAN),
    ] {
        assert!(
            matches!(judge(Comparison::Below, 1.0, &s), Outcome::Inconclusive(_)),
            "{s:?}"
        );
    }
}

#[test]
fn consecutive_failures_abort_and_a_pass_resets_them() {
    let c = check(2, Inconclusive::Pause);
    let (n, v) = decide(&c, 0, &Outcome::Fail(0.2));
    assert_eq!((n, v), (1, Verdict::Continue));
    let (n, v) = decide(&c, n, &Outcome::Pass(0.0));
    assert_eq!((n, v), (0, Verdict::Continue));
    let (n, _) = decide(&c, n, &Outcome::Fail(0.2));
    let (n, v) = decide(&c, n, &Outcome::Fail(0.3));
    assert_eq!(n, 2);
    let Verdict::Abort(why) = v else {
        panic!("two failures abort")
    };
    assert!(
        why.contains("analysis `errors`: 0.3 is not < 0.05"),
        "{why}"
    );
}

#[test]
fn inconclusive_pauses_or_fails_but_never_passes() {
    let no = Outcome::Inconclusive("the query returned no data".into());
    let (n, v) = decide(&check(1, Inconclusive::Pause), 0, &no);
    assert_eq!(n, 0);
    assert!(
        matches!(v, Verdict::Pause(ref why) if why.contains("no data")),
        "{v:?}"
    );
    let (n, v) = decide(&check(1, Inconclusive::Fail), 0, &no);
    assert_eq!(n, 1);
    assert!(matches!(v, Verdict::Abort(_)), "{v:?}");
}

fn at(secs: i64) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

#[test]
fn checks_apply_by_image_and_stage_and_fall_due_every_interval() {
    let mut only = check(1, Inconclusive::Pause);
    only.image = Some("127.0.0.1:5000/app:stable".into());
    let mut waves = check(1, Inconclusive::Pause);
    waves.name = "waves".into();
    waves.after_waves = true;
    let all = [only, waves];
    let names = |v: Vec<&AnalysisCheck>| v.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(applicable(
            &all,
            "127.0.0.1:5000/app:stable",
            AnalysisStage::Soak
        )),
        ["errors", "waves"]
    );
    assert_eq!(
        names(applicable(
            &all,
            "127.0.0.1:5000/other:stable",
            AnalysisStage::Soak
        )),
        ["waves"]
    );
    assert_eq!(
        names(applicable(
            &all,
            "127.0.0.1:5000/app:stable",
            AnalysisStage::Production
        )),
        ["waves"]
    );
    assert_eq!(stage(RolloutState::Paused), None);
    let c = &all[0];
    let (last, _) = evaluate(
        c,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::Value(0.0),
        None,
        at(0),
    );
    assert!(due(c, None, at(0)));
    assert!(!due(c, Some(&last), at(29)));
    assert!(due(c, Some(&last), at(30)));
}

#[test]
fn evaluations_carry_their_failures_and_the_gate_needs_every_check_passing() {
    let a = check(2, Inconclusive::Pause);
    let mut b = check(2, Inconclusive::Fail);
    b.name = "latency".into();
    let (r1, v1) = evaluate(
        &a,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::Value(0.2),
        None,
        at(0),
    );
    assert_eq!(
        (r1.outcome, r1.failures, r1.value),
        (AnalysisOutcome::Fail, 1, Some(0.2))
    );
    assert_eq!(r1.detail, "0.2 is not < 0.05");
    assert_eq!(v1, Verdict::Continue);
    let (r2, v2) = evaluate(
        &a,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::Value(0.3),
        Some(&r1),
        at(30),
    );
    assert_eq!((r2.failures, r2.verdict), (2, AnalysisVerdict::Abort));
    let g = gate(&[&a, &b], std::slice::from_ref(&r2), &[v1, v2.clone()]);
    assert_eq!(g.decided, Some(v2));
    assert_eq!(g.passed_since, None);

    let (pa, _) = evaluate(
        &a,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::Value(0.0),
        None,
        at(10),
    );
    let (pb, _) = evaluate(
        &b,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::Value(0.01),
        None,
        at(20),
    );
    // One check passing is not enough; both are, from the older of the two passes.
    assert_eq!(
        gate(&[&a, &b], std::slice::from_ref(&pa), &[]).passed_since,
        None
    );
    let g = gate(&[&a, &b], &[pa, pb], &[]);
    assert_eq!((g.decided.clone(), g.passed_since), (None, Some(at(10))));
    assert!(g.allows_promotion() && g.allows_wave_after(at(10)) && !g.allows_wave_after(at(11)));
    assert!(Gate::open().allows_promotion() && Gate::open().allows_wave_after(at(99)));
    // No data is stored as inconclusive, without a value.
    let (r, v) = evaluate(
        &a,
        AnalysisStage::Soak,
        "q".into(),
        &Sample::NoData,
        None,
        at(0),
    );
    assert_eq!(
        (r.outcome, r.value, r.verdict),
        (AnalysisOutcome::Inconclusive, None, AnalysisVerdict::Pause)
    );
    assert!(matches!(v, Verdict::Pause(_)));
}

#[test]
fn a_refused_query_pauses_even_where_no_data_would_count_as_a_failure() {
    let c = check(1, Inconclusive::Fail);
    let o = judge(
        c.comparison,
        c.threshold,
        &Sample::Refused("parse error".into()),
    );
    let (n, v) = decide(&c, 0, &o);
    assert_eq!(n, 0);
    assert!(
        matches!(v, Verdict::Pause(ref why) if why.contains("refused the query (parse error)")),
        "{v:?}"
    );
}
