//! `sluice snapshot …` and `sluice workspace recover` against a running `sluice run`
//! (without Docker) whose database the fixtures fill.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sluice::domain::UpdatePhase;
use sluice::store::Store;

use crate::api::{ADMIN_TOKEN, READ_TOKEN};
use crate::snapshot_fixture::after_update;
use crate::support::{Daemon, sluice_bin};

fn config(dir: &std::path::Path) -> String {
    let p = dir.join("sluice.toml");
    std::fs::write(
        &p,
        format!(
            "[[auth.tokens]]\nname = \"cli-admin\"\nrole = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
             [[auth.tokens]]\nname = \"cli-reader\"\nrole = \"read\"\ntoken = \"{READ_TOKEN}\"\n\n\
             [docker]\nhost = \"unix:///nonexistent/sluice-test/docker.sock\"\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

fn sluice(d: &Daemon, token: &str, args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .arg("--server")
        .arg(d.url(""))
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_SERVER")
        .env("SLUICE_TOKEN", token)
        .output()
        .expect("run sluice")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn snapshot_commands_list_show_release_and_refuse_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = Daemon::start(dir.path(), &[("SLUICE_CONFIG", &cfg)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let snaps = dir.path().join("snapshots");
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
        let store = Store::open(&url, 2, Duration::from_secs(5)).await.unwrap();
        after_update(&store, &snaps, "acme", &["data"], UpdatePhase::Quarantined).await;
        after_update(&store, &snaps, "fine", &["data"], UpdatePhase::Succeeded).await;
        store.close().await;
    });

    // list: a table for people, protected rows say why.
    let o = sluice(&d, READ_TOKEN, &["snapshot", "list", "--workspace", "acme"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "WORKSPACE", "VOLUME", "STATE", "SIZE", "PROTECTED"] {
        assert!(header.contains(col), "{out}");
    }
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("acme-data-new"), "{out}");
    assert!(rows[0].contains("yes (workspace quarantined)"), "{out}");
    let o = sluice(&d, READ_TOKEN, &["--json", "snapshot", "list"]);
    let v: Value = serde_json::from_str(&text(&o).0).expect("--json prints JSON");
    assert_eq!(v.as_array().unwrap().len(), 4);

    // show: every field an operator needs to decide.
    let o = sluice(&d, READ_TOKEN, &["snapshot", "show", "acme-data-new"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for want in [
        "volume",
        "mount_path       /data",
        "manifest_sha256",
        "method           archive",
        "state            complete",
        "(update quarantined",
        "protected        yes (workspace quarantined)",
        "released_at      -",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }

    // Refusals exit 1 with the server's reason.
    let o = sluice(&d, ADMIN_TOKEN, &["snapshot", "delete", "acme-data-new"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("conflict (snapshot_protected)"),
        "{:?}",
        text(&o)
    );
    let o = sluice(&d, READ_TOKEN, &["snapshot", "release", "acme-data-new"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not allowed"), "{:?}", text(&o));
    let o = sluice(&d, READ_TOKEN, &["snapshot", "show", "../etc/passwd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("invalid argument `ID`"),
        "{:?}",
        text(&o)
    );
    let o = sluice(&d, READ_TOKEN, &["snapshot", "show", "no-such"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not found"), "{:?}", text(&o));
    let o = sluice(&d, ADMIN_TOKEN, &["workspace", "recover", "fine"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("conflict (not_quarantined)"),
        "{:?}",
        text(&o)
    );

    // release, then the snapshot shows who released it and can be deleted.
    let o = sluice(&d, ADMIN_TOKEN, &["snapshot", "release", "acme-data-new"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("snapshot acme-data-new released by cli-admin"),
        "{out}"
    );
    let o = sluice(&d, READ_TOKEN, &["snapshot", "show", "acme-data-new"]);
    let (out, _) = text(&o);
    assert!(out.contains("protected        released"), "{out}");
    assert!(out.contains(" by cli-admin"), "{out}");
    let o = sluice(&d, ADMIN_TOKEN, &["snapshot", "delete", "acme-data-new"]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(!snaps.join("acme-data-new.tar").exists());

    // recover queues the journal row and says what it will do.
    let o = sluice(
        &d,
        ADMIN_TOKEN,
        &[
            "workspace",
            "recover",
            "acme",
            "--snapshot",
            "acme-data-old",
        ],
    );
    let (out, err) = text(&o);
    // acme-data-old belongs to the first update, which ran from nothing.
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("conflict (no_digest)"), "{err}");
    let o = sluice(&d, ADMIN_TOKEN, &["workspace", "recover", "acme"]);
    let (out, err) = text(&o);
    // The quarantining update's copy of `data` was deleted above.
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("volume `data`"), "{err}");

    let o = sluice(&d, READ_TOKEN, &["events"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("snapshot_released") && out.contains("snapshot_deleted"),
        "{out}"
    );
}

#[test]
fn a_quarantined_workspace_is_recovered_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let d = Daemon::start(dir.path(), &[("SLUICE_CONFIG", &cfg)]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let snaps = dir.path().join("snapshots");
    rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("sluice.db").display());
        let store = Store::open(&url, 2, Duration::from_secs(5)).await.unwrap();
        after_update(&store, &snaps, "acme", &["data"], UpdatePhase::Quarantined).await;
        store.close().await;
    });
    let o = sluice(&d, ADMIN_TOKEN, &["workspace", "recover", "acme"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("recover of workspace acme queued as update")
            && out.contains("restoring acme-data-new, then running sha256:111111111111"),
        "{out}"
    );
    assert!(out.contains("warning: "), "{out}");
    let o = sluice(&d, ADMIN_TOKEN, &["workspace", "recover", "acme"]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(err.contains("conflict (update_in_progress)"), "{err}");
    // A plain restore of a quarantined workspace points at `recover`.
    let o = sluice(&d, ADMIN_TOKEN, &["snapshot", "restore", "acme-data-old"]);
    assert_eq!(o.status.code(), Some(1));
    let (_, err) = text(&o);
    assert!(
        err.contains("conflict (quarantined)")
            && err.contains("sluice workspace recover acme --snapshot acme-data-old"),
        "{err}"
    );
}
