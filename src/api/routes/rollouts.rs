//! `/api/v1/releases` and `/api/v1/rollouts`: the queue of releases and the rollouts
//! that carry them through the tiers.

use axum::routing::{get, post};

use super::{Access, Kind, Operation, Param, Reply, Verb, words};
use crate::api::{releases, rollouts};
use crate::domain::ReleaseStatus;

const ID: &[Param] = &[Param::path("id", Kind::Id)];
/// What every rollout operation can refuse (`rollouts::op_error_status`).
const OP_ERRORS: &[(u16, &str)] = &[(400, "invalid_input"), (409, "invalid_state")];

/// One operation on a rollout: `POST /api/v1/rollouts/{id}/<what>`.
macro_rules! rollout_op {
    ($path:literal, $summary:literal, $req:literal, $handler:path) => {
        Operation {
            verb: Verb::Post,
            path: $path,
            summary: $summary,
            access: Access::Token,
            params: ID,
            request: Some($req),
            reply: Reply::Json(200, "Rollout"),
            also: &[],
            errors: OP_ERRORS,
            handler: || post($handler),
        }
    };
}

pub const OPERATIONS: &[Operation] = &[
    Operation {
        verb: Verb::Get,
        path: "/api/v1/releases",
        summary: "List releases, newest first",
        access: Access::Token,
        params: &[Param::query(
            "status",
            Kind::Word(words!(ReleaseStatus)),
            "only releases in this status",
        )],
        request: None,
        reply: Reply::Json(200, "ReleaseList"),
        also: &[],
        errors: &[(400, "invalid_status")],
        handler: || get(releases::list),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/releases/{id}",
        summary: "Show a release",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "Release"),
        also: &[],
        errors: &[],
        handler: || get(releases::show),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/releases/{id}/apply",
        summary: "Start (or widen) the release's rollout: canary, production, or all tiers at once with force",
        access: Access::Token,
        params: ID,
        request: Some("Apply"),
        reply: Reply::Json(200, "Rollout"),
        also: &[],
        errors: OP_ERRORS,
        handler: || post(rollouts::apply),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/releases/{id}/reject",
        summary: "Reject a queued release: no rollout will carry it",
        access: Access::Token,
        params: ID,
        request: Some("Reject"),
        reply: Reply::Json(200, "Release"),
        also: &[],
        errors: &[(409, "invalid_state")],
        handler: || post(releases::reject),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/rollouts",
        summary: "List rollouts with their targets and per-host progress",
        access: Access::Token,
        params: &[],
        request: None,
        reply: Reply::Json(200, "RolloutList"),
        also: &[],
        errors: &[],
        handler: || get(rollouts::list),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/rollouts/{id}",
        summary: "Show a rollout: state, soak, each target's status and host",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "Rollout"),
        also: &[],
        errors: &[],
        handler: || get(rollouts::show),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/rollouts/{id}/analysis",
        summary: "Every evaluation of the rollout's metric checks, newest first (at most 500)",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "AnalysisHistory"),
        also: &[],
        errors: &[],
        handler: || get(rollouts::analysis),
    },
    rollout_op!(
        "/api/v1/rollouts/{id}/promote",
        "Promote a soaking rollout to production (force: before the soak ends)",
        "Promote",
        rollouts::promote
    ),
    rollout_op!(
        "/api/v1/rollouts/{id}/pause",
        "Pause: no new target starts; running updates finish",
        "Empty",
        rollouts::pause
    ),
    rollout_op!(
        "/api/v1/rollouts/{id}/resume",
        "Resume a paused rollout where it stopped",
        "Empty",
        rollouts::resume
    ),
    rollout_op!(
        "/api/v1/rollouts/{id}/abort",
        "Abort: no new target starts; updated workspaces stay where they are",
        "Abort",
        rollouts::abort
    ),
    rollout_op!(
        "/api/v1/rollouts/{id}/rollback",
        "Roll every updated workspace back to the digest it ran before (restore_data: also its volumes)",
        "Rollback",
        rollouts::rollback
    ),
];
