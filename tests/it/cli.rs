//! The client commands of the `sluice` binary against a running daemon.

use std::process::{Command, Output};

use serde_json::Value;

use crate::api::{ADMIN_TOKEN, READ_TOKEN};
use crate::support::{Daemon, DockerCleanup, sluice_bin, unique};

fn config(dir: &std::path::Path) -> String {
    let p = dir.join("sluice.toml");
    std::fs::write(
        &p,
        format!(
            "[[auth.tokens]]\nname = \"cli-admin\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
             [[auth.tokens]]\nname = \"cli-reader\"\nrole = \"read\"\ntoken = \"{READ_TOKEN}\"\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

fn sluice(d: &Daemon, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("--server")
        .arg(d.url(""))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_SERVER");
    match token {
        Some(t) => cmd.env("SLUICE_TOKEN", t),
        None => cmd.env_remove("SLUICE_TOKEN"),
    };
    cmd.output().expect("run sluice")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn workspace_commands_print_tables_and_json_and_fail_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let name = unique("cli");
    // Dropped after the daemon: the container and volume its reconciler created.
    let _cleanup = DockerCleanup {
        containers: vec![format!("sluice-{name}")],
        volumes: vec![format!("{name}-data")],
        images: Vec::new(),
    };
    let d = Daemon::start(dir.path(), &[("SLUICE_CONFIG", &cfg)]);

    let o = sluice(
        &d,
        Some(ADMIN_TOKEN),
        &[
            "workspace",
            "add",
            &name,
            "--image",
            &crate::api::fixture_image(),
            "--tier",
            "canary",
            "--env",
            "A=1",
            "--volume",
            &format!("{name}-data:/data"),
            "--port",
            "8080",
            "--health-port",
            "8080",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains(&format!("workspace {name} added (canary tier)")),
        "{out}"
    );

    let o = sluice(&d, Some(READ_TOKEN), &["workspace", "list"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("TIER") && header.contains("STATE"),
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], [name.as_str(), "canary", "auto"], "{out}");
    assert!(header.contains("HOST"), "{out}");
    assert_eq!(row[5], "local", "placed on the daemon's own host: {out}");

    let o = sluice(
        &d,
        Some(READ_TOKEN),
        &["--json", "workspace", "show", &name],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(v["spec"]["env"]["A"], "1");
    assert_eq!(v["spec"]["health"]["http"]["path"], "/health");

    // A reader that goes away (`sluice … | grep -q`, `| head`) is not a crash.
    let mut child = Command::new(sluice_bin())
        .args(["--server", &d.url(""), "--json", "workspace", "show", &name])
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_TOKEN", READ_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = sluice(
        &d,
        Some(ADMIN_TOKEN),
        &["workspace", "set-tier", &name, "production"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = sluice(
        &d,
        Some(ADMIN_TOKEN),
        &["workspace", "set-tier", &name, "canery"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("invalid_tier") && err.contains("update_tier"),
        "{err}"
    );

    let digest = format!("sha256:{}", "d".repeat(64));
    let o = sluice(&d, Some(ADMIN_TOKEN), &["workspace", "pin", &name, &digest]);
    assert!(text(&o).0.contains("pinned to sha256:"), "{:?}", text(&o));

    // Clear messages and non-zero exits.
    let o = sluice(&d, None, &["workspace", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("not authenticated") && text(&o).1.contains("SLUICE_TOKEN"),
        "{:?}",
        text(&o)
    );
    let o = sluice(&d, Some(READ_TOKEN), &["fleet", "mode", "paused"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not allowed"), "{:?}", text(&o));
    let o = sluice(&d, Some(READ_TOKEN), &["workspace", "show", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not found"), "{:?}", text(&o));
    let o = sluice(
        &d,
        Some(ADMIN_TOKEN),
        &[
            "workspace",
            "add",
            &name,
            "--image",
            &crate::api::fixture_image(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("conflict"), "{:?}", text(&o));
    let o = sluice(
        &d,
        Some(ADMIN_TOKEN),
        &[
            "workspace",
            "add",
            "x",
            "--image",
            "a:b",
            "--env",
            "NOEQUALS",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--env"), "{:?}", text(&o));

    let o = sluice(&d, Some(ADMIN_TOKEN), &["fleet", "mode", "paused"]);
    assert!(o.status.success());
    let o = sluice(&d, Some(READ_TOKEN), &["fleet", "show"]);
    assert!(text(&o).0.contains("mode        paused"), "{:?}", text(&o));
    // The one SQLite daemon leads at epoch 0 and holds no lease row.
    assert!(
        text(&o).0.contains("(leader, epoch 0, sqlite)"),
        "{:?}",
        text(&o)
    );

    let o = sluice(&d, Some(READ_TOKEN), &["events"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains("cli-admin")
            && out.contains("workspace.created")
            && out.contains("fleet.mode_changed"),
        "{out}"
    );
    let o = sluice(&d, Some(READ_TOKEN), &["--json", "events", "--limit", "2"]);
    let v: Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    let mut o = sluice(&d, Some(ADMIN_TOKEN), &["workspace", "remove", &name]);
    for _ in 0..240 {
        if !text(&o).1.contains("update_in_progress") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
        o = sluice(&d, Some(ADMIN_TOKEN), &["workspace", "remove", &name]);
    }
    assert!(
        text(&o).0.contains("removed (volumes kept)"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn an_unreachable_server_is_an_error_that_says_so() {
    let o = Command::new(sluice_bin())
        .args(["--server", "http://127.0.0.1:9", "workspace", "list"])
        .env_remove("SLUICE_CONFIG")
        .env("SLUICE_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot reach sluice at http://127.0.0.1:9"),
        "{err}"
    );
}
