//! `sluice config check` and `sluice migrate` through the real binary.

use std::process::Command;

use crate::support::sluice_bin;

fn sluice(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sluice")
}

#[test]
fn config_check_prints_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(
        &file,
        "[poll]\ninterval = \"1m\"\n\n[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"very-secret-token-123\"\n",
    )
    .unwrap();
    let out = sluice(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[("SLUICE__ROLLOUT__SOAK", "90s")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interval = \"1m\""), "{stdout}");
    assert!(
        stdout.contains("soak = \"1m 30s\""),
        "environment override applied: {stdout}"
    );
    assert!(!stdout.contains("very-secret"), "{stdout}");
    assert!(stdout.contains("<redacted>"));
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[rollout]\nsoak = \"ten minutes\"\n").unwrap();
    let out = sluice(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rollout.soak"), "{stderr}");

    let out = sluice(
        &["config", "check"],
        &[("SLUICE__API__LISTN", "127.0.0.1:1")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));

    let out = sluice(
        &["--config", "/nonexistent/sluice.toml", "config", "check"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sluice.toml"));
}

#[test]
fn migrate_creates_the_database_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = sluice(
        &["migrate"],
        &[("SLUICE__DATA__DIR", data.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(data.join("sluice.db").exists());
    let again = sluice(
        &["migrate"],
        &[("SLUICE__DATA__DIR", data.to_str().unwrap())],
    );
    assert!(again.status.success());
    assert_eq!(
        out.stdout, again.stdout,
        "second migrate reports the same schema version"
    );
}

#[test]
fn the_example_config_is_valid_and_matches_the_compiled_in_defaults() {
    let example = crate::support::repo_root().join("config/sluice.toml");
    let from_file =
        sluice::config::load(Some(&example), Vec::new()).expect("config/sluice.toml is valid");
    let defaults = sluice::config::load(None, Vec::new()).unwrap();
    assert_eq!(
        toml::to_string(&from_file).unwrap(),
        toml::to_string(&defaults).unwrap(),
        "config/sluice.toml documents the defaults; keep them in step"
    );
}

#[test]
fn agent_settings_that_cannot_work_are_refused_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("SLUICE__AGENT__HEARTBEAT_INTERVAL", "10ms")],
            "agent.heartbeat_interval",
        ),
        (
            &[("SLUICE__AGENT__HEARTBEAT_INTERVAL", "5m")],
            "agent.heartbeat_interval",
        ),
        (&[("SLUICE__AGENT__HOST", "Web_1")], "agent.host"),
        (
            &[
                ("SLUICE__AGENT__TOKEN", "slh_x"),
                ("SLUICE__AGENT__TOKEN_FILE", "/etc/sluice/agent-token"),
            ],
            "agent.token_file",
        ),
    ];
    for (env, named) in cases {
        let out = sluice(&["config", "check"], env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} accepted");
        assert!(stderr.contains(named), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // The token is a secret: `config check` never prints it.
    let out = sluice(
        &["config", "check"],
        &[
            ("SLUICE__AGENT__HOST", "web-1"),
            ("SLUICE__AGENT__TOKEN", "slh_secret_value_1234"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("host = \"web-1\""), "{stdout}");
    assert!(!stdout.contains("slh_secret_value_1234"), "{stdout}");
}

#[test]
fn leader_settings_out_of_range_are_refused_naming_the_key() {
    for (key, value, named) in [
        ("SLUICE__LEADER__LEASE_TTL", "1s", "leader.lease_ttl"),
        ("SLUICE__LEADER__LEASE_TTL", "10m", "leader.lease_ttl"),
        ("SLUICE__LEADER__INSTANCE", "a\u{7}b", "leader.instance"),
    ] {
        let out = sluice(&["config", "check"], &[(key, value)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value:?} accepted");
        assert!(stderr.contains(named), "{key}={value:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    let out = sluice(
        &["config", "check"],
        &[
            ("SLUICE__LEADER__LEASE_TTL", "3s"),
            ("SLUICE__LEADER__INSTANCE", "ctl-1"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("lease_ttl = \"3s\""), "{stdout}");
    assert!(stdout.contains("instance = \"ctl-1\""), "{stdout}");
}
