//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from [`OPERATIONS`], the
//! same table the black-box test walks to prove every documented operation is served
//! (and requires a token). Schemas are written beside it (`openapi_schemas.rs`), in JSON
//! Schema.

use axum::Json;
use serde_json::{Value, json};

use super::openapi_schemas::schemas;

/// One documented operation: method, path, summary, role needed, request schema, response
/// schema, success status, and the error codes particular to it (status, code).
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub role: &'static str,
    pub request: Option<&'static str>,
    pub response: &'static str,
    pub status: u16,
    pub codes: &'static [(u16, &'static str)],
}

macro_rules! op {
    ($m:literal, $p:literal, $role:literal, $req:expr, $resp:literal, $s:literal) => {
        op!($m, $p, $role, $req, $resp, $s, 200, &[])
    };
    ($m:literal, $p:literal, $role:literal, $req:expr, $resp:literal, $s:literal, $status:literal, $codes:expr) => {
        Operation {
            method: $m,
            path: $p,
            summary: $s,
            role: $role,
            request: $req,
            response: $resp,
            status: $status,
            codes: $codes,
        }
    };
}

pub const OPERATIONS: &[Operation] = &[
    op!(
        "get",
        "/api/v1/workspaces",
        "read",
        None,
        "WorkspaceList",
        "List workspaces"
    ),
    op!(
        "post",
        "/api/v1/workspaces",
        "admin",
        Some("CreateWorkspace"),
        "Workspace",
        "Create a workspace"
    ),
    op!(
        "get",
        "/api/v1/workspaces/{name}",
        "read",
        None,
        "Workspace",
        "Show a workspace"
    ),
    op!(
        "patch",
        "/api/v1/workspaces/{name}",
        "admin",
        Some("PatchWorkspace"),
        "Workspace",
        "Change tier, mode, pin, window or container spec"
    ),
    op!(
        "delete",
        "/api/v1/workspaces/{name}",
        "admin",
        None,
        "Deleted",
        "Remove a workspace's container (with ?purge=true also the volumes it owns)"
    ),
    op!(
        "post",
        "/api/v1/workspaces/{name}/recover",
        "admin",
        Some("Recover"),
        "Queued",
        "Queue the recovery of a quarantined workspace: restore, per volume, the newest complete snapshot of the update that quarantined it (or of the given snapshot's update, with that snapshot for its volume) and run the digest that ran before it",
        202,
        &[
            (400, "invalid_snapshot_id"),
            (400, "invalid_snapshot"),
            (409, "not_quarantined"),
            (409, "update_in_progress"),
            (409, "snapshot_not_complete"),
            (409, "volume_not_mounted"),
            (409, "no_usable_snapshot"),
            (409, "no_digest"),
        ]
    ),
    op!(
        "get",
        "/api/v1/snapshots",
        "read",
        None,
        "SnapshotList",
        "List snapshots not yet deleted (?workspace=NAME)",
        200,
        &[(400, "invalid_name")]
    ),
    op!(
        "get",
        "/api/v1/snapshots/{id}",
        "read",
        None,
        "Snapshot",
        "Show a snapshot: volume, mount path, size, checksums, state, its update, protection",
        200,
        &[(400, "invalid_snapshot_id")]
    ),
    op!(
        "post",
        "/api/v1/snapshots/{id}/restore",
        "admin",
        None,
        "Queued",
        "Queue a restore of this snapshot into its volume; the workspace then runs what it runs now",
        202,
        &[
            (400, "invalid_snapshot_id"),
            (409, "update_in_progress"),
            (409, "snapshot_not_complete"),
            (409, "quarantined"),
            (409, "workspace_deleted"),
            (409, "volume_not_mounted"),
            (409, "no_digest"),
        ]
    ),
    op!(
        "post",
        "/api/v1/snapshots/{id}/release",
        "admin",
        None,
        "Snapshot",
        "Lift the snapshot's protection from retention (keep_last and max_age apply again)",
        200,
        &[(400, "invalid_snapshot_id"), (409, "snapshot_deleted")]
    ),
    op!(
        "delete",
        "/api/v1/snapshots/{id}",
        "admin",
        None,
        "Snapshot",
        "Delete a snapshot's file and mark it deleted",
        200,
        &[
            (400, "invalid_snapshot_id"),
            (409, "snapshot_protected"),
            (409, "snapshot_in_use"),
            (409, "snapshot_outside_dir"),
        ]
    ),
    op!(
        "get",
        "/api/v1/fleet",
        "read",
        None,
        "Fleet",
        "Fleet mode and workspace counts"
    ),
    op!(
        "put",
        "/api/v1/fleet",
        "admin",
        Some("SetFleet"),
        "Fleet",
        "Set the fleet mode"
    ),
    op!(
        "get",
        "/api/v1/hosts",
        "read",
        None,
        "HostList",
        "Docker hosts: derived state, heartbeat age, workspaces, agent version"
    ),
    op!(
        "post",
        "/api/v1/hosts",
        "admin",
        Some("AddHost"),
        "AddedHost",
        "Register a host for an agent; answers the agent's token once",
        201,
        &[(409, "already_exists")]
    ),
    op!(
        "get",
        "/api/v1/hosts/{name}",
        "read",
        None,
        "Host",
        "Show a host"
    ),
    op!(
        "post",
        "/api/v1/hosts/{name}/cordon",
        "admin",
        None,
        "Host",
        "No new update starts on the host; running ones finish"
    ),
    op!(
        "post",
        "/api/v1/hosts/{name}/drain",
        "admin",
        None,
        "Host",
        "Cordon the host; `updating` tells when its running updates have finished"
    ),
    op!(
        "post",
        "/api/v1/hosts/{name}/uncordon",
        "admin",
        None,
        "Host",
        "Let updates start on the host again"
    ),
    op!(
        "get",
        "/api/v1/events",
        "read",
        None,
        "EventList",
        "Audit trail (?since=<id>&limit=<n>)"
    ),
    op!(
        "get",
        "/api/v1/openapi.json",
        "read",
        None,
        "Object",
        "This document"
    ),
];

