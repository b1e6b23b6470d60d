//! `decide` reports what the machine refuses instead of dropping it.

use chrono::TimeZone;

use super::*;
use crate::config::RolloutSettings;
use crate::domain::{
    AnalysisOutcome, AnalysisStage, Health, HostName, Tier, UpdatePhase, WorkspaceState,
};
use crate::rollout::analysis::Verdict;
use crate::rollout::hosts::HostStates;
use crate::rollout::machine::RolloutStatus;
use crate::rollout::record::RolloutData;
use crate::rollout::strategy::Strategy;

fn d(n: u8) -> Digest {
    Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn rollout(state: RolloutState, strategy: Strategy) -> Rollout {
    Rollout {
        id: 7,
        release_id: 3,
        image: "img".to_owned(),
        digest: d(2),
        release_status: ReleaseStatus::RollingOut,
        status: RolloutStatus {
            state,
            ..RolloutStatus::pending()
        },
        data: RolloutData::default(),
        strategy,
        started_by: "ops".to_owned(),
        version: 4,
    }
}

fn canary(id: i64, status: TargetStatus, latest: Option<(i64, UpdatePhase)>) -> TargetRow {
    TargetRow {
        workspace_id: id,
        name: format!("c{id}"),
        tier: Tier::Canary,
        wave: 0,
        status,
        attempts: 1,
        from_digest: Some(d(1)),
        to_digest: d(2),
        update_id: None,
        updated_at: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        latest_update: latest,
        actual_digest: Some(d(2)),
        desired_digest: Some(d(2)),
        pinned_digest: None,
        health: Health::Healthy,
        ws_state: WorkspaceState::Running,
        maintenance_window: None,
        restore_snapshot_of_update_id: None,
        host: HostName::local(),
        status_reason: None,
    }
}

#[test]
fn an_illegal_transition_is_reported_and_the_target_changes_still_apply() {
    let mut s = Strategy::for_image(&RolloutSettings::default(), "img");
    s.soak_ms = -1; // the machine refuses a negative soak
    let r = rollout(RolloutState::Canary, s);
    let rows = [canary(
        1,
        TargetStatus::Updating,
        Some((9, UpdatePhase::Succeeded)),
    )];
    let smoke = HashMap::new();
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let view = PassView {
        rollout: &r,
        targets: &rows,
        settled: &[],
        smoke: &smoke,
        hold: false,
        hosts: &HostStates::default(),
        promotion: None,
        gate: &Gate::open(),
        analysis: &[],
    };
    let out = decide(&view, now).unwrap();
    assert!(out.illegal.is_some(), "{out:?}");
    assert_eq!(out.transition, None);
    assert!(out.changes.iter().any(|c| matches!(
        c,
        Change::Target(TargetChange {
            workspace_id: 1,
            status: Some(TargetStatus::Updated),
            update_id: Some(9),
            ..
        })
    )));
    // The rollout row is written as it was, with its version check.
    assert!(matches!(
        &out.changes[0],
        Change::Rollout(r) if r.state == RolloutState::Canary
            && r.key == crate::domain::RolloutRowKey::Existing { id: 7, expected_version: 4 }
    ));
}

#[test]
fn nothing_to_do_is_no_change() {
    let s = Strategy::for_image(&RolloutSettings::default(), "img");
    let r = rollout(RolloutState::Completed, s);
    let smoke = HashMap::new();
    let view = PassView {
        rollout: &r,
        targets: &[],
        settled: &[],
        smoke: &smoke,
        hold: false,
        hosts: &HostStates::default(),
        promotion: None,
        gate: &Gate::open(),
        analysis: &[],
    };
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let out = decide(&view, now).unwrap();
    assert!(out.changes.is_empty() && out.transition.is_none());
}

fn record(verdict: AnalysisVerdict, at: chrono::DateTime<chrono::Utc>) -> AnalysisRecord {
    AnalysisRecord {
        check: "errors".into(),
        stage: AnalysisStage::Soak,
        evaluated_at: at,
        query: "sum(errors)".into(),
        value: Some(0.4),
        outcome: AnalysisOutcome::Fail,
        detail: "0.4 is not < 0.05".into(),
        failures: 2,
        verdict,
    }
}

#[test]
fn a_metric_check_that_aborts_stores_its_result_audits_it_and_blocks_the_release() {
    let mut s = Strategy::for_image(&RolloutSettings::default(), "img");
    s.auto_promote = true;
    let r = rollout(RolloutState::Soaking, s);
    let smoke = HashMap::new();
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let results = [record(AnalysisVerdict::Abort, now)];
    let gate = Gate {
        decided: Some(Verdict::Abort(
            "analysis `errors`: 0.4 is not < 0.05".into(),
        )),
        gated: true,
        passed_since: None,
    };
    let view = PassView {
        rollout: &r,
        targets: &[],
        settled: &[],
        smoke: &smoke,
        hold: false,
        hosts: &HostStates::default(),
        promotion: None,
        gate: &gate,
        analysis: &results,
    };
    let out = decide(&view, now).unwrap();
    assert_eq!(
        out.transition,
        Some((RolloutState::Soaking, RolloutState::Aborted))
    );
    assert!(out.changes.contains(&Change::Analysis(results[0].clone())));
    assert!(out.changes.iter().any(|c| matches!(
        c,
        Change::Audit(e) if e.action == "rollout.analysis" && e.detail["verdict"] == "abort"
    )));
    assert!(out.changes.iter().any(|c| matches!(
        c,
        Change::Release(r) if r.status == crate::domain::ReleaseStatus::Blocked
            && r.reason.contains("0.4 is not < 0.05")
    )));
}

#[test]
fn a_result_that_decides_nothing_is_still_stored() {
    let r = rollout(
        RolloutState::Soaking,
        Strategy::for_image(&RolloutSettings::default(), "img"),
    );
    let smoke = HashMap::new();
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap();
    let results = [record(AnalysisVerdict::Continue, now)];
    let gate = Gate {
        gated: true,
        ..Gate::open()
    };
    let view = PassView {
        rollout: &r,
        targets: &[],
        settled: &[],
        smoke: &smoke,
        hold: false,
        hosts: &HostStates::default(),
        promotion: None,
        gate: &gate,
        analysis: &results,
    };
    let out = decide(&view, now).unwrap();
    assert_eq!(out.transition, None);
    assert!(out.changes.contains(&Change::Analysis(results[0].clone())));
    assert!(
        !out.changes
            .iter()
            .any(|c| matches!(c, Change::Audit(e) if e.action == "rollout.analysis")),
        "only a deciding result is audited"
    );
}

#[test]
fn deciding_performs_no_io_and_reads_no_clock() {
    for (file, src) in [
        ("decide/mod.rs", include_str!("mod.rs")),
        ("decide/operator.rs", include_str!("operator.rs")),
        ("decide/views.rs", include_str!("views.rs")),
    ] {
        for banned in [
            "tokio::",
            "sqlx::",
            "bollard::",
            "Utc::now",
            "SystemTime",
            "Instant::",
            "clock::",
            ".await",
        ] {
            assert!(!src.contains(banned), "{file} uses `{banned}`");
        }
    }
}
