//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 document built from [`routes::all`], the
//! table the router is built from. Each operation's error responses list the stable
//! `error.code` values it can answer, as an `enum` on the `Error` schema, so a client
//! (and the contract test) can tell a documented refusal from drift. Component schemas
//! are written beside it (`schemas.rs`, `schemas_ops.rs`), their closed vocabularies
//! taken from the domain enums.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use serde_json::{Map, Value, json};

use super::extract::field_code;
use super::routes::{self, Access, Kind, Operation, Place, Reply};

/// `{"enum": [...]}` of every word a domain enum parses.
macro_rules! one_of {
    ($ty:ty) => {
        json!({ "enum": <$ty>::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>() })
    };
}

mod schemas;
mod schemas_ops;

/// Every component schema: the areas' together, the response bodies closed.
fn components() -> Value {
    let mut base = schemas::core();
    for more in [
        schemas_ops::rollout_schemas(),
        schemas_ops::snapshot_schemas(),
        schemas_ops::system_schemas(),
        schemas_ops::strategy_schema(),
    ] {
        if let (Some(all), Value::Object(more)) = (base.as_object_mut(), more) {
            all.extend(more);
        }
    }
    for (name, optional) in CLOSED {
        close(&mut base[*name], optional);
    }
    close(
        &mut base["Rollout"]["properties"]["workspaces"]["items"],
        &["status_reason"],
    );
    close(
        &mut base["Workspace"]["properties"]["spec"],
        &[
            "command",
            "health",
            "restart",
            "network",
            "networks",
            "container_name",
            "drift",
            "update_order",
            "snapshot_on_start_first",
            "entrypoint",
            "user",
            "working_dir",
            "hostname",
            "stop_signal",
            "stop_timeout",
            "read_only_rootfs",
            "resources",
            "tmpfs",
            "extra_hosts",
            "dns",
            "ulimits",
            "sysctls",
            "log",
            "binds",
            "cap_add",
            "cap_drop",
            "security_opt",
            "contacts",
        ],
    );
    close(&mut base["Workspace"]["properties"]["last_update"], &[]);
    close(&mut base["Snapshot"]["properties"]["update"], &[]);
    close(&mut base["Strategy"], &[]);
    base
}

/// Response bodies whose every field is documented: each is required unless listed
/// (serialized only when set), and no other field may appear. A field added to a view
/// but not here fails the contract test's live check.
const CLOSED: &[(&str, &[&str])] = &[
    ("Workspace", &[]),
    ("Deleted", &[]),
    ("Fleet", &[]),
    ("Instance", &[]),
    ("Lease", &[]),
    ("Event", &[]),
    ("Release", &[]),
    ("Host", &[]),
    ("AddedHost", &[]),
    ("Snapshot", &[]),
    ("Queued", &[]),
    ("UpdateNowResult", &[]),
    ("Rollout", &["no_op", "warning"]),
    ("RolloutHost", &[]),
    ("Adoption", &[]),
    ("AdoptionTable", &[]),
];

fn close(schema: &mut Value, optional: &[&str]) {
    let required: Vec<String> = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .filter(|k| !optional.contains(&k.as_str()))
        .collect();
    schema["required"] = json!(required);
    schema["additionalProperties"] = json!(false);
}

/// What each error status means, whatever the operation.
fn status_meaning(status: u16) -> &'static str {
    match status {
        400 => "invalid input; the message names the field or parameter",
        401 => "missing or unknown token",
        403 => "the token's role does not allow this",
        404 => "no such object",
        408 => "the request did not finish within [api] request_timeout",
        409 => "the object's state does not allow this",
        413 => "body larger than [api] body_limit",
        500 => "internal error; the daemon logs it",
        502 => "an upstream (the registry) did not answer",
        503 => "a dependency (Docker, the loops) is not available now; nothing was changed",
        _ => "error",
    }
}

/// Every (status, code) `op` can answer: its own plus those of its kind.
pub fn error_codes(op: &Operation, schemas: &Value) -> BTreeMap<u16, BTreeSet<&'static str>> {
    let mut out: BTreeMap<u16, BTreeSet<&'static str>> = BTreeMap::new();
    let mut add = |s: u16, c: &'static str| {
        out.entry(s).or_default().insert(c);
    };
    add(408, "timeout");
    add(500, "internal");
    match op.access {
        Access::Token => {
            add(401, "unauthorized");
            if op.verb.writes() {
                add(403, "forbidden");
            }
        }
        Access::Metrics | Access::RegistryToken => add(401, "unauthorized"),
        Access::Open => {}
    }
    if let (Some(req), Access::Token) = (op.request, op.access) {
        add(413, "body_too_large");
        add(400, "invalid_json");
        add(400, "invalid_body");
        let schema = &schemas[req];
        if schema["additionalProperties"] == json!(false) {
            add(400, "unknown_field");
        }
        if schema["required"].as_array().is_some_and(|r| !r.is_empty()) {
            add(400, "missing_field");
        }
        for field in schema["properties"].as_object().into_iter().flatten() {
            if let Some(code) = field_code(field.0) {
                add(400, code);
            }
        }
    }
    if op.access == Access::RegistryToken {
        add(413, "body_too_large");
    }
    for p in op.params {
        match (p.place, p.kind) {
            (Place::Query, _) => {
                add(400, "invalid_query");
                add(400, "unknown_field");
                add(400, "invalid_body");
            }
            (Place::Path, Kind::SnapshotId) => {
                add(400, "invalid_snapshot_id");
                add(404, "not_found");
            }
            (Place::Path, _) => add(404, "not_found"),
            (Place::Header, _) => {}
        }
    }
    for &(s, c) in op.errors {
        add(s, c);
    }
    out
}

