//! `/api/v1/snapshots` and `POST /api/v1/workspaces/{name}/recover`.

use axum::routing::{get, post};

use super::{Access, Kind, Operation, Param, Reply, Verb};
use crate::api::snapshots;

const ID: &[Param] = &[Param::path("id", Kind::SnapshotId)];

pub const OPERATIONS: &[Operation] = &[
    Operation {
        verb: Verb::Post,
        path: "/api/v1/workspaces/{name}/recover",
        summary: "Queue the recovery of a quarantined workspace: restore, per volume, the newest complete snapshot of the update that quarantined it (or of the given snapshot's update, with that snapshot for its volume) and run the digest that ran before it",
        access: Access::Token,
        params: &[Param::path("name", Kind::WorkspaceName)],
        request: Some("Recover"),
        reply: Reply::Json(202, "Queued"),
        also: &[],
        errors: &[
            (400, "invalid_snapshot_id"),
            (400, "invalid_snapshot"),
            (409, "not_quarantined"),
            (409, "update_in_progress"),
            (409, "snapshot_not_complete"),
            (409, "volume_not_mounted"),
            (409, "no_usable_snapshot"),
            (409, "no_digest"),
        ],
        handler: || post(snapshots::recover),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/snapshots",
        summary: "List snapshots not yet deleted",
        access: Access::Token,
        params: &[Param::query(
            "workspace",
            Kind::WorkspaceName,
            "only this workspace's snapshots",
        )],
        request: None,
        reply: Reply::Json(200, "SnapshotList"),
        also: &[],
        errors: &[(400, "invalid_name")],
        handler: || get(snapshots::list),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/snapshots/{id}",
        summary: "Show a snapshot: volume, mount path, size, checksums, state, its update, protection",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "Snapshot"),
        also: &[],
        errors: &[],
        handler: || get(snapshots::show),
    },
    Operation {
        verb: Verb::Delete,
        path: "/api/v1/snapshots/{id}",
        summary: "Delete a snapshot's file and mark it deleted",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "Snapshot"),
        also: &[],
        errors: &[
            (409, "snapshot_protected"),
            (409, "snapshot_in_use"),
            (409, "snapshot_outside_dir"),
        ],
        handler: || axum::routing::delete(snapshots::delete),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/snapshots/{id}/restore",
        summary: "Queue a restore of this snapshot into its volume; the workspace then runs what it runs now",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(202, "Queued"),
        also: &[],
        errors: &[
            (409, "update_in_progress"),
            (409, "snapshot_not_complete"),
            (409, "quarantined"),
            (409, "workspace_deleted"),
            (409, "volume_not_mounted"),
            (409, "no_digest"),
        ],
        handler: || post(snapshots::restore),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/snapshots/{id}/release",
        summary: "Lift the snapshot's protection from retention (keep_last and max_age apply again)",
        access: Access::Token,
        params: ID,
        request: None,
        reply: Reply::Json(200, "Snapshot"),
        also: &[],
        errors: &[(409, "snapshot_deleted")],
        handler: || post(snapshots::release),
    },
];
