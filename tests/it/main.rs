//! Integration tests against real parts: SQLite files, the `sluice` binary, the Docker
//! engine and the local registry brought up by `tests/env/up.sh`. One test binary (faster
//! to link); each module is one concern.

mod support;

mod adopt;
mod analysis_controller;
mod analysis_e2e;
mod api;
mod architecture;
mod cli;
mod config_cli;
mod crash_matrix;
mod daemon;
mod database_input;
mod docker_restart;
mod docker_tls;
mod drift;
mod first_start;
mod health_probes;
mod hosts_api;
mod leadership;
mod leadership_failover;
mod migrate_to;
mod multi_host;
mod notify;
mod notify_secrets;
mod openapi_contract;
mod prometheus_analysis;
mod quickstart;
mod reconciler;
mod recreate_fidelity;
mod registry;
mod registry_events;
mod registry_proc;
mod registry_protocol;
mod retirement;
mod rollout_api;
mod rollout_controller;
mod rollout_e2e;
mod rollout_harness;
mod rollout_restore;
mod runtime_contract;
mod second_engine;
mod shutdown;
mod smoke_http;
mod snapshot_api;
mod snapshot_cli;
mod snapshot_fidelity;
mod snapshot_fixture;
mod snapshot_store;
mod start_first;
mod start_first_load;
mod store;
mod systemd;
mod testenv;
mod volume_ownership;
