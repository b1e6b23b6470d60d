//! Rollouts: which workspace gets which digest when.
//!
//! - [`machine`]: the pure state machine (no I/O, no clock).
//! - [`plan`]: pure planning of one controller pass from a snapshot; [`hosts`] the pure
//!   rules for rollouts across Docker hosts (waiting for a host, per-host limits).
//! - [`decide`]: pure decisions (the controller's pass, the operator operations) as
//!   lists of `domain::Change`s, applied by one store call ([`deps::RolloutDeps::commit`]).
//! - [`ops`]: the operator operations (apply, promote, pause, ...): read, decide, commit.
//! - [`controller`]: the level-triggered pass ([`controller::Controller::tick`]): read,
//!   decide, commit; run by the task driver through [`controller_task`]. It writes desired
//!   digests and wakes the reconciler; it never talks to Docker and never calls [`ops`].

pub mod analysis;
pub mod controller;
pub mod controller_task;
pub mod decide;
pub mod deps;
pub mod hosts;
pub mod machine;
pub mod metrics;
pub mod ops;
pub mod plan;
pub mod prometheus;
pub mod record;
pub mod smoke;
pub mod strategy;
pub mod targets;
