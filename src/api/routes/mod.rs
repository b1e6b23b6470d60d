//! The one table of the HTTP surface. Every route the daemon serves is an [`Operation`]
//! here: [`super::router`] builds the axum router from it and [`super::openapi`] builds
//! the OpenAPI document from it, so a route cannot be served undocumented or documented
//! unserved. Each area's operations live in a file of their own.
//!
//! Architecture invariant: `.route(` appears in `src/` only where the router walks this
//! table (`tests/it/architecture.rs`).

mod hosts;
mod rollouts;
mod snapshots;
mod system;
mod workspaces;

use axum::routing::MethodRouter;

use super::AppState;

/// An HTTP method the API answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    /// Lowercase, as OpenAPI keys operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
    /// A `read` token may call only what does not write (see `auth::require_token`).
    pub fn writes(self) -> bool {
        !matches!(self, Verb::Get)
    }
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// An API token: `read` for GET, `admin` for everything else.
    Token,
    /// Anyone: liveness and readiness probes.
    Open,
    /// `/metrics`: open, or an API token when `[api] metrics_require_token`.
    Metrics,
    /// The registry's own bearer token (`[registries] webhook_token`), not an API token.
    RegistryToken,
}

/// Where a parameter travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Path,
    Query,
    /// A request header (`Last-Event-ID`).
    Header,
}

/// A parameter's type and bounds, as the handler parses it.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `domain::WorkspaceName`.
    WorkspaceName,
    /// `domain::HostName`.
    HostName,
    /// `domain::SnapshotId`.
    SnapshotId,
    /// A release or rollout id.
    Id,
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// One word of a closed vocabulary, taken from the domain enum that parses it.
    Word(fn() -> Vec<&'static str>),
}

#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub place: Place,
    pub kind: Kind,
    pub description: &'static str,
}

impl Param {
    pub const fn path(name: &'static str, kind: Kind) -> Param {
        Param {
            name,
            place: Place::Path,
            kind,
            description: "",
        }
    }
    pub const fn query(name: &'static str, kind: Kind, description: &'static str) -> Param {
        Param {
            name,
            place: Place::Query,
            kind,
            description,
        }
    }
    pub const fn header(name: &'static str, kind: Kind, description: &'static str) -> Param {
        Param {
            name,
            place: Place::Header,
            kind,
            description,
        }
    }
}

/// What a successful call answers.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// A JSON body of the named component schema, with this status.
    Json(u16, &'static str),
    /// Prometheus text exposition.
    PrometheusText,
    /// Server-sent events (`text/event-stream`) that go on until the client leaves.
    EventStream,
}

/// One served and documented operation.
pub struct Operation {
    pub verb: Verb,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub params: &'static [Param],
    /// The request body's component schema, if the operation takes one.
    pub request: Option<&'static str>,
    pub reply: Reply,
    /// Other answers that are not errors (status, component schema): `/readyz`'s 503.
    pub also: &'static [(u16, &'static str)],
    /// The 4xx/5xx codes particular to this operation (status, stable `error.code`). The
    /// document adds those every operation of its kind can answer (auth, body, path).
    pub errors: &'static [(u16, &'static str)],
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Every operation, in document order.
pub fn all() -> impl Iterator<Item = &'static Operation> {
    [
        workspaces::OPERATIONS,
        rollouts::OPERATIONS,
        snapshots::OPERATIONS,
        hosts::OPERATIONS,
        system::OPERATIONS,
    ]
    .into_iter()
    .flatten()
}

/// The words a domain enum parses, for [`Kind::Word`].
macro_rules! words {
    ($ty:ty) => {
        || <$ty>::ALL.iter().map(|v| v.as_str()).collect()
    };
}
pub(crate) use words;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
