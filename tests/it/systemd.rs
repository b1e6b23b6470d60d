//! systemd packaging: the unit verifies, the daemon speaks the notify protocol, the
//! installer lays out binary, config, token file and unit.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Daemon, repo_root, sluice_bin};

#[test]
fn the_units_have_the_promised_directives_and_verify() {
    for (file, extra) in [
        (
            "sluice.service",
            "ExecStart=/usr/local/bin/sluice --config /etc/sluice/sluice.toml run",
        ),
        ("sluice-agent.service", "RestartPreventExitStatus=2"),
    ] {
        verify_unit(file, extra);
    }
}

fn verify_unit(file: &str, extra: &str) {
    let unit = std::fs::read_to_string(repo_root().join("deploy").join(file)).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/sluice",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "SupplementaryGroups=docker",
        "User=sluice",
        "CapabilityBoundingSet=",
        extra,
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "deploy/{file} lacks `{line}`"
        );
    }
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("skipping `systemd-analyze verify`: systemd-analyze is not installed");
        return;
    };
    assert!(out.status.success());
    // Verify a copy whose ExecStart points at the binary under test (verify checks it exists).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(file);
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/sluice", &sluice_bin().display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify {file} failed: {err}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains(file)).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn the_daemon_sends_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(
        &data,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv_until = |want: &str, got: &mut Vec<String>| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if got.iter().any(|m| m.lines().any(|l| l == want)) {
                return;
            }
            if let Ok(n) = sock.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        panic!("no `{want}` from the daemon; got {got:?}");
    };
    recv_until("READY=1", &mut got);
    let ready = got.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=ready: API on 127.0.0.1:"), "{ready}");
    recv_until("WATCHDOG=1", &mut got);
    daemon.signal("TERM");
    recv_until("STOPPING=1", &mut got);
    let status = daemon
        .wait_timeout(Duration::from_secs(10))
        .expect("daemon exits");
    assert!(status.success());
}

#[test]
fn install_script_lays_out_a_root_and_keeps_existing_files() {
    let root = tempfile::tempdir().unwrap();
    let install = |extra: &[&str]| {
        let out = Command::new("sh")
            .arg(repo_root().join("deploy/install.sh"))
            .args([
                "--root",
                root.path().to_str().unwrap(),
                "--binary",
                sluice_bin().to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = install(&[]);
    assert!(first.contains("tokens.toml"), "{first}");
    let p = |rel: &str| root.path().join(rel);
    assert!(
        p("usr/local/bin/sluice")
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    assert!(p("etc/systemd/system/sluice.service").exists());
    let tokens = p("etc/sluice/tokens.toml");
    let mode = tokens.metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "token file is not world-readable");
    let text = std::fs::read_to_string(&tokens).unwrap();
    assert!(text.contains("role = \"admin\""));

    // The installed config is valid and points at the installed token file.
    let cfg =
        sluice::config::load(Some(&p("etc/sluice/sluice.toml")), Vec::new()).expect("valid config");
    assert_eq!(cfg.data.dir, std::path::Path::new("/var/lib/sluice"));
    assert_eq!(
        cfg.auth.token_file.as_deref(),
        Some(std::path::Path::new("/etc/sluice/tokens.toml"))
    );

    // A second run keeps the operator's files.
    std::fs::write(p("etc/sluice/sluice.toml"), "[log]\nlevel = \"debug\"\n").unwrap();
    let second = install(&[]);
    assert!(!second.contains("created"), "{second}");
    assert_eq!(std::fs::read_to_string(&tokens).unwrap(), text);
    assert!(
        std::fs::read_to_string(p("etc/sluice/sluice.toml"))
            .unwrap()
            .contains("debug")
    );
}
