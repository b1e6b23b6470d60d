//! The component schemas of the OpenAPI document (JSON Schema), one function per area.
//! Closed vocabularies (tiers, modes, states) are taken from the domain enums that parse
//! them, so a new state cannot be served undocumented.

use serde_json::{Value, json};

use crate::domain::{
    FleetMode, Health, HostSchedule, HostState, ReleaseStatus, Tier, UpdateMode, WorkspaceState,
};

/// The schemas of workspaces, the fleet, events, releases and hosts.
pub(super) fn core() -> Value {
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
                    "description": "Take over a volume that already exists without a sluice owner label (or left by a deleted workspace). Without it such a volume is refused: 409 volume_exists (unlabelled) or volume_in_use (a deleted workspace's). Audited as volume_adopted; never takes another live workspace's volume." },
                "read_only": { "type": "boolean", "default": false,
                    "description": "mounted read-only; still snapshotted and restored" },
                "shared": { "type": "boolean", "default": false,
                    "description": "the application may run twice on this volume at once; required on every volume by update_order start-first" } } } },
        "ports": { "type": "array", "items": { "type": "object", "required": ["container"],
            "additionalProperties": false,
            "properties": { "container": { "type": "integer", "minimum": 1, "maximum": 65535 },
                            "host": { "type": "integer", "minimum": 0, "maximum": 65535,
                                      "description": "absent: Docker picks a free port" },
                            "host_ip": { "type": "string", "default": "127.0.0.1",
                                         "description": "an IP address; \"\" binds every address (Docker's own default)" },
                            "protocol": { "enum": ["tcp", "udp"], "default": "tcp" } } } },
        "command": { "type": ["array", "null"], "items": { "type": "string" } },
        "health": { "type": ["object", "null"], "additionalProperties": false,
            "description": "one probe: http, tcp, command or image; none: the container keeps running (and passes the image's HEALTHCHECK if it has one)",
            "properties": { "http": { "type": "object", "required": ["port"], "additionalProperties": false,
            "properties": { "port": { "type": "integer", "minimum": 1, "maximum": 65535 }, "path": { "type": "string", "default": "/health" },
                            "status": { "type": "integer" } } },
                "tcp": { "type": "object", "required": ["port"], "additionalProperties": false,
                    "properties": { "port": { "type": "integer", "minimum": 1, "maximum": 65535 } } },
                "command": { "type": "array", "minItems": 1, "items": { "type": "string" },
                    "example": ["pg_isready", "-q"],
                    "description": "run inside the container (docker exec); exit 0 passes" },
                "image": { "type": "boolean", "default": false,
                    "description": "wait for the image's own HEALTHCHECK to report healthy; an image without one fails the gate" } } },
        "restart": { "type": ["string", "null"],
            "pattern": "^(no|always|unless-stopped|on-failure(:[0-9]{1,4})?)$",
            "description": "on-failure:N retries at most N times (1-1000)" },
        "network": { "type": ["string", "null"], "description": "one network without aliases; or `networks`" },
        "networks": { "type": "array", "description": "networks with aliases, the first the container's own; not with `network`",
            "items": { "type": "object", "required": ["name"], "additionalProperties": false,
                "properties": { "name": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$" },
                    "aliases": { "type": "array", "items": { "type": "string" } } } } },
        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
        "drift": { "enum": ["correct", "report"], "default": "correct",
            "description": "a container recreated behind sluice's back with other settings is reported (event drift_detected, sluice_drift_total, workspace drift); correct also puts it back to the spec" },
        "update_order": { "enum": ["stop-first", "start-first"],
            "description": "absent: the image's [[rollout.images]] update_order, else [update] order (applied only where the spec allows start-first). start-first starts the new container beside the old, switches traffic when it is healthy, then stops the old one (no outage); refused unless every volume is shared, no host port is published and every bind is read-only" },
        "snapshot_on_start_first": { "type": "boolean", "default": false,
            "description": "start-first only: snapshot the volumes (while the old container runs) before the new one starts" }
    });
    let mut spec_props = spec_props;
    for more in [process_props(), host_props()] {
        if let (Some(all), Value::Object(more)) = (spec_props.as_object_mut(), more) {
            all.extend(more);
        }
    }
    let mut create = spec_props.clone();
    let mut patch = spec_props.clone();
    for (k, v) in [
        ("update_tier", {
            let mut v = one_of!(Tier);
            v["default"] = json!("production");
            v
        }),
        ("update_mode", {
            let mut v = one_of!(UpdateMode);
            v["default"] = json!("auto");
            v
        }),
        (
            "maintenance_window",
            json!({ "type": ["string", "null"], "example": "02:00-04:00" }),
        ),
    ] {
        create[k] = v.clone();
        patch[k] = v;
    }
    create["name"] = json!({ "type": "string" });
    spec_props["container_name"] = json!({ "type": "string",
        "description": "the container's name when not sluice-<name>: an adopted container keeps its own" });
    let mut host_state = one_of!(HostState);
    host_state["description"] =
        json!("derived at read time from the schedule and the last heartbeat ([hosts] down_after)");
    let host_name =
        json!({ "type": "string", "pattern": "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$" });
    create["host"] = json!({ "type": "string",
        "description": "the registered Docker host to run on; required when more than one is registered" });
    patch["host"] = json!({ "type": "string",
        "description": "only the workspace's own host: moving to another is refused (409 move_not_supported)" });
    create["image"] = json!({ "type": "string", "example": "127.0.0.1:5000/app:stable" });
    patch["pinned_digest"] = digest.clone();
    let base = json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message"],
            "properties": { "code": { "type": "string", "example": "invalid_tier",
                                      "description": "stable; see docs/operations.md for the list (e.g. invalid_spec, volume_in_use, volume_exists)" },
                            "message": { "type": "string" } } } } },
        "Workspace": { "type": "object", "properties": {
            "name": { "type": "string" }, "image": { "type": "string" },
            "host": host_name,
            "update_tier": one_of!(Tier),
            "update_mode": one_of!(UpdateMode),
            "maintenance_window": { "type": ["string", "null"] },
            "pinned_digest": digest, "desired_digest": digest, "actual_digest": digest,
            "state": one_of!(WorkspaceState),
            "health": one_of!(Health),
            "container_id": { "type": ["string", "null"] },
            "drift": { "type": "array", "items": { "type": "string" },
                "description": "spec fields the running container differs in (it was recreated behind sluice's back); empty when none" },
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
        "Fleet": { "type": "object", "properties": { "mode": one_of!(FleetMode),
            "workspaces": { "type": "integer" },
            "by_state": { "type": "object", "additionalProperties": { "type": "integer" } },
            "instance": { "$ref": "#/components/schemas/Instance" },
            "leader": { "oneOf": [ { "type": "null" }, { "$ref": "#/components/schemas/Lease" } ] } } },
        "Instance": { "type": "object", "description": "the instance that answered",
            "properties": { "name": { "type": "string" },
                "role": { "enum": ["leader", "starting", "standby"] },
                "epoch": { "type": ["integer", "null"] },
                "engine": { "enum": ["sqlite", "postgres"] } } },
        "Lease": { "type": "object", "description": "who leads (PostgreSQL); times in Unix ms, database clock",
            "properties": { "holder": { "type": "string" }, "epoch": { "type": "integer" },
                "renewed_at": { "type": ["integer", "null"] }, "expires_at": { "type": "integer" },
                "read_at": { "type": "integer" } } },
        "SetFleet": { "type": "object", "required": ["mode"], "additionalProperties": false,
            "properties": { "mode": one_of!(FleetMode) } },
        "Event": { "type": "object", "properties": { "id": { "type": "integer" },
            "at": { "type": "string", "format": "date-time" }, "actor": { "type": "string" },
            "subject": { "type": "string" }, "action": { "type": "string" }, "detail": {} } },
        "EventList": { "type": "array", "items": { "$ref": "#/components/schemas/Event" } },
        "Release": { "type": "object", "properties": { "id": { "type": "integer" },
            "image": { "type": "string" }, "digest": { "type": "string" },
            "detected_at": { "type": "string", "format": "date-time" },
            "changelog": { "type": ["string", "null"],
                "description": "the image's label/annotation org.opencontainers.image.description" },
            "changelog_file": { "oneOf": [ { "type": "null" }, { "$ref": "#/components/schemas/ChangelogFile" } ],
                "description": "[images] changelog_file read from inside the image; null until read, or when the image holds none" },
            "status": one_of!(ReleaseStatus),
            "status_reason": { "type": ["string", "null"] },
            "updated_at": { "type": "string", "format": "date-time" },
            "version": { "type": "integer" } } },
        "ChangelogFile": { "type": "object",
            "required": ["path", "format", "sections", "truncated", "size"],
            "properties": { "path": { "type": "string", "description": "the file read, after symlinks" },
                "format": { "enum": ["structured", "text"] },
                "version": { "type": ["string", "null"] }, "date": { "type": ["string", "null"] },
                "sections": { "type": "array", "items": { "type": "object",
                    "required": ["title", "items"],
                    "properties": { "title": { "type": "string" },
                        "items": { "type": "array", "items": { "type": "string" } } } } },
                "text": { "type": ["string", "null"], "description": "format text: the content" },
                "truncated": { "type": "boolean", "description": "over [images] changelog_file_max_bytes: only the beginning is kept" },
                "size": { "type": "integer", "description": "the file's size in bytes" },
                "note": { "type": ["string", "null"] } } },
        "ReleaseList": { "type": "array", "items": { "$ref": "#/components/schemas/Release" } },
        "Reject": { "type": "object", "additionalProperties": false,
            "properties": { "reason": { "type": ["string", "null"] } } },
        "Host": { "type": "object", "properties": {
            "name": host_name,
            "state": host_state,
            "schedule": one_of!(HostSchedule),
            "labels": { "type": "object", "additionalProperties": { "type": "string" } },
            "capacity": { "type": ["integer", "null"] },
            "heartbeat_at": { "type": ["string", "null"], "format": "date-time" },
            "heartbeat_age_seconds": { "type": ["number", "null"] },
            "agent_instance": { "type": ["string", "null"] },
            "agent_version": { "type": ["string", "null"] },
            "workspaces": { "type": "integer" },
            "updating": { "type": "integer", "description": "open updates on the host right now" } } },
        "HostList": { "type": "array", "items": { "$ref": "#/components/schemas/Host" } },
        "AddHost": { "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": host_name,
                "labels": { "type": "object", "additionalProperties": { "type": "string" } } } },
        "AddedHost": { "type": "object", "properties": {
            "host": { "$ref": "#/components/schemas/Host" },
            "token": { "type": "string", "description": "the agent's token, shown once; only its sha256 is stored" } } },
        "Object": { "type": "object" }
    });
    base
}

