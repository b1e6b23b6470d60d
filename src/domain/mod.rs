//! Domain types, parsed at the edge. Everything past the HTTP handlers, the config loader
//! and the store's row mapping holds these newtypes, never raw strings, so an invalid tier,
//! digest, image reference, workspace name or snapshot id cannot reach the core.
//!
//! Architecture invariant: this module performs no I/O.

mod change;
mod changelog;
mod digest;
mod email;
mod enums;
mod host;
mod image;
mod names;
mod schedule;
pub mod spec;
mod spec_host;
mod spec_network;
mod spec_order;
mod spec_policy;
mod spec_process;

pub use change::{
    AnalysisRecord, AuditEvent, Change, DesiredChange, NewTarget, ReleaseChange, RolloutChange,
    RolloutRowKey, TargetChange,
};
pub use changelog::{ChangelogFile, ChangelogFormat, ChangelogSection};
pub use digest::Digest;
pub use email::EmailAddress;
pub use enums::{
    AnalysisOutcome, AnalysisStage, AnalysisVerdict, ApplyTier, FleetMode, Health, HostSchedule,
    HostState, ReleaseStatus, Role, RolloutState, SnapshotState, TargetStatus, Tier, UpdateKind,
    UpdateMode, UpdatePhase, WorkspaceState,
};
pub use host::host_state;
pub use image::{DEFAULT_REGISTRY, ImageRef};
pub use names::{HostName, SnapshotId, WorkspaceName};
pub use schedule::{BatchSize, MaintenanceWindow};

/// Why a value from outside was refused. The message names what was being parsed, the
/// offending input and the expected form, e.g.
/// ``invalid tier `canery`: expected one of: canary production``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct ParseError {
    pub what: &'static str,
    pub input: String,
    pub reason: String,
}

impl ParseError {
    pub fn new(what: &'static str, input: &str, reason: &str) -> Self {
        // Keep error messages bounded whatever garbage arrives.
        let input: String = input.chars().take(80).collect();
        Self {
            what,
            input,
            reason: reason.to_owned(),
        }
    }
}