fn error_response(desc: &str) -> Value {
    json!({ "description": desc, "content": { "application/json": {
        "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let mut o = json!({
            "summary": op.summary,
            "security": [{ "bearer": [] }],
            "x-sluice-role": op.role,
            "responses": {
                op.status.to_string(): { "description": if op.status == 202 { "Accepted" } else { "OK" },
                    "content": { "application/json": {
                    "schema": { "$ref": format!("#/components/schemas/{}", op.response) } } } },
                "400": error_response("invalid input; the message names the field"),
                "401": error_response("missing or unknown token"),
                "403": error_response("the token's role does not allow this"),
                "404": error_response("no such object"),
                "409": error_response("state conflict (e.g. volume_in_use, volume_exists)"),
                "413": error_response("body larger than api.body_limit"),
            }
        });
        if op.path.contains("{name}") {
            o["parameters"] = json!([{ "name": "name", "in": "path", "required": true,
                                       "schema": { "type": "string" } }]);
        }
        if op.path.contains("{id}") {
            // Snapshot ids are strings; every other id is a number.
            let schema = if op.path.starts_with("/api/v1/snapshots/") {
                json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$" })
            } else {
                json!({ "type": "integer" })
            };
            o["parameters"] =
                json!([{ "name": "id", "in": "path", "required": true, "schema": schema }]);
        }
        if let Some(req) = op.request {
            // A body whose schema requires nothing may be left out.
            let required = schemas()[req]["required"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            o["requestBody"] = json!({ "required": required, "content": { "application/json": {
                "schema": { "$ref": format!("#/components/schemas/{req}") } } } });
        }
        for status in [400u16, 409] {
            let codes: Vec<&str> = op
                .codes
                .iter()
                .filter(|(s, _)| *s == status)
                .map(|(_, c)| *c)
                .collect();
            if !codes.is_empty() {
                let key = status.to_string();
                let desc = o["responses"][&key]["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                o["responses"][&key]["description"] =
                    json!(format!("{desc}; codes: {}", codes.join(", ")));
            }
        }
        if !op.codes.is_empty() {
            o["x-sluice-error-codes"] = json!(
                op.codes
                    .iter()
                    .map(|(s, c)| json!({ "status": s, "code": c }))
                    .collect::<Vec<_>>()
            );
        }
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "sluice admin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