/// The host-facing fields of a spec (`domain::spec_host`); vocabularies from the checker.
fn host_props() -> Value {
    use crate::domain::spec::{LOG_DRIVERS, PRIVILEGED_CAPS, ULIMITS};
    let words = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    json!({
        "tmpfs": { "type": "object", "additionalProperties": { "type": "string" },
            "example": { "/run": "size=64m,mode=1777" },
            "description": "tmpfs mounts: absolute path -> options (not a volume's mount)" },
        "extra_hosts": { "type": "array", "items": { "type": "string", "example": "db.internal:10.0.0.5" },
            "description": "/etc/hosts entries HOST:IP (or HOST:host-gateway)" },
        "dns": { "type": "array", "items": { "type": "string" }, "description": "DNS server IP addresses" },
        "ulimits": { "type": "array", "items": { "type": "object", "required": ["name", "soft", "hard"],
            "additionalProperties": false, "properties": {
                "name": { "enum": ULIMITS }, "soft": { "type": "integer", "minimum": -1 },
                "hard": { "type": "integer", "minimum": -1 } } } },
        "sysctls": { "type": "object", "additionalProperties": { "type": "string" },
            "description": "the container's own sysctls only: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*" },
        "log": { "type": ["object", "null"], "required": ["driver"], "additionalProperties": false,
            "properties": { "driver": { "enum": LOG_DRIVERS }, "options": words } },
        "binds": { "type": "array", "description": "host paths mounted in: strictly below one of [workspaces] allowed_bind_prefixes (empty: none), never / or the Docker socket; not snapshotted",
            "items": { "type": "object", "required": ["source", "target"], "additionalProperties": false,
                "properties": { "source": { "type": "string", "pattern": "^/" },
                    "target": { "type": "string", "pattern": "^/." },
                    "read_only": { "type": "boolean", "default": false } } } },
        "cap_add": { "type": "array", "items": { "type": "string", "pattern": "^(CAP_)?[A-Z_]+$" },
            "description": format!("privileged-equivalents ({}) need [workspaces] allow_privileged", PRIVILEGED_CAPS.join(", ")) },
        "cap_drop": { "type": "array", "items": { "type": "string", "pattern": "^(CAP_)?[A-Z_]+$" } },
        "security_opt": { "type": "array", "items": { "type": "string" },
            "description": "no-new-privileges[:true|false], apparmor=PROFILE, label=TYPE:VALUE; apparmor/seccomp/systempaths=unconfined and label=disable need [workspaces] allow_privileged" },
        "contacts": { "type": "array", "maxItems": 20, "uniqueItems": true,
            "items": { "type": "string", "pattern": "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$" },
            "description": "the tenant's mail addresses ([email]): told when an update is available (manual mode) and when the workspace was updated" }
    })
}

