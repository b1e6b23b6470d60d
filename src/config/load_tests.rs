use super::*;
use crate::config::HostTimeoutPolicy;
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
        ("[database]\nfleet = \"blue fleet\"\n", "database.fleet"),
        (
            "[registries]\nwebhook_token = \"short\"\n",
            "registries.webhook_token",
        ),
        ("[poll]\nrequest_timeout = \"0s\"\n", "poll.request_timeout"),
        (
            "[workspaces]\nallowed_bind_prefixes = [\"/\"]\n",
            "workspaces.allowed_bind_prefixes[0]",
        ),
        (
            "[workspaces]\nallowed_bind_prefixes = [\"/srv/../etc\"]\n",
            "workspaces.allowed_bind_prefixes[0]",
        ),
        (
            "[workspaces]\nallowed_bind_prefixes = [\"srv\"]\n",
            "workspaces.allowed_bind_prefixes[0]",
        ),
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
    let file = "[[notifications.webhooks]]\nurl = \"https://hooks.example/T0/B0/hook-s3cr3t\"\n";
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
            "[[rollout.images]]\nimage = \"a/b:c\"\nmax_parallel_per_host = 0\n",
            "rollout.images[0].max_parallel_per_host",
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

#[test]
fn host_keys_default_and_refuse_bad_values_naming_the_key() {
    let s = load_from_str("", env(&[])).unwrap();
    assert_eq!(s.rollout.max_parallel_per_host, 1);
    assert_eq!(s.rollout.host_timeout, Duration::from_secs(600));
    assert_eq!(s.rollout.on_host_timeout, HostTimeoutPolicy::Wait);
    assert_eq!(s.hosts.down_after, Duration::from_secs(30));
    let s = load_from_str(
        "[rollout]\non_host_timeout = \"skip\"\nhost_timeout = \"2m\"\n\
         [[rollout.images]]\nimage = \"a/b:c\"\nmax_parallel_per_host = 3\n\
         [hosts]\ndown_after = \"1m\"\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(s.rollout.on_host_timeout, HostTimeoutPolicy::Skip);
    assert_eq!(s.rollout.host_timeout, Duration::from_secs(120));
    assert_eq!(s.rollout.images[0].max_parallel_per_host, Some(3));
    assert_eq!(s.hosts.down_after, Duration::from_secs(60));
    for (file, key) in [
        (
            "[rollout]\nmax_parallel_per_host = 0\n",
            "rollout.max_parallel_per_host",
        ),
        ("[rollout]\nhost_timeout = \"0s\"\n", "rollout.host_timeout"),
        ("[rollout]\nhost_timeout = \"soon\"\n", "host_timeout"),
        (
            "[rollout]\non_host_timeout = \"abort\"\n",
            "on_host_timeout",
        ),
        ("[hosts]\ndown_after = \"1s\"\n", "hosts.down_after"),
        ("[hosts]\ndown_after = \"2h\"\n", "hosts.down_after"),
        ("[hosts]\nsize = 3\n", "size"),
    ] {
        let e = load_from_str(file, env(&[])).unwrap_err().to_string();
        assert!(e.contains(key), "{file}: {e}");
    }
    assert!(
        load_from_str(
            "[hosts]\ndown_after = \"2s\"\n[agent]\nheartbeat_interval = \"500ms\"\n",
            env(&[])
        )
        .is_ok()
    );
    // A built-in host that heartbeats too seldom for down_after would be taken for down.
    let e = load_from_str("[hosts]\ndown_after = \"2s\"\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("agent.heartbeat_interval"), "{e}");
    // A control plane without a host of its own heartbeats nothing.
    assert!(
        load_from_str(
            "[hosts]\ndown_after = \"2s\"\n[agent]\nin_process = false\n",
            env(&[])
        )
        .is_ok()
    );
    assert!(load_from_str("[hosts]\ndown_after = \"1h\"\n", env(&[])).is_ok());
}

#[test]
fn analysis_checks_load_and_bad_ones_name_their_key() {
    let good = r#"
[rollout.prometheus]
url = "http://127.0.0.1:9090"
[[rollout.analysis]]
name = "errors"
query = 'sum(rate(http_errors_total{workspace=~"{{ canary_workspaces }}"}[1m]))'
comparison = "<"
threshold = 0.05
interval = "15s"
failure_limit = 3
inconclusive = "fail"
after_waves = true
"#;
    let s = load_from_str(good, env(&[])).unwrap();
    let c = &s.rollout.analysis[0];
    assert_eq!(
        (c.name.as_str(), c.threshold, c.failure_limit, c.after_waves),
        ("errors", 0.05, 3, true)
    );
    assert_eq!(c.interval, std::time::Duration::from_secs(15));
    assert_eq!(c.inconclusive, crate::config::Inconclusive::Fail);
    let check =
        "\n[[rollout.analysis]]\nname = \"e\"\nquery = \"up\"\ncomparison = \"<\"\nthreshold = 1\n";
    let url = "[rollout.prometheus]\nurl = \"http://127.0.0.1:9090\"\n";
    for (toml, key) in [
        (
            format!(
                "{url}{}",
                check.replace("threshold = 1", "threshold = \"high\"")
            ),
            "threshold",
        ),
        (
            format!("{url}{}", check.replace("\"<\"", "\"less\"")),
            "comparison",
        ),
        (
            format!(
                "{url}{}",
                check.replace("\"up\"", "\"up{x=\\\"{{ tenant }}\\\"}\"")
            ),
            "rollout.analysis[0].query",
        ),
        (
            format!("{url}{check}failure_limit = 0\n"),
            "rollout.analysis[0].failure_limit",
        ),
        (check.to_owned(), "rollout.prometheus.url"),
        (
            "[rollout.prometheus]\nurl = \"http://u:p@127.0.0.1:9090\"\n".to_owned(),
            "rollout.prometheus.url",
        ),
    ] {
        let e = load_from_str(&toml, env(&[])).unwrap_err().to_string();
        assert!(e.contains(key), "{key}: {e}");
        assert!(!e.contains("u:p@"), "credentials never in a message: {e}");
    }
}

/// The router's reload command is a list; from the environment it is written with commas,
/// and a one-word command is still a command, not a boolean.
#[test]
fn the_router_reload_command_comes_from_the_environment_as_a_list() {
    let s = load_from_str(
        "",
        env(&[(
            "SLUICE__ROUTER__RELOAD",
            "nginx,-c,/etc/nginx/nginx.conf,-s,reload",
        )]),
    )
    .unwrap();
    assert_eq!(
        s.router.reload,
        ["nginx", "-c", "/etc/nginx/nginx.conf", "-s", "reload"]
    );
    let s = load_from_str("", env(&[("SLUICE__ROUTER__RELOAD", "/bin/true")])).unwrap();
    assert_eq!(s.router.reload, ["/bin/true"]);
    let s = load_from_str("", env(&[("SLUICE__ROUTER__RELOAD", "true")])).unwrap();
    assert_eq!(s.router.reload, ["true"]);
    let e = load_from_str("[router]\nreload = \"nginx -s reload\"\n", env(&[])).unwrap_err();
    assert!(e.to_string().contains("router.reload"), "{e}");
}

#[test]
fn snapshot_access_is_read_from_file_and_environment_and_a_wrong_word_is_refused() {
    use crate::config::SnapshotAccess;
    let s = load_from_str("[snapshots]\naccess = \"helper\"\n", env(&[])).unwrap();
    assert_eq!(s.snapshots.access, SnapshotAccess::Helper);
    let s = load_from_str("", env(&[("SLUICE__SNAPSHOTS__ACCESS", "archive")])).unwrap();
    assert_eq!(s.snapshots.access, SnapshotAccess::Archive);
    assert_eq!(
        load_from_str("", env(&[])).unwrap().snapshots.access,
        SnapshotAccess::Auto
    );
    let err = load_from_str("[snapshots]\naccess = \"nfs\"\n", env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("access") && err.contains("nfs"), "{err}");
}
