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
                .with_list_parse_key("registries.insecure")
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

fn validate(s: &Settings) -> Result<(), ConfigError> {
    if s.data.dir.as_os_str().is_empty() {
        return Err(value("data.dir", "must not be empty"));
    }
    let url = s.database_url();
    if !url.starts_with("sqlite:") {
        return Err(value(
            "database.url",
            "expected `sqlite://PATH` (PostgreSQL is not supported yet)",
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load() {
        let s = load_from_str("", env(&[])).unwrap();
        assert_eq!(s.api.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(s.poll.interval, Duration::from_secs(300));
        assert_eq!(s.database_url(), "sqlite://sluice-data/sluice.db");
        assert!(s.snapshots.require_snapshot);
    }

    /// systemd SIGKILLs the daemon when `TimeoutStopSec` runs out: it must leave the
    /// running updates their whole `shutdown_grace` plus time to close down.
    #[test]
    fn the_unit_gives_the_shutdown_grace_room_to_run_out() {
        let unit = include_str!("../../deploy/sluice.service");
        let deploy = include_str!("../../deploy/sluice.toml");
        let stop = unit
            .lines()
            .find_map(|l| l.trim().strip_prefix("TimeoutStopSec="))
            .expect("deploy/sluice.service sets TimeoutStopSec");
        let stop = humantime::parse_duration(stop.trim()).expect("a duration");
        let grace = load_from_str(deploy, env(&[]))
            .expect("deploy/sluice.toml loads")
            .update
            .shutdown_grace;
        assert!(
            stop >= grace + Duration::from_secs(20),
            "TimeoutStopSec {stop:?} leaves no room after shutdown_grace {grace:?}"
        );
    }

    #[test]
    fn file_and_environment_combine() {
        let file = "[poll]\ninterval = \"1m\"\njitter = 0.2\n[api]\nlisten = \"127.0.0.1:9000\"\n";
        let s = load_from_str(
            file,
            env(&[
                ("SLUICE__POLL__INTERVAL", "30s"),
                ("SLUICE__ROLLOUT__MAX_PARALLEL", "2"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.poll.interval,
            Duration::from_secs(30),
            "environment beats file"
        );
        assert!(
            (s.poll.jitter - 0.2).abs() < f64::EPSILON,
            "file beats default"
        );
        assert_eq!(s.api.listen.port(), 9000);
        assert_eq!(s.rollout.max_parallel, 2);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load_from_str("[poll]\nintervall = \"1m\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("intervall"), "{e}");
        let e = load_from_str("", env(&[("SLUICE__POLL__INTERVALL", "1m")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("intervall"), "{e}");
        let e = load_from_str("[nosuch]\nx = 1\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nosuch"), "{e}");
    }

    #[test]
    fn bad_durations_are_named() {
        let e = load_from_str("[poll]\ninterval = \"5 parsecs\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("poll.interval") || e.contains("interval"), "{e}");
        assert!(
            e.contains("unknown time unit") || e.contains("duration"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (file, key) in [
            ("[rollout]\nbatch = \"0%\"\n", "rollout.batch"),
            ("[rollout]\nwindow = \"25:00-01:00\"\n", "rollout.window"),
            ("[poll]\njitter = 2.0\n", "poll.jitter"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            (
                "[registries]\nwebhook_token = \"short\"\n",
                "registries.webhook_token",
            ),
            ("[poll]\nrequest_timeout = \"0s\"\n", "poll.request_timeout"),
            (
                "[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"short\"\n",
                "auth.tokens[0].token",
            ),
        ] {
            let e = load_from_str(file, env(&[])).unwrap_err().to_string();
            assert!(e.contains(key), "{file}: {e}");
        }
        let e = load_from_str(
            "[[auth.tokens]]\nname = \"ops\"\nrole = \"root\"\ntoken = \"0123456789abcdef\"\n",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("role"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_when_printed() {
        let s = load_from_str(
            "[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"supersecret-token-value\"\n",
            env(&[]),
        )
        .unwrap();
        let shown = toml::to_string(&s).unwrap();
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.auth.tokens[0].token.expose(), "supersecret-token-value");
    }

    #[test]
    fn webhook_urls_are_checked_and_redacted_when_printed() {
        let file =
            "[[notifications.webhooks]]\nurl = \"https://hooks.example/T0/B0/hook-s3cr3t\"\n";
        let s = load_from_str(file, env(&[])).unwrap();
        let shown = toml::to_string(&s).unwrap();
        assert!(!shown.contains("hook-s3cr3t"), "{shown}");
        assert!(
            shown.contains("https://hooks.example/<redacted>"),
            "{shown}"
        );
        assert!(!format!("{s:?}").contains("hook-s3cr3t"));
        assert_eq!(
            s.notifications.webhooks[0].url.expose().as_str(),
            "https://hooks.example/T0/B0/hook-s3cr3t"
        );
        let file = "[[notifications.webhooks]]\nurl = \"http://ok.example/a\"\n\
                    [[notifications.webhooks]]\nurl = \"file:///etc/hook-s3cr3t\"\n";
        let e = load_from_str(file, env(&[])).unwrap_err().to_string();
        assert!(e.contains("notifications.webhooks[1].url"), "{e}");
        assert!(e.contains("http"), "says what is expected: {e}");
        assert!(!e.contains("hook-s3cr3t"), "{e}");
    }

    #[test]
    fn keys_below_array_items_are_dotted() {
        assert_eq!(
            dotted_keys("bad value for key `a.b[1]url` in x"),
            "bad value for key `a.b[1].url` in x"
        );
        assert_eq!(dotted_keys("for key `a[0][1]`"), "for key `a[0][1]`");
        assert_eq!(dotted_keys("no key here]x"), "no key here]x");
    }

    #[test]
    fn docker_tls_files_must_be_readable_and_are_named() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.path().join(f), "-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        let file = |key_file: &str| {
            format!(
                "[docker]\nhost = \"tcp://10.0.0.5:2376\"\ntls_ca = \"{0}/ca.pem\"\n\
                 tls_cert = \"{0}/cert.pem\"\ntls_key = \"{0}/{key_file}\"\n",
                dir.path().display()
            )
        };
        let ok = load_from_str(&file("key.pem"), env(&[])).unwrap();
        assert_eq!(ok.docker.tls_key, Some(dir.path().join("key.pem")));
        let e = load_from_str(&file("missing.pem"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker.tls_key"), "{e}");
        assert!(e.contains("missing.pem"), "names the file: {e}");

        let e = load_from_str("[docker]\nhost = \"tcp://10.0.0.5:2375\"\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker.tls_ca"), "{e}");
        assert!(e.contains("allow_insecure_tcp"), "says how to opt out: {e}");
        let insecure = load_from_str(
            "",
            env(&[
                ("SLUICE__DOCKER__HOST", "tcp://10.0.0.5:2375"),
                ("SLUICE__DOCKER__ALLOW_INSECURE_TCP", "true"),
            ]),
        )
        .unwrap();
        assert!(insecure.docker.allow_insecure_tcp);
    }

    #[test]
    fn rollout_overrides_and_smoke_checks_name_their_key() {
        let ok = load_from_str(
            "[[rollout.images]]\nimage = \"reg.example/app:stable\"\nstrategy = \"one-at-a-time\"\n\
             [[rollout.smoke]]\nimage = \"reg.example/app:stable\"\npath = \"/version\"\nbody_contains = \"v2\"\n",
            env(&[]),
        )
        .unwrap();
        assert_eq!(ok.rollout.smoke[0].status, 200);
        for (file, key) in [
            (
                "[[rollout.images]]\nimage = \"a/b:c\"\nbatch = \"0\"\n",
                "rollout.images[0].batch",
            ),
            (
                "[[rollout.images]]\nimage = \"a/b:c\"\nmax_parallel = 0\n",
                "rollout.images[0].max_parallel",
            ),
            (
                "[[rollout.smoke]]\nimage = \"a/b:c\"\npath = \"version\"\n",
                "rollout.smoke[0].path",
            ),
            (
                "[[rollout.smoke]]\nimage = \"a/b:c\"\npath = \"/v\"\nstatus = 999\n",
                "rollout.smoke[0].status",
            ),
        ] {
            let e = load_from_str(file, env(&[])).unwrap_err().to_string();
            assert!(e.contains(key), "{file}: {e}");
        }
    }
}
