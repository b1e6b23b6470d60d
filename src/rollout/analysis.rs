//! Metric analysis, pure: filling a check's query template, judging one sample against
//! its threshold, and deciding from a run of judgements whether the rollout goes on,
//! aborts (`failure_limit` consecutive failures) or pauses for an operator (an
//! inconclusive result, unless the check says to count it as a failure). An
//! inconclusive result — no data, an unreachable Prometheus, a refused query — is never
//! a success. The Prometheus HTTP call is the adapter `rollout::prometheus`.

use crate::config::{AnalysisCheck, Comparison, Inconclusive, QUERY_VARIABLES};

/// What one query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    Value(f64),
    /// The query matched nothing.
    NoData,
    /// Prometheus refused the query or did not answer.
    Error(String),
}

/// One evaluation's result.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass(f64),
    Fail(f64),
    Inconclusive(String),
}

/// What the rollout does after an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Abort the rollout, with the reason.
    Abort(String),
    /// Pause the rollout for an operator, with the reason.
    Pause(String),
}

/// The `{{ name }}` placeholders of `template`, in order; an error for an unclosed one.
fn placeholders(template: &str) -> Result<Vec<(usize, usize, &str)>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = template[from..].find("{{") {
        let start = from + open;
        let close = template[start..]
            .find("}}")
            .ok_or_else(|| format!("`{{{{` at byte {start} is never closed"))?;
        let end = start + close + 2;
        out.push((start, end, template[start + 2..end - 2].trim()));
        from = end;
    }
    Ok(out)
}

/// Checks a query template: not empty, and naming only known variables.
pub fn check_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    for (_, _, name) in placeholders(template)? {
        if !QUERY_VARIABLES.contains(&name) {
            return Err(format!(
                "unknown variable `{{{{ {name} }}}}`; known: {}",
                QUERY_VARIABLES.join(", ")
            ));
        }
    }
    Ok(())
}

/// The query with its variables filled in: the canary workspaces as a regular
/// expression alternation (`a|b`, for `=~`; workspace names need no escaping) and the
/// digest.
pub fn render(template: &str, canaries: &[&str], digest: &str) -> Result<String, String> {
    check_template(template)?;
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for (start, end, name) in placeholders(template)? {
        out.push_str(&template[last..start]);
        match name {
            "canary_workspaces" => out.push_str(&canaries.join("|")),
            _ => out.push_str(digest),
        }
        last = end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

/// Whether `sample` passes `comparison threshold`.
pub fn judge(comparison: Comparison, threshold: f64, sample: &Sample) -> Outcome {
    match sample {
        Sample::NoData => Outcome::Inconclusive("the query returned no data".to_owned()),
        Sample::Error(e) => Outcome::Inconclusive(e.clone()),
        Sample::Value(v) if !v.is_finite() => {
            Outcome::Inconclusive(format!("the query returned {v}, not a number"))
        }
        Sample::Value(v) => {
            let pass = match comparison {
                Comparison::Below => *v < threshold,
                Comparison::AtMost => *v <= threshold,
                Comparison::Above => *v > threshold,
                Comparison::AtLeast => *v >= threshold,
            };
            if pass {
                Outcome::Pass(*v)
            } else {
                Outcome::Fail(*v)
            }
        }
    }
}

fn symbol(c: Comparison) -> &'static str {
    match c {
        Comparison::Below => "<",
        Comparison::AtMost => "<=",
        Comparison::Above => ">",
        Comparison::AtLeast => ">=",
    }
}

/// After `outcome`, with `failures` consecutive failures before it: the new count and
/// what the rollout does.
pub fn decide(check: &AnalysisCheck, failures: u32, outcome: &Outcome) -> (u32, Verdict) {
    let want = format!("{} {}", symbol(check.comparison), check.threshold);
    let failed = |n: u32, what: String| {
        if n >= check.failure_limit {
            (
                n,
                Verdict::Abort(format!(
                    "analysis `{}`: {what}; {n} failed evaluation(s) in a row (limit {})",
                    check.name, check.failure_limit
                )),
            )
        } else {
            (n, Verdict::Continue)
        }
    };
    match outcome {
        Outcome::Pass(_) => (0, Verdict::Continue),
        Outcome::Fail(v) => failed(failures + 1, format!("{v} is not {want}")),
        Outcome::Inconclusive(why) => match check.inconclusive {
            Inconclusive::Fail => failed(failures + 1, format!("inconclusive ({why})")),
            Inconclusive::Pause => (
                failures,
                Verdict::Pause(format!(
                    "analysis `{}` is inconclusive: {why}; resume the rollout to go on",
                    check.name
                )),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
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
}
