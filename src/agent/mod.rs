//! The agent: what runs on each Docker host of a fleet spread over several hosts.
//!
//! `sluice agent` converges only the workspaces placed on its host (`[agent] host`) with
//! the same reconciler, journal and snapshots as a single daemon, and meets the control
//! plane only in the database: it heartbeats its `hosts` row ([`Heartbeat`]), wakes its
//! reconciler on the control plane's wake-ups and publishes its own results
//! ([`WakeForward`]). No tenant data leaves the host. `sluice run` runs the same parts
//! in-process for its own host (`[agent] in_process`, the single-host default).
//!
//! At start the agent proves which host it is ([`identity::check`]): the host must be
//! registered, the configured token must match the one `sluice host add` printed, and no
//! other agent may be alive for it.

mod heartbeat;
pub mod identity;
mod wake_forward;

pub use heartbeat::Heartbeat;
pub use identity::IdentityError;
pub use wake_forward::WakeForward;
