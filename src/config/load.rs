//! Loading and validating the layered configuration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};

use super::Settings;
use crate::domain::{BatchSize, ImageRef, MaintenanceWindow};

/// Why a configuration was refused. Every message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: key `{key}`: {message}")]
    Value { key: String, message: String },
}

fn value(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Loads defaults, then the file at `path` (if any), then `SLUICE__…` variables from `env`.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.to_owned(),
            source,
        })?,
        None => String::new(),
    };
    load_from_str(&text, env)
}

/// Like [`load`] with the file's text given directly.
pub fn load_from_str(
    toml_text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("SLUICE__"))
        .collect();
    let built = Config::builder()
        .add_source(File::from_str(toml_text, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("SLUICE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("images.allow")
                .with_list_parse_key("workspaces.allowed_bind_prefixes")
                .with_list_parse_key("registries.insecure")
                .with_list_parse_key("router.reload")
                .source(Some(env)),
        )
        .build()
        .map_err(|e| ConfigError::Parse(dotted_keys(&e.to_string())))?;
    let settings: Settings = built
        .try_deserialize()
        .map_err(|e| ConfigError::Parse(dotted_keys(&e.to_string())))?;
    validate(&settings)?;
    Ok(settings)
}

/// The `config` crate names a key below an array item `webhooks[1]url`; operators (and
/// the keys this module names itself) write `webhooks[1].url`.
fn dotted_keys(message: &str) -> String {
    const KEY: &str = "for key `";
    let Some(start) = message.find(KEY).map(|i| i + KEY.len()) else {
        return message.to_owned();
    };
    let end = message[start..]
        .find('`')
        .map_or(message.len(), |i| start + i);
    let mut key = String::with_capacity(end - start + 4);
    let mut after_index = false;
    for c in message[start..end].chars() {
        if after_index && (c.is_ascii_alphanumeric() || c == '_') {
            key.push('.');
        }
        after_index = c == ']';
        key.push(c);
    }
    format!("{}{key}{}", &message[..start], &message[end..])
}

/// A fleet name: short, and printable in one log line as it is.
fn valid_fleet(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn validate(s: &Settings) -> Result<(), ConfigError> {
    if s.data.dir.as_os_str().is_empty() {
        return Err(value("data.dir", "must not be empty"));
    }
    let url = s.database_url();
    if crate::store::Engine::of_url(&url).is_err() {
        return Err(value(
            "database.url",
            "expected `sqlite://PATH` or `postgres://USER@HOST/DATABASE`",
        ));
    }
    if let Some(fleet) = &s.database.fleet
        && !fleet.is_empty()
        && !valid_fleet(fleet)
    {
        return Err(value(
            "database.fleet",
            "expected 1 to 64 letters, digits, `.`, `_` or `-`",
        ));
    }
    if let Err((key, message)) = s.leader.validate() {
        return Err(value(key, &message));
    }
    if let Err((key, message)) = s.agent.validate() {
        return Err(value(key, &message));
    }
    if let Err((key, message)) = s.router.validate() {
        return Err(value(key, &message));
    }
    if let Err((key, message)) = s.images.validate() {
        return Err(value(key, &message));
    }
    if let Err((key, message)) = s.hosts.validate() {
        return Err(value(key, &message));
    }
    // The built-in host of `sluice run` heartbeats against this process's own down_after.
    if s.agent.in_process && s.agent.heartbeat_interval * 3 > s.hosts.down_after {
        return Err(value(
            "agent.heartbeat_interval",
            "must be at most a third of hosts.down_after, or a live host would be taken for down",
        ));
    }
    if s.database.max_connections == 0 {
        return Err(value("database.max_connections", "must be at least 1"));
    }
    s.docker.validate()?;
    if s.api.body_limit < 1024 {
        return Err(value("api.body_limit", "must be at least 1024 bytes"));
    }
    if tracing_subscriber::EnvFilter::try_new(&s.log.level).is_err() {
        return Err(value(
            "log.level",
            "expected a tracing filter such as `info` or `sluice=debug`",
        ));
    }
    if !(0.0..=1.0).contains(&s.poll.jitter) {
        return Err(value("poll.jitter", "expected a fraction from 0.0 to 1.0"));
    }
    if s.poll.interval.is_zero() {
        return Err(value("poll.interval", "must be longer than 0s"));
    }
    if s.poll.backoff_max < s.poll.backoff_initial {
        return Err(value(
            "poll.backoff_max",
            "must not be shorter than poll.backoff_initial",
        ));
    }
    for (i, p) in s.poll.images.iter().enumerate() {
        ImageRef::parse_tracked(&p.image)
            .map_err(|e| value(&format!("poll.images[{i}].image"), e.to_string()))?;
        if p.interval.is_zero() {
            return Err(value(
                &format!("poll.images[{i}].interval"),
                "must be longer than 0s",
            ));
        }
    }
    if let Some(w) = &s.rollout.window
        && !w.is_empty()
    {
        MaintenanceWindow::parse(w).map_err(|e| value("rollout.window", e.to_string()))?;
    }
    BatchSize::parse(&s.rollout.batch).map_err(|e| value("rollout.batch", e.to_string()))?;
    if s.rollout.max_parallel == 0 {
        return Err(value("rollout.max_parallel", "must be at least 1"));
    }
    if s.rollout.max_parallel_per_host == 0 {
        return Err(value("rollout.max_parallel_per_host", "must be at least 1"));
    }
    if s.rollout.host_timeout.is_zero() {
        return Err(value("rollout.host_timeout", "must be longer than 0s"));
    }
    if !(0.0..=1.0).contains(&s.rollout.max_failure_ratio) {
        return Err(value(
            "rollout.max_failure_ratio",
            "expected a fraction from 0.0 to 1.0",
        ));
    }
    if s.rollout.tick_interval.is_zero() {
        return Err(value("rollout.tick_interval", "must be longer than 0s"));
    }
    for (i, o) in s.rollout.images.iter().enumerate() {
        ImageRef::parse_tracked(&o.image)
            .map_err(|e| value(&format!("rollout.images[{i}].image"), e.to_string()))?;
        if let Some(b) = &o.batch {
            BatchSize::parse(b)
                .map_err(|e| value(&format!("rollout.images[{i}].batch"), e.to_string()))?;
        }
        if o.max_parallel == Some(0) {
            return Err(value(
                &format!("rollout.images[{i}].max_parallel"),
                "must be at least 1",
            ));
        }
        if o.max_parallel_per_host == Some(0) {
            return Err(value(
                &format!("rollout.images[{i}].max_parallel_per_host"),
                "must be at least 1",
            ));
        }
    }
    for (i, c) in s.rollout.smoke.iter().enumerate() {
        ImageRef::parse_tracked(&c.image)
            .map_err(|e| value(&format!("rollout.smoke[{i}].image"), e.to_string()))?;
        if !c.path.starts_with('/') {
            return Err(value(
                &format!("rollout.smoke[{i}].path"),
                "must start with `/`",
            ));
        }
        if !(100..=599).contains(&c.status) {
            return Err(value(
                &format!("rollout.smoke[{i}].status"),
                "expected an HTTP status from 100 to 599",
            ));
        }
    }
    super::analysis_types::validate(&s.rollout.prometheus, &s.rollout.analysis)?;
    if s.update.max_parallel == 0 {
        return Err(value("update.max_parallel", "must be at least 1"));
    }
    if s.update.healthy_deadline <= s.update.min_healthy_time {
        return Err(value(
            "update.healthy_deadline",
            "must be longer than update.min_healthy_time",
        ));
    }
    if s.snapshots.keep_last == 0 {
        return Err(value(
            "snapshots.keep_last",
            "must be at least 1 (the last snapshot is the rollback)",
        ));
    }
    for (i, r) in s.registries.insecure.iter().enumerate() {
        if r.is_empty() || r.contains('/') {
            return Err(value(
                &format!("registries.insecure[{i}]"),
                "expected `host` or `host:port`",
            ));
        }
    }
    for (i, a) in s.registries.auth.iter().enumerate() {
        if a.registry.is_empty() || a.registry.contains('/') {
            return Err(value(
                &format!("registries.auth[{i}].registry"),
                "expected `host` or `host:port`",
            ));
        }
    }
    if s.poll.request_timeout.is_zero() {
        return Err(value("poll.request_timeout", "must be longer than 0s"));
    }
    if let Some(t) = &s.registries.webhook_token
        && t.expose().len() < 16
    {
        return Err(value(
            "registries.webhook_token",
            "must be at least 16 characters",
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in s.auth.tokens.iter().enumerate() {
        if t.name.is_empty()
            || !t
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(value(
                &format!("auth.tokens[{i}].name"),
                "expected `A-Za-z0-9-_.`, non-empty",
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(value(
                &format!("auth.tokens[{i}].name"),
                "token names must be unique",
            ));
        }
        if t.token.expose().len() < 16 {
            return Err(value(
                &format!("auth.tokens[{i}].token"),
                "must be at least 16 characters",
            ));
        }
    }
    for (i, p) in s.workspaces.allowed_bind_prefixes.iter().enumerate() {
        let clean = p.is_absolute()
            && p.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::RootDir | std::path::Component::Normal(_)
                )
            });
        if !clean || p.as_os_str() == "/" {
            return Err(value(
                &format!("workspaces.allowed_bind_prefixes[{i}]"),
                "must be an absolute path other than `/`, without `.` or `..`",
            ));
        }
    }
    for (i, a) in s.images.allow.iter().enumerate() {
        if a.is_empty() {
            return Err(value(&format!("images.allow[{i}]"), "must not be empty"));
        }
    }
    if s.notifications.queue_capacity == 0 {
        return Err(value("notifications.queue_capacity", "must be at least 1"));
    }
    if s.notifications.timeout.is_zero() || s.notifications.poll_interval.is_zero() {
        return Err(value(
            "notifications.timeout",
            "notifications.timeout and notifications.poll_interval must be longer than 0s",
        ));
    }
    if let Some((key, reason)) = s.email.problem() {
        return Err(value(key, reason));
    }
    if let Err(reason) = s.email.ca_certificates() {
        return Err(value("email.ca_file", reason));
    }
    for (i, w) in s.notifications.webhooks.iter().enumerate() {
        if let Some(f) = &w.format
            && f != "json"
            && f != "slack"
        {
            return Err(value(
                &format!("notifications.webhooks[{i}].format"),
                "expected `json` or `slack`",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
