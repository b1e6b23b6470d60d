//! The component schemas of snapshots, rollouts, probes and registry notifications.

use serde_json::{Value, json};

use crate::domain::{
    AnalysisOutcome, AnalysisStage, AnalysisVerdict, ApplyTier, HostState, RolloutState,
    SnapshotState, TargetStatus, Tier, UpdateKind,
};

pub(super) fn snapshot_schemas() -> Value {
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
            "method": { "enum": ["store", "host", "archive", null] },
            "state": one_of!(SnapshotState),
            "created_at": { "type": "string", "format": "date-time" },
            "update": { "type": ["object", "null"], "properties": {
                "id": { "type": "integer" }, "kind": one_of!(UpdateKind),
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

pub(super) fn rollout_schemas() -> Value {
    let mut target_status = one_of!(TargetStatus);
    if let Some(words) = target_status["enum"].as_array_mut() {
        words.push(json!(crate::api::rollouts::WAITING_FOR_HOST));
    }
    target_status["description"] = json!(
        "waiting_for_host is derived, never stored: a pending or updating target whose host is not ready"
    );
    json!({
        "Apply": { "type": "object", "required": ["tier"], "additionalProperties": false,
            "properties": { "tier": one_of!(ApplyTier),
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
            "state": one_of!(RolloutState),
            "paused_from": { "type": ["string", "null"] },
            "applied": { "type": "array", "items": one_of!(ApplyTier) },
            "soak_started_at": { "type": ["string", "null"], "format": "date-time" },
            "soak_ends_at": { "type": ["string", "null"], "format": "date-time" },
            "finished_at": { "type": ["string", "null"], "format": "date-time" },
            "started_by": { "type": "string" },
            "strategy": { "$ref": "#/components/schemas/Strategy" },
            "workspaces": { "type": "array", "items": { "type": "object", "properties": {
                "name": { "type": "string" }, "tier": one_of!(Tier),
                "status": target_status,
                "host": { "type": "string" },
                "status_reason": { "type": "string", "description": "why the target has its status, e.g. skipped because its host stayed down past host_timeout" },
                "wave": { "type": "integer" }, "attempts": { "type": "integer" },
                "from_digest": { "type": ["string", "null"] }, "to_digest": { "type": "string" },
                "updated_at": { "type": "string", "format": "date-time" } } } },
            "counts": { "type": "object", "additionalProperties": { "type": "integer" } },
            "hosts": { "type": "array", "description": "per host of the rollout's targets; pending and updating leave out waiting_for_host, failed includes rolled_back",
                "items": { "$ref": "#/components/schemas/RolloutHost" } },
            "analysis": { "type": "array", "description": "the newest evaluation of each metric check ([[rollout.analysis]]) and stage",
                "items": { "$ref": "#/components/schemas/AnalysisResult" } },
            "no_op": { "type": "boolean" }, "warning": { "type": "string" } } },
        "AnalysisResult": { "type": "object", "properties": {
            "check": { "type": "string" },
            "stage": one_of!(AnalysisStage),
            "evaluated_at": { "type": "string", "format": "date-time" },
            "query": { "type": "string", "description": "the PromQL sent, variables filled in" },
            "value": { "type": ["number", "null"], "description": "null when the query returned nothing usable" },
            "outcome": one_of!(AnalysisOutcome),
            "detail": { "type": "string" },
            "failures": { "type": "integer", "minimum": 0, "description": "consecutive failed evaluations, this one included" },
            "verdict": one_of!(AnalysisVerdict) } },
        "AnalysisHistory": { "type": "object", "properties": {
            "rollout": { "type": "integer" },
            "total": { "type": "integer" },
            "results": { "type": "array", "items": { "$ref": "#/components/schemas/AnalysisResult" } } } },
        "RolloutHost": { "type": "object", "properties": {
            "host": { "type": "string" },
            "state": one_of!(HostState),
            "total": { "type": "integer" }, "updated": { "type": "integer" },
            "updating": { "type": "integer" }, "pending": { "type": "integer" },
            "waiting_for_host": { "type": "integer" }, "failed": { "type": "integer" },
            "skipped": { "type": "integer" } } },
        "RolloutList": { "type": "array", "items": { "$ref": "#/components/schemas/Rollout" } }
    })
}

/// `{"enum": [...]}` of the words serde writes for `all`.
fn serialized<T: serde::Serialize>(all: &[T]) -> Value {
    let words: Vec<Value> = all
        .iter()
        .map(|v| serde_json::to_value(v).unwrap_or_default())
        .collect();
    json!({ "enum": words })
}

/// The strategy a rollout was started with (`[rollout]`, per-image overrides applied).
pub(super) fn strategy_schema() -> Value {
    use crate::config::{HostTimeoutPolicy, StrategyKind};
    // Exhaustive, so a new variant stops the build here until it is listed below.
    match StrategyKind::Rolling {
        StrategyKind::Rolling | StrategyKind::OneAtATime | StrategyKind::Immediate => {}
    }
    match HostTimeoutPolicy::Wait {
        HostTimeoutPolicy::Wait | HostTimeoutPolicy::Skip => {}
    }
    let kinds = serialized(&[
        StrategyKind::Rolling,
        StrategyKind::OneAtATime,
        StrategyKind::Immediate,
    ]);
    let policies = serialized(&[HostTimeoutPolicy::Wait, HostTimeoutPolicy::Skip]);
    json!({ "Strategy": { "type": "object", "properties": {
        "kind": kinds,
        "batch": { "type": "string", "example": "25%", "description": "wave size: a count or a percentage" },
        "max_parallel": { "type": "integer", "minimum": 0 },
        "max_parallel_per_host": { "type": "integer", "minimum": 0 },
        "pause_between_waves_ms": { "type": "integer" },
        "max_failures": { "type": "integer", "minimum": 0 },
        "max_failure_ratio": { "type": "number" },
        "retries": { "type": "integer", "minimum": 0 },
        "soak_ms": { "type": "integer" },
        "auto_promote": { "type": "boolean" },
        "host_timeout_ms": { "type": "integer" },
        "on_host_timeout": policies } } })
}

/// Probes, registry notifications and bodies without fields.
pub(super) fn system_schemas() -> Value {
    json!({
        "AdoptWorkspace": { "type": "object", "required": ["container", "name"],
            "additionalProperties": false, "properties": {
                "container": { "type": "string", "description": "the running container's name or id, on this instance's Docker engine" },
                "name": { "type": "string", "description": "the workspace to make of it" },
                "image": { "type": "string", "description": "the repo:tag to follow; the reference the container was started from when absent (required when that was an image id or a digest)" },
                "update_tier": { "enum": ["canary", "production"], "default": "production" },
                "update_mode": { "enum": ["auto", "manual"], "default": "auto" },
                "maintenance_window": { "type": ["string", "null"], "example": "02:00-04:00" },
                "health": { "$ref": "#/components/schemas/Workspace/properties/spec/properties/health" },
                "dry_run": { "type": "boolean", "default": false, "description": "answer the plan; store nothing" },
                "force": { "type": "boolean", "default": false,
                    "description": "adopt although `unrepresentable` is not empty; they are named in the workspace.adopted event and lost at the next recreate" } } },
        "AdoptAllWorkspaces": { "type": "object", "additionalProperties": false,
            "description": "name `label` or `compose_project`; each container becomes the workspace named after it (lowercased, `_` and `.` as `-`)",
            "properties": {
                "label": { "type": "string", "example": "tenant=yes", "description": "KEY=VALUE or KEY" },
                "compose_project": { "type": "string", "description": "the containers of this Compose project" },
                "update_tier": { "enum": ["canary", "production"], "default": "production" },
                "update_mode": { "enum": ["auto", "manual"], "default": "auto" },
                "maintenance_window": { "type": ["string", "null"] },
                "health": { "$ref": "#/components/schemas/Workspace/properties/spec/properties/health" },
                "dry_run": { "type": "boolean", "default": false },
                "force": { "type": "boolean", "default": false } } },
        "AdoptionTable": { "type": "object", "properties": {
            "dry_run": { "type": "boolean" },
            "selector": { "type": "string", "description": "the label filter the containers were chosen by" },
            "adopted": { "type": "array", "items": { "$ref": "#/components/schemas/Adoption" } },
            "refused": { "type": "array", "items": { "type": "object", "required": ["container", "name", "code", "message"],
                "additionalProperties": false, "properties": {
                    "container": { "type": "string" }, "name": { "type": ["string", "null"] },
                    "code": { "type": "string" }, "message": { "type": "string" } } } } } },
        "Adoption": { "type": "object", "properties": {
            "dry_run": { "type": "boolean" },
            "container": { "type": "string" }, "container_id": { "type": "string" },
            "name": { "type": "string" }, "image": { "type": "string" },
            "digest": { "type": "string", "pattern": "^sha256:[0-9a-f]{64}$" },
            "spec": { "$ref": "#/components/schemas/Workspace/properties/spec" },
            "unrepresentable": { "type": "array", "items": { "type": "string" },
                "description": "settings a workspace spec cannot carry, each `Docker field: value`" },
            "workspace": { "oneOf": [ { "type": "null" }, { "$ref": "#/components/schemas/Workspace" } ] } } },
        "Empty": { "type": "object", "additionalProperties": false,
            "description": "no fields; the body may be left out" },
        "Healthz": { "type": "object", "required": ["status"], "additionalProperties": false,
            "properties": { "status": { "const": "ok" } } },
        "Readyz": { "type": "object", "required": ["store", "docker", "instance", "snapshots"],
            "additionalProperties": false, "properties": {
                "store": { "$ref": "#/components/schemas/Check" },
                "docker": { "$ref": "#/components/schemas/Check" },
                "instance": { "$ref": "#/components/schemas/Instance" },
                "snapshots": { "type": "object", "required": ["store", "access", "reflink"],
                    "additionalProperties": false,
                    "description": "how snapshots are taken here: the store, how volumes are reached, whether files are cloned (found at start)",
                    "properties": {
                        "store": { "enum": ["incremental", "archive"] },
                        "access": { "enum": ["auto", "helper", "archive"] },
                        "reflink": { "type": "boolean" } } } } },
        "Check": { "type": "object", "required": ["ok"], "additionalProperties": false,
            "properties": { "ok": { "type": "boolean" }, "error": { "type": "string" } } },
        "RegistryEnvelope": { "type": "object", "required": ["events"],
            "description": "the CNCF distribution registry's notification envelope; events other than push are ignored",
            "properties": { "events": { "type": "array", "items": { "type": "object",
                "properties": { "action": { "type": "string", "example": "push" },
                    "target": { "type": "object", "properties": {
                        "repository": { "type": "string" } } } } } } } },
        "RegistryHints": { "type": "object", "required": ["probing"], "additionalProperties": false,
            "properties": { "probing": { "type": "array", "items": { "type": "string" },
                "description": "the repositories probed now" } } }
    })
}
