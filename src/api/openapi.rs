//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document generated from [`OPERATIONS`], the
//! same table the black-box test walks to prove every documented operation is served
//! (and requires a token). Schemas are written next to it, in JSON Schema.

use axum::Json;
use serde_json::{Value, json};

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

fn schemas() -> Value {
    let digest = json!({ "type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{64}$" });
    let spec_props = json!({
        "env": { "type": "object", "additionalProperties": { "type": "string" } },
        "volumes": { "type": "array", "items": { "type": "object", "required": ["name", "mount"],
            "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                    "description": "Docker volume name. A volume labelled for another workspace (sluice.workspace_id), or named in another live workspace's spec, is refused: 409 volume_in_use." },
                "mount": { "type": "string", "example": "/data",
                    "description": "Absolute path inside the container; not `/`, no `.` or `..` components, no `:` or `,`." },
                "adopt": { "type": "boolean", "default": false,
                    "description": "Take over a volume that already exists without a sluice owner label (or left by a deleted workspace). Without it such a volume is refused: 409 volume_exists (unlabelled) or volume_in_use (a deleted workspace's). Audited as volume_adopted; never takes another live workspace's volume." } } } },
        "ports": { "type": "array", "items": { "type": "object", "required": ["container"],
            "properties": { "container": { "type": "integer" }, "host": { "type": "integer" },
                            "host_ip": { "type": "string" } } } },
        "command": { "type": ["array", "null"], "items": { "type": "string" } },
        "health": { "type": ["object", "null"], "properties": { "http": { "type": "object",
            "properties": { "port": { "type": "integer" }, "path": { "type": "string" },
                            "status": { "type": "integer" } } } } },
        "restart": { "enum": ["no", "always", "unless-stopped", "on-failure", null] },
        "network": { "type": ["string", "null"] },
        "labels": { "type": "object", "additionalProperties": { "type": "string" } }
    });
    let mut create = spec_props.clone();
    let mut patch = spec_props.clone();
    for (k, v) in [
        (
            "update_tier",
            json!({ "enum": ["canary", "production"], "default": "production" }),
        ),
        (
            "update_mode",
            json!({ "enum": ["auto", "manual"], "default": "auto" }),
        ),
        (
            "maintenance_window",
            json!({ "type": ["string", "null"], "example": "02:00-04:00" }),
        ),
    ] {
        create[k] = v.clone();
        patch[k] = v;
    }
    create["name"] = json!({ "type": "string" });
    create["image"] = json!({ "type": "string", "example": "127.0.0.1:5000/app:stable" });
    patch["pinned_digest"] = digest.clone();
    let mut base = json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"],
            "properties": { "code": { "type": "string", "example": "invalid_tier",
                                      "description": "stable; see docs/operations.md for the list (e.g. invalid_spec, volume_in_use, volume_exists)" },
                            "message": { "type": "string" } } } } },
        "Workspace": { "type": "object", "properties": {
            "name": { "type": "string" }, "image": { "type": "string" },
            "update_tier": { "enum": ["canary", "production"] },
            "update_mode": { "enum": ["auto", "manual"] },
            "maintenance_window": { "type": ["string", "null"] },
            "pinned_digest": digest, "desired_digest": digest, "actual_digest": digest,
            "state": { "enum": ["creating", "running", "updating", "rolling_back", "quarantined", "stopped", "missing"] },
            "health": { "enum": ["healthy", "unhealthy", "unknown"] },
            "container_id": { "type": ["string", "null"] },
            "last_update": { "type": ["object", "null"], "properties": {
                "id": { "type": "integer" }, "result": { "type": "string" },
                "from_digest": digest, "to_digest": { "type": "string" },
                "rollout_id": { "type": ["integer", "null"] },
                "at": { "type": "string", "format": "date-time" },
                "error": { "type": ["string", "null"] } } },
            "spec": { "type": "object", "properties": spec_props },
            "created_at": { "type": "string", "format": "date-time" },
            "updated_at": { "type": "string", "format": "date-time" },
            "version": { "type": "integer" } } },
        "WorkspaceList": { "type": "array", "items": { "$ref": "#/components/schemas/Workspace" } },
        "CreateWorkspace": { "type": "object", "required": ["name", "image"],
            "additionalProperties": false, "properties": create },
        "PatchWorkspace": { "type": "object", "additionalProperties": false, "properties": patch },
        "Deleted": { "type": "object", "properties": { "name": { "type": "string" },
            "container_removed": { "type": "boolean" },
            "volumes_removed": { "type": "array", "items": { "type": "string" } },
            "volumes_kept": { "type": "array", "description": "With ?purge=true: volumes of the spec the workspace does not own, left in place.",
                "items": { "type": "object", "properties": {
                    "name": { "type": "string" },
                    "reason": { "enum": ["other_workspace", "not_owned"] },
                    "owner_id": { "type": "integer", "description": "the workspace id the volume is labelled for (other_workspace)" },
                    "message": { "type": "string" } } } } } },
        "Fleet": { "type": "object", "properties": { "mode": { "enum": ["auto", "manual", "paused"] },
            "workspaces": { "type": "integer" },
            "by_state": { "type": "object", "additionalProperties": { "type": "integer" } } } },
        "SetFleet": { "type": "object", "required": ["mode"], "additionalProperties": false,
            "properties": { "mode": { "enum": ["auto", "manual", "paused"] } } },
        "Event": { "type": "object", "properties": { "id": { "type": "integer" },
            "at": { "type": "string", "format": "date-time" }, "actor": { "type": "string" },
            "subject": { "type": "string" }, "action": { "type": "string" }, "detail": {} } },
        "EventList": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
        "Release": { "type": "object", "properties": { "id": { "type": "integer" },
            "image": { "type": "string" }, "digest": { "type": "string" },
            "detected_at": { "type": "string", "format": "date-time" },
            "changelog": { "type": ["string", "null"] },
            "status": { "enum": ["queued", "approved", "rolling_out", "completed", "superseded", "rejected", "blocked"] },
            "status_reason": { "type": ["string", "null"] },
            "updated_at": { "type": "string", "format": "date-time" },
            "version": { "type": "integer" } } },
        "ReleaseList": { "type": "array", "items": { "$ref": "#/components/schemas/Release" } },
        "Reject": { "type": "object", "additionalProperties": false,
            "properties": { "reason": { "type": ["string", "null"] } } },
        "Object": { "type": "object" }
    });
    for more in [rollout_schemas(), snapshot_schemas()] {
        if let (Some(all), Value::Object(more)) = (base.as_object_mut(), more) {
            all.extend(more);
        }
    }
    base
}