/// The process and limit fields of a spec (`domain::spec_process`).
fn process_props() -> Value {
    let int = |min: i64, desc: &str| json!({ "type": ["integer", "null"], "minimum": min, "description": desc });
    json!({
        "entrypoint": { "type": ["array", "null"], "minItems": 1, "items": { "type": "string" },
            "description": "overrides the image's entrypoint" },
        "user": { "type": ["string", "null"], "pattern": "^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$",
            "description": "NAME, UID, NAME:GROUP or UID:GID; the image's user when absent" },
        "working_dir": { "type": ["string", "null"], "pattern": "^/" },
        "hostname": { "type": ["string", "null"], "pattern": "^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$" },
        "stop_signal": { "type": ["string", "null"], "example": "SIGQUIT",
            "description": "the signal `docker stop` sends: a name (SIG...) or a number 1-64" },
        "stop_timeout": { "type": ["integer", "null"], "minimum": 0, "maximum": 3600,
            "description": "seconds an update's stop waits before Docker kills the process; [update] stop_timeout when absent" },
        "read_only_rootfs": { "type": "boolean", "default": false,
            "description": "the root filesystem is read-only; volumes stay writable" },
        "resources": { "type": ["object", "null"], "additionalProperties": false,
            "description": "limits Docker enforces; in a PATCH the object replaces the stored one and null removes them",
            "properties": {
                "memory": int(crate::domain::spec::MIN_MEMORY, "bytes"),
                "memory_swap": { "type": ["integer", "null"], "minimum": -1,
                    "description": "memory plus swap in bytes (at least memory), -1 unlimited" },
                "cpu_quota": int(1000, "microseconds of CPU time per cpu_period"),
                "cpu_period": { "type": ["integer", "null"], "minimum": 1000, "maximum": 1_000_000 },
                "cpu_shares": { "type": ["integer", "null"], "minimum": 2, "maximum": 262_144 },
                "cpuset_cpus": { "type": ["string", "null"], "example": "0-1,3" },
                "pids_limit": int(1, "most processes in the container"),
                "nano_cpus": int(10_000_000, "CPUs in billionths (docker run --cpus 0.5 = 500000000); not with cpu_quota or cpu_period") } }
    })
}
