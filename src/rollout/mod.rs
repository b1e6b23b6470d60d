//! Rollouts: which workspace gets which digest when.
//!
//! - [`machine`]: the pure state machine (no I/O, no clock).
//! - [`plan`]: pure planning of one controller pass from a snapshot.
//! - [`ops`]: the operator operations (apply, promote, pause, ...), each one transaction.
//! - [`controller`]: the level-triggered pass ([`controller::Controller::tick`]), run by
//!   the task driver through [`controller_task`]. It writes desired digests and wakes the
//!   reconciler; it never talks to Docker.

pub mod controller;
pub mod controller_task;
pub mod machine;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod record;
pub mod smoke;
pub mod strategy;
pub mod targets;