fn param_schema(kind: Kind) -> Value {
    match kind {
        Kind::WorkspaceName => json!({ "type": "string", "minLength": 1, "maxLength": 63,
            "pattern": crate::domain::WorkspaceName::PATTERN }),
        Kind::HostName => json!({ "type": "string", "minLength": 1, "maxLength": 253,
            "pattern": crate::domain::HostName::PATTERN }),
        Kind::SnapshotId => json!({ "type": "string", "minLength": 1, "maxLength": 128,
            "pattern": crate::domain::SnapshotId::PATTERN }),
        Kind::Id => json!({ "type": "integer", "format": "int64" }),
        Kind::Bool => json!({ "type": "boolean", "default": false }),
        Kind::Int { min, max } => {
            json!({ "type": "integer", "format": "int64", "minimum": min, "maximum": max })
        }
        Kind::Word(words) => json!({ "type": "string", "enum": words() }),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn operation(op: &Operation, schemas: &Value) -> Value {
    let mut responses = Map::new();
    match op.reply {
        Reply::Json(status, schema) => {
            let desc = if status == 202 { "Accepted" } else { "OK" };
            responses.insert(
                status.to_string(),
                json!({ "description": desc,
                "content": { "application/json": { "schema": schema_ref(schema) } } }),
            );
        }
        Reply::PrometheusText => {
            responses.insert(
                "200".into(),
                json!({ "description": "Prometheus text exposition",
                "content": { "text/plain": { "schema": { "type": "string" } } } }),
            );
        }
        Reply::EventStream => {
            responses.insert(
                "200".into(),
                json!({ "description": "Server-sent events, one per audit entry: `id:` the entry's id, `event:` its action, `data:` the entry (schema Event) as JSON",
                "content": { "text/event-stream": { "schema": { "type": "string" },
                    "x-sluice-event-data": schema_ref("Event") } } }),
            );
        }
    }
    for &(status, schema) in op.also {
        responses.insert(
            status.to_string(),
            json!({ "description": status_meaning(status),
            "content": { "application/json": { "schema": schema_ref(schema) } } }),
        );
    }
    let errors = error_codes(op, schemas);
    for (status, codes) in &errors {
        let codes: Vec<&str> = codes.iter().copied().collect();
        let schema = json!({ "allOf": [schema_ref("Error"), { "type": "object", "properties": {
            "error": { "type": "object", "properties": { "code": { "enum": codes } } } } }] });
        responses.insert(
            status.to_string(),
            json!({
            "description": format!("{}; codes: {}", status_meaning(*status), codes.join(", ")),
            "content": { "application/json": { "schema": schema } } }),
        );
    }
    let area = op
        .path
        .trim_start_matches("/api/v1/")
        .split(['/', '.'])
        .find(|w| !w.is_empty())
        .unwrap_or("api");
    let tag = match area {
        "healthz" | "readyz" => "probes",
        "openapi" => "document",
        other => other,
    };
    let mut o = json!({
        "operationId": operation_id(op),
        "tags": [tag],
        "summary": op.summary,
        "responses": responses,
    });
    match op.access {
        Access::Token => {
            o["security"] = json!([{ "bearer": [] }]);
            o["x-sluice-role"] = json!(if op.verb.writes() { "admin" } else { "read" });
        }
        Access::Metrics => o["security"] = json!([{}, { "bearer": [] }]),
        Access::RegistryToken => o["security"] = json!([{ "registryToken": [] }]),
        Access::Open => o["security"] = json!([]),
    }
    if !op.params.is_empty() {
        o["parameters"] = op
            .params
            .iter()
            .map(|p| {
                let mut v = json!({ "name": p.name,
                    "in": match p.place { Place::Path => "path", Place::Query => "query",
                        Place::Header => "header" },
                    "required": p.place == Place::Path, "schema": param_schema(p.kind) });
                if !p.description.is_empty() {
                    v["description"] = json!(p.description);
                }
                v
            })
            .collect();
    }
    if let Some(req) = op.request {
        // A body whose schema requires nothing may be left out.
        let required = schemas[req]["required"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        o["requestBody"] = json!({ "required": required,
            "content": { "application/json": { "schema": schema_ref(req) } } });
    }
    o
}

/// `verb` + the path's words, e.g. `post_releases_id_apply`: stable, for client generators.
pub fn operation_id(op: &Operation) -> String {
    let words: Vec<String> = op
        .path
        .trim_start_matches("/api/v1")
        .split(['/', '.'])
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(['{', '}']).replace('-', "_"))
        .collect();
    format!("{}_{}", op.verb.as_str(), words.join("_"))
}

/// The whole document.
pub fn document() -> Value {
    let schemas = components();
    let mut paths = Map::new();
    for op in routes::all() {
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.verb.as_str()] = operation(op, &schemas);
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "sluice admin API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Every route the daemon serves. Errors are `{\"error\": {\"code\", \"message\"}}` with a stable code; each operation lists the codes it can answer." },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                    "description": "an API token from [auth]; GET needs role read, everything else admin" },
                "registryToken": { "type": "http", "scheme": "bearer",
                    "description": "the registry's own token, [registries] webhook_token" }
            }
        }
    })
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests;
