//! Metric analysis, pure: filling a check's query template, judging one sample against
//! its threshold, and deciding from a run of judgements whether the rollout goes on,
//! aborts (`failure_limit` consecutive failures) or pauses for an operator (an
//! inconclusive result, unless the check says to count it as a failure). An
//! inconclusive result — no data, an unreachable Prometheus, a refused query — is never
//! a success. The Prometheus HTTP call is the adapter `rollout::prometheus`.
//!
//! Which checks apply to a rollout now ([`stage`], [`applicable`], [`due`]), the stored
//! result of one evaluation ([`evaluate`]) and what the results mean for the controller's
//! pass ([`gate`]) are here too; the controller only runs the queries.

use chrono::{DateTime, Utc};

use crate::config::{AnalysisCheck, Comparison, Inconclusive, QUERY_VARIABLES};
use crate::domain::{
    AnalysisOutcome, AnalysisRecord, AnalysisStage, AnalysisVerdict, ImageRef, RolloutState,
};

/// What one query returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    Value(f64),
    /// The query matched nothing.
    NoData,
    /// Prometheus did not answer, or answered something unusable.
    Error(String),
    /// Prometheus answered that the query itself is wrong (it cannot parse it): a
    /// mistake in the configuration, not in the release.
    Refused(String),
}

/// One evaluation's result.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass(f64),
    Fail(f64),
    Inconclusive(String),
    /// The query is wrong: the rollout pauses whatever `inconclusive` says.
    Refused(String),
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
        Sample::Refused(e) => Outcome::Refused(e.clone()),
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
        Outcome::Refused(why) => (
            failures,
            Verdict::Pause(format!(
                "analysis `{}`: Prometheus refused the query ({why}); fix it and resume the rollout",
                check.name
            )),
        ),
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

/// When the checks of a rollout in `state` are evaluated: during the soak, and in
/// production (for checks with `after_waves`). A paused rollout evaluates nothing.
pub fn stage(state: RolloutState) -> Option<AnalysisStage> {
    match state {
        RolloutState::Soaking => Some(AnalysisStage::Soak),
        RolloutState::Production => Some(AnalysisStage::Production),
        _ => None,
    }
}

/// The checks that gate a rollout of `image` at `stage`.
pub fn applicable<'a>(
    checks: &'a [AnalysisCheck],
    image: &str,
    stage: AnalysisStage,
) -> Vec<&'a AnalysisCheck> {
    let rolled = ImageRef::parse(image).ok();
    checks
        .iter()
        .filter(|c| stage == AnalysisStage::Soak || c.after_waves)
        .filter(|c| match &c.image {
            None => true,
            Some(i) => rolled.is_some() && ImageRef::parse(i).ok() == rolled,
        })
        .collect()
}

/// Whether `check` is due: never evaluated at this stage, or `interval` since the last.
pub fn due(check: &AnalysisCheck, last: Option<&AnalysisRecord>, now: DateTime<Utc>) -> bool {
    last.is_none_or(|l| {
        chrono::Duration::from_std(check.interval)
            .map_or(true, |every| now >= l.evaluated_at + every)
    })
}

/// The stored result of one evaluation (`last`: this check's previous one at this
/// stage), and what it decides.
pub fn evaluate(
    check: &AnalysisCheck,
    stage: AnalysisStage,
    query: String,
    sample: &Sample,
    last: Option<&AnalysisRecord>,
    now: DateTime<Utc>,
) -> (AnalysisRecord, Verdict) {
    let outcome = judge(check.comparison, check.threshold, sample);
    let (failures, verdict) = decide(check, last.map_or(0, |l| l.failures), &outcome);
    let want = format!("{} {}", symbol(check.comparison), check.threshold);
    let (value, word, detail) = match &outcome {
        Outcome::Pass(v) => (Some(*v), AnalysisOutcome::Pass, format!("{v} is {want}")),
        Outcome::Fail(v) => (
            Some(*v),
            AnalysisOutcome::Fail,
            format!("{v} is not {want}"),
        ),
        Outcome::Inconclusive(why) | Outcome::Refused(why) => {
            (None, AnalysisOutcome::Inconclusive, why.clone())
        }
    };
    let record = AnalysisRecord {
        check: check.name.clone(),
        stage,
        evaluated_at: now,
        query,
        value,
        outcome: word,
        detail,
        failures,
        verdict: match verdict {
            Verdict::Continue => AnalysisVerdict::Continue,
            Verdict::Abort(_) => AnalysisVerdict::Abort,
            Verdict::Pause(_) => AnalysisVerdict::Pause,
        },
    };
    (record, verdict)
}

/// What the metric checks mean for one controller pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gate {
    /// An evaluation of this pass aborts or pauses the rollout (an abort wins).
    pub decided: Option<Verdict>,
    /// Some check applies at the rollout's stage.
    pub gated: bool,
    /// Every applicable check passed its newest evaluation: the oldest of those times.
    pub passed_since: Option<DateTime<Utc>>,
}

impl Gate {
    /// No check applies: nothing is held.
    pub fn open() -> Self {
        Self::default()
    }

    /// The soak may end in a promotion: every check's newest evaluation passed.
    pub fn allows_promotion(&self) -> bool {
        !self.gated || self.passed_since.is_some()
    }

    /// A production wave may start after the previous one finished at `finished`: every
    /// check passed an evaluation made since.
    pub fn allows_wave_after(&self, finished: DateTime<Utc>) -> bool {
        !self.gated || self.passed_since.is_some_and(|p| p >= finished)
    }
}

/// The gate of a pass: `checks` apply at the stage, `latest` holds the newest result of
/// each at that stage (this pass's included), `new` this pass's verdicts.
pub fn gate(checks: &[&AnalysisCheck], latest: &[AnalysisRecord], new: &[Verdict]) -> Gate {
    let decided = new
        .iter()
        .find(|v| matches!(v, Verdict::Abort(_)))
        .or_else(|| new.iter().find(|v| matches!(v, Verdict::Pause(_))))
        .cloned();
    let mut passed_since: Option<DateTime<Utc>> = None;
    let mut all_passed = true;
    for c in checks {
        match latest.iter().find(|r| r.check == c.name) {
            Some(r) if r.outcome == AnalysisOutcome::Pass => {
                passed_since = Some(passed_since.map_or(r.evaluated_at, |p| p.min(r.evaluated_at)));
            }
            _ => all_passed = false,
        }
    }
    Gate {
        decided,
        gated: !checks.is_empty(),
        passed_since: passed_since.filter(|_| all_passed),
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
