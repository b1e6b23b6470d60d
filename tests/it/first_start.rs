//! A first start on the defaults: with no token configured, `sluice run` generates an
//! admin token into `<data dir>/admin.token` (mode 0600), accepts it, and reuses it at
//! every later start; the CLI on the same host finds it. Configured tokens switch it off.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::api::ADMIN_TOKEN;
use crate::support::{Daemon, sluice_bin};

/// `sluice` as a client of `d`, with the data dir `data` and no `SLUICE_TOKEN`.
fn cli(d: &Daemon, data: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    cli_as(None, d, data, extra_env, args)
}

/// The same run as another user (`setpriv`), when `as_user` is set.
fn cli_as(
    as_user: Option<u32>,
    d: &Daemon,
    data: &Path,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let mut cmd = match as_user {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(sluice_bin());
            c
        }
        None => Command::new(sluice_bin()),
    };
    cmd.arg("--server")
        .arg(d.url(""))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .env("SLUICE__DATA__DIR", data);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sluice")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn status(d: &Daemon, token: Option<&str>) -> StatusCode {
    let mut req = reqwest::Client::new().get(d.url("/api/v1/workspaces"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("the API answers").status()
}

fn logs(d: &Daemon) -> String {
    d.logs.lock().unwrap().join("\n")
}

/// A config file with one admin token, `ADMIN_TOKEN`.
fn config_with_token(dir: &Path) -> String {
    let p = dir.join("sluice.toml");
    std::fs::write(
        &p,
        format!("[[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n"),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn a_first_start_generates_a_private_admin_token_that_the_cli_finds_and_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin.token");
    let d = Daemon::start(dir.path(), &[]);

    let mode = std::fs::metadata(&file)
        .expect("admin.token created")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(token.len() >= 32, "a long random token");
    let log = logs(&d);
    assert!(
        log.contains(&file.display().to_string()) && log.contains("generated an admin token"),
        "the log names the file: {log}"
    );
    assert!(!log.contains(&token), "the log never shows the token");

    assert_eq!(status(&d, Some(&token)).await, StatusCode::OK);
    assert_eq!(status(&d, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&d, Some("sla_not-the-token-0123456789")).await,
        StatusCode::UNAUTHORIZED
    );

    // The CLI on this host, SLUICE_TOKEN unset: the token from the data dir, as admin.
    let o = cli(&d, dir.path(), &[], &["fleet", "mode", "paused"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&d, dir.path(), &[], &["--json", "events"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\"actor\": \"admin\""), "{}", text(&o));
    assert!(!text(&o).contains(&token));
    // Another data dir (no file there): no token, and the refusal says where it would be.
    let elsewhere = tempfile::tempdir().unwrap();
    let o = cli(&d, elsewhere.path(), &[], &["workspace", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("not authenticated") && text(&o).contains("admin.token"),
        "{}",
        text(&o)
    );
    // A user who may not read the file is told so (only testable when running as root).
    if unsafe { libc::geteuid() } == 0 {
        let o = cli_as(Some(65534), &d, dir.path(), &[], &["workspace", "list"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("admin.token")
                && t.contains("Permission denied")
                && t.contains("SLUICE_TOKEN"),
            "{t}"
        );
    }
    drop(d);

    // A second start reuses the file: same token, not regenerated.
    let d = Daemon::start(dir.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        token,
        "not regenerated"
    );
    let log = logs(&d);
    assert!(
        log.contains("accepting the admin token") && !log.contains("generated an admin token"),
        "{log}"
    );
    assert_eq!(status(&d, Some(&token)).await, StatusCode::OK);
    drop(d);

    // Once a token is configured, the file is no longer honoured (and the log says so).
    let cfg = config_with_token(dir.path());
    let d = Daemon::start(dir.path(), &[("SLUICE_CONFIG", &cfg)]);
    assert_eq!(status(&d, Some(&token)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&d, Some(ADMIN_TOKEN)).await, StatusCode::OK);
    assert!(logs(&d).contains("not accepted"), "{}", logs(&d));
    // Nor sent by the CLI reading the same configuration.
    let o = cli(
        &d,
        dir.path(),
        &[("SLUICE_CONFIG", &cfg)],
        &["workspace", "list"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not authenticated"), "{}", text(&o));
}

#[tokio::test]
async fn with_a_token_configured_no_file_is_created_and_a_stale_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_token(dir.path());
    let d = Daemon::start(dir.path(), &[("SLUICE_CONFIG", &cfg)]);
    assert_eq!(status(&d, Some(ADMIN_TOKEN)).await, StatusCode::OK);
    assert!(
        !dir.path().join("admin.token").exists(),
        "no admin.token when tokens are configured"
    );
    drop(d);

    let data = tempfile::tempdir().unwrap();
    let stale = "sla_stale-token-from-an-earlier-first-start";
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data.path().join("admin.token"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, stale.as_bytes()))
        .unwrap();
    let d = Daemon::start(data.path(), &[("SLUICE_CONFIG", &cfg)]);
    assert_eq!(status(&d, Some(stale)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&d, Some(ADMIN_TOKEN)).await, StatusCode::OK);
    assert!(!logs(&d).contains(stale));
}
