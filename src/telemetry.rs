//! Logging: `tracing` with a human-readable or JSON formatter on stderr (which journald
//! captures under systemd). The level comes from `RUST_LOG` when set, else `[log] level`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber writing to `sink`. Call once, from the binary.
/// Returns an error string if a subscriber was already installed.
pub fn init<W>(log: &LogSettings, sink: W) -> Result<(), String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(v).map_err(|e| format!("invalid RUST_LOG: {e}"))?
        }
        _ => EnvFilter::try_new(&log.level).map_err(|e| format!("invalid log.level: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink);
    let result = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}
