//! sluice: tiered, health-gated, data-safe rollouts of container images across tenant
//! workspaces on Docker hosts. See `ARCHITECTURE.md` for the map.

pub mod adopt;
pub mod agent;
pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod fault;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod notify;
pub mod reconciler;
pub mod registry;
pub mod rollout;
pub mod runtime;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod systemd;
pub mod task;
pub mod telemetry;
pub mod ui;
pub mod wake;
pub mod watcher;
