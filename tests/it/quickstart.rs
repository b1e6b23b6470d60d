//! `deploy/quickstart.sh` runs to the end: a real rollout through canary, soak and
//! production, then a broken release rolled back on the canary with its data restored.

use std::process::Command;

use crate::support::{repo_root, sluice_bin};

#[test]
fn the_quickstart_runs_to_the_end() {
    // A free API port (the script's default 7878 may be taken on a developer machine).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new("bash")
        .arg(repo_root().join("deploy/quickstart.sh"))
        .env("SLUICE_BIN", sluice_bin())
        .env("QS_PORT", port.to_string())
        .env("QS_SOAK", "5s")
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_TOKEN")
        .output()
        .expect("run quickstart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("state: completed"), "{stdout}");
    assert!(
        stdout.contains("/data/orders.txt: order #1001, written before the updates"),
        "{stdout}"
    );
    assert!(stdout.contains("quickstart finished"), "{stdout}");
}