fn snapshot_schemas() -> Value {
    let digest = json!({ "type": ["string", "null"], "pattern": "^sha256:[0-9a-f]{64}$" });
    let id = json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$" });
    json!({
        "Snapshot": { "type": "object", "properties": {
            "id": id, "workspace": { "type": "string" }, "volume": { "type": "string" },
            "mount_path": { "type": ["string", "null"] }, "path": { "type": "string" },
            "size_bytes": { "type": "integer" },
            "sha256": { "type": ["string", "null"] },
            "manifest_sha256": { "type": ["string", "null"] },
            "entries": { "type": ["integer", "null"] },
            "method": { "enum": ["host", "archive", null] },
            "state": { "enum": ["writing", "complete", "failed", "deleted"] },
            "created_at": { "type": "string", "format": "date-time" },
            "update": { "type": ["object", "null"], "properties": {
                "id": { "type": "integer" }, "kind": { "enum": ["update", "restore", "recover"] },
                "phase": { "type": "string" }, "from_digest": digest, "to_digest": digest } },
            "protected": { "type": "boolean",
                "description": "retention keeps it until an operator releases it" },
            "reason": { "type": ["string", "null"], "example": "workspace quarantined" },
            "in_use": { "type": "boolean",
                "description": "an unfinished update took it or is to restore it" },
            "released_at": { "type": ["string", "null"], "format": "date-time" },
            "released_by": { "type": ["string", "null"] } } },
        "SnapshotList": { "type": "array", "items": { "$ref": "#/components/schemas/Snapshot" } },
        "Recover": { "type": "object", "additionalProperties": false,
            "properties": { "snapshot": { "type": ["string", "null"],
                "pattern": "^[A-Za-z0-9._-]{1,128}$" } } },
        "Queued": { "type": "object", "properties": {
            "update_id": { "type": "integer" }, "workspace": { "type": "string" },
            "kind": { "enum": ["restore", "recover"] }, "phase": { "const": "pulling" },
            "from_digest": digest, "to_digest": { "type": "string" },
            "snapshots": { "type": "array", "items": id },
            "warning": { "type": "string" } } }
    })
}

fn rollout_schemas() -> Value {
    json!({
        "Apply": { "type": "object", "required": ["tier"], "additionalProperties": false,
            "properties": { "tier": { "enum": ["canary", "production", "all"] },
                            "force": { "type": "boolean", "default": false } } },
        "Promote": { "type": "object", "additionalProperties": false,
            "properties": { "force": { "type": "boolean", "default": false } } },
        "Abort": { "type": "object", "additionalProperties": false,
            "properties": { "reason": { "type": ["string", "null"] } } },
        "Rollback": { "type": "object", "additionalProperties": false,
            "properties": { "restore_data": { "type": "boolean", "default": false } } },
        "UpdateNow": { "type": "object", "additionalProperties": false,
            "properties": { "digest": { "type": ["string", "null"] } } },
        "UpdateNowResult": { "type": "object", "properties": { "name": { "type": "string" },
            "desired_digest": { "type": "string" } } },
        "Rollout": { "type": "object", "properties": {
            "id": { "type": "integer" }, "release_id": { "type": "integer" },
            "image": { "type": "string" }, "digest": { "type": "string" },
            "state": { "enum": ["pending", "canary", "soaking", "production", "completed", "paused", "aborted", "rolled_back"] },
            "paused_from": { "type": ["string", "null"] },
            "applied": { "type": "array", "items": { "enum": ["canary", "production", "all"] } },
            "soak_started_at": { "type": ["string", "null"], "format": "date-time" },
            "soak_ends_at": { "type": ["string", "null"], "format": "date-time" },
            "finished_at": { "type": ["string", "null"], "format": "date-time" },
            "started_by": { "type": "string" }, "strategy": { "type": "object" },
            "workspaces": { "type": "array", "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "tier": { "enum": ["canary", "production"] },
                "status": { "enum": ["pending", "updating", "updated", "failed", "rolled_back", "skipped"] },
                "wave": { "type": "integer" }, "attempts": { "type": "integer" },
                "from_digest": { "type": ["string", "null"] }, "to_digest": { "type": "string" },
                "updated_at": { "type": "string", "format": "date-time" } } } },
            "counts": { "type": "object", "additionalProperties": { "type": "integer" } },
            "no_op": { "type": "boolean" }, "warning": { "type": "string" } } },
        "RolloutList": { "type": "array", "items": { "$ref": "#/components/schemas/Rollout" } }
    })
}

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
