//! `/api/v1/hosts`: the Docker hosts agents run on, and their lifecycle.

use axum::routing::{get, post};

use super::{Access, Kind, Operation, Param, Reply, Verb};
use crate::api::hosts;

const NAME: &[Param] = &[Param::path("name", Kind::HostName)];

/// One lifecycle step: `POST /api/v1/hosts/{name}/<what>`.
macro_rules! lifecycle {
    ($path:literal, $summary:literal, $handler:path) => {
        Operation {
            verb: Verb::Post,
            path: $path,
            summary: $summary,
            access: Access::Token,
            params: NAME,
            request: None,
            reply: Reply::Json(200, "Host"),
            also: &[],
            errors: &[],
            handler: || post($handler),
        }
    };
}

pub const OPERATIONS: &[Operation] = &[
    Operation {
        verb: Verb::Get,
        path: "/api/v1/hosts",
        summary: "Docker hosts: derived state, heartbeat age, workspaces, agent version",
        access: Access::Token,
        params: &[],
        request: None,
        reply: Reply::Json(200, "HostList"),
        also: &[],
        errors: &[],
        handler: || get(hosts::list),
    },
    Operation {
        verb: Verb::Post,
        path: "/api/v1/hosts",
        summary: "Register a host for an agent; answers the agent's token once",
        access: Access::Token,
        params: &[],
        request: Some("AddHost"),
        reply: Reply::Json(201, "AddedHost"),
        also: &[],
        errors: &[(400, "invalid_labels"), (409, "already_exists")],
        handler: || post(hosts::add),
    },
    Operation {
        verb: Verb::Get,
        path: "/api/v1/hosts/{name}",
        summary: "Show a host",
        access: Access::Token,
        params: NAME,
        request: None,
        reply: Reply::Json(200, "Host"),
        also: &[],
        errors: &[],
        handler: || get(hosts::show),
    },
    lifecycle!(
        "/api/v1/hosts/{name}/cordon",
        "No new update starts on the host; running ones finish",
        hosts::cordon
    ),
    lifecycle!(
        "/api/v1/hosts/{name}/drain",
        "Cordon the host; `updating` tells when its running updates have finished",
        hosts::drain
    ),
    lifecycle!(
        "/api/v1/hosts/{name}/uncordon",
        "Let updates start on the host again",
        hosts::uncordon
    ),
];
