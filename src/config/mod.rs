//! Configuration: compiled-in defaults, then a TOML file (`--config` or `SLUICE_CONFIG`),
//! then environment overrides `SLUICE__SECTION__KEY`. Unknown keys and bad values are
//! refused with a message naming the key and the expected form.

mod access_types;
mod agent_types;
mod analysis_types;
mod docker;
mod email_types;
mod hosts_types;
mod leader_types;
mod load;
mod rollout_types;
mod router_types;
mod secret;
mod types;
mod webhook_url;

pub use docker::DockerTransport;
pub use load::{ConfigError, load, load_from_str};
pub use secret::Secret;
pub use types::*;
pub use webhook_url::{WebhookUrl, WebhookUrlError};
