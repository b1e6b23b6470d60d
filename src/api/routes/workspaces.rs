//! `/api/v1/workspaces`: list, create, show, change, delete, update now.

use axum::routing::{delete, get, patch, post};

use super::{Access, Kind, Operation, Param, Reply, Verb};
use crate::api::{rollouts, workspaces};

const NAME: &[Param] = &[Param::path("name", Kind::WorkspaceName)];

pub const OPERATIONS: &[Operation] = &[
    Operation {
        verb: Verb::Get,
        path: "/api/v1/workspaces",
        summary: "List workspaces",
        access: Access::Token,
        params: &[],
        request: None,
        reply: Reply::Json(200, "WorkspaceList"),
        also: &[],
        errors: &[],
        handler: || get(workspaces::list),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/workspaces",
        summary: "Create a workspace; it starts on the digest its tag points at now",
        access: Access::Token,
        params: &[],
        request: Some("CreateWorkspace"),
        reply: Reply::Json(201, "Workspace"),
        also: &[],
        errors: &[
            (400, "image_not_allowed"),
            (400, "image_not_found"),
            (400, "unknown_host"),
            (400, "host_required"),
            (409, "already_exists"),
            (409, "host_full"),
            (409, "volume_in_use"),
            (409, "volume_exists"),
            (502, "registry_unavailable"),
            (503, "docker_unavailable"),
            (503, "docker_error"),
        ],
        handler: || post(workspaces::create),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/workspaces/{name}",
        summary: "Show a workspace",
        access: Access::Token,
        params: NAME,
        request: None,
        reply: Reply::Json(200, "Workspace"),
        also: &[],
        errors: &[],
        handler: || get(workspaces::show),
    },
    Operation {
        verb: Verb::Patch,
        path: "/api/v1/workspaces/{name}",
        summary: "Change tier, mode, pin, window or container spec",
        access: Access::Token,
        params: NAME,
        request: Some("PatchWorkspace"),
        reply: Reply::Json(200, "Workspace"),
        also: &[],
        errors: &[
            (409, "conflict"),
            (409, "move_not_supported"),
            (409, "volume_in_use"),
            (409, "volume_exists"),
            (503, "docker_unavailable"),
            (503, "docker_error"),
        ],
        handler: || patch(workspaces::patch),
    },
    Operation {
        verb: Verb::Delete,
        path: "/api/v1/workspaces/{name}",
        summary: "Remove a workspace's container (with ?purge=true also the volumes it owns)",
        access: Access::Token,
        params: &[
            Param::path("name", Kind::WorkspaceName),
            Param::query(
                "purge",
                Kind::Bool,
                "also remove the volumes the workspace owns; others are kept and listed",
            ),
        ],
        request: None,
        reply: Reply::Json(200, "Deleted"),
        also: &[],
        errors: &[
            (409, "update_in_progress"),
            (503, "docker_unavailable"),
            (503, "retirement_pending"),
            (503, "docker_error"),
        ],
        handler: || delete(workspaces::delete),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/workspaces/{name}/update",
        summary: "Update one workspace now to the given digest (or its image's newest release), outside any rollout",
        access: Access::Token,
        params: NAME,
        request: Some("UpdateNow"),
        reply: Reply::Json(200, "UpdateNowResult"),
        also: &[],
        errors: &[(400, "invalid_input"), (409, "invalid_state")],
        handler: || post(rollouts::update_now),
    },
];
