//! Mail notifications against a real SMTP server on loopback (tests/env/smtp_sink.py, on
//! Python's aiosmtpd, with AUTH): a tenant hears once of a good update of its workspace
//! (with the release's changelog) and never of a rolled-back one, the admins hear of a
//! quarantine, a manual-mode workspace's contacts hear that an update is available, a
//! bad contact address is refused naming its field, and the SMTP password appears in
//! no log line and no printed configuration. Updates run on the real Docker engine,
//! registry and reconciler; the store is the run's engine. Over STARTTLS and implicit
//! TLS (a CA and server certificate made for the run with the openssl CLI) mail reaches
//! the server only encrypted, to a certificate `[email] ca_file` trusts: an untrusted
//! certificate, or a server that offers no STARTTLS, fails the mail and sends nothing.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice::clock::{Clock, SystemClock};
use sluice::config::{EmailTls, Secret, Settings};
use sluice::domain::{Digest, EmailAddress, UpdatePhase, WorkspaceState};
use sluice::notify::email::EMAIL_CURSOR;
use sluice::store::{ProbeSuccess, Store};

use crate::api::TestApi;
use crate::reconciler::env_with;
use crate::support::repo_root;

const USER: &str = "sluice-mailer";
const PASSWORD: &str = "smtp-pa55-s3cr3t";
const CHANGELOG: &str = "- faster <startup> & less memory\n- fixes the export button";

/// The SMTP server, stopped (stdin closed, then killed) on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// The sink with further arguments (`--tls starttls --cert … --key …`).
    fn start_with(extra: &[&std::ffi::OsStr]) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("python3")
            .arg("-W")
            .arg("ignore")
            .arg(repo_root().join("tests/env/smtp_sink.py"))
            .args([
                "--port",
                &port.to_string(),
                "--user",
                USER,
                "--password",
                PASSWORD,
            ])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tests/env/smtp_sink.py (aiosmtpd: tests/env/up.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the sink's first line");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Self { child, port, dir }
    }

    /// Every message received so far, oldest first.
    fn mails(&self) -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read mail")).expect("json"))
            .collect()
    }

    fn to(&self, address: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|m| {
                m["rcpt_tos"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|a| a == address))
            })
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn address(s: &str) -> EmailAddress {
    EmailAddress::parse(s).expect("address")
}

/// `[email]` to `sink` over plain SMTP on loopback, with AUTH; fast retries.
fn mail_settings(s: &mut Settings, sink: &SmtpSink, admins: &[&str]) {
    s.email.host = Some("127.0.0.1".into());
    s.email.port = Some(sink.port);
    s.email.tls = EmailTls::None;
    s.email.username = Some(USER.into());
    s.email.password = Some(Secret::new(PASSWORD));
    s.email.from = Some(address("sluice@ops.example.com"));
    s.email.admins = admins.iter().map(|a| address(a)).collect();
    s.email.timeout = Duration::from_secs(5);
    s.notifications.poll_interval = Duration::from_millis(50);
    s.notifications.backoff = Duration::from_millis(50);
}

/// Log lines of this test (the runtime is current-thread: every task logs here).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let me = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || me.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

/// Starts the notifier on `store`; waits until the mail tail has stored its start.
async fn notifier(
    store: &Store,
    s: &Settings,
    metrics: &sluice::metrics::Metrics,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = sluice::notify::spawn(
        store.clone(),
        &s.notifications,
        &s.email,
        metrics,
        Arc::new(SystemClock),
        stop.clone(),
    )
    .expect("mail is configured");
    for _ in 0..200 {
        if store
            .feed_cursor(EMAIL_CURSOR)
            .await
            .expect("cursor")
            .is_some()
        {
            return (stop, task);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the mail tail did not start");
}

/// Waits until the mail tail is done with every event written so far.
async fn drained(store: &Store) {
    let last = store.last_event_id().await.expect("last event");
    for _ in 0..600 {
        if store.feed_cursor(EMAIL_CURSOR).await.expect("cursor") >= Some(last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("mail for events up to {last} was not delivered");
}

/// A probe of `image` finding `digest` (with `changelog`), as the watcher records it; the
/// release's id, unless it was the first digest seen (the baseline, not a release).
async fn release(
    store: &Store,
    image: &str,
    digest: &Digest,
    changelog: Option<&str>,
) -> Option<i64> {
    store
        .sync_tracked_images(&[image.to_owned()])
        .await
        .expect("track image");
    let now = SystemClock.now();
    store
        .record_probe_success(&ProbeSuccess {
            image,
            digest,
            changelog,
            next_probe_at: now,
            now,
        })
        .await
        .expect("record release")
        .release_id
}

#[tokio::test]
async fn tenants_hear_of_good_updates_and_admins_of_a_quarantine() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let sink = SmtpSink::start();
    let db = sluice::store::TestDb::new().await;
    let tenant = "tenant@acme.example.com";
    let admin = "oncall@ops.example.com";
    let mut e = env_with(
        "mail",
        |spec, _| spec.contacts = vec![address(tenant)],
        |s| {
            s.database.url = Some(Secret::new(db.url()));
            mail_settings(s, &sink, &[admin]);
        },
    )
    .await;
    let mut s = crate::reconciler::settings(e.dir.path());
    mail_settings(&mut s, &sink, &[admin]);
    let printed = format!("{:?} {}", s.email, toml::to_string(&s).expect("toml"));
    assert!(!printed.contains(PASSWORD), "{printed}");
    let (stop, task) = notifier(&e.store, &s, &sluice::metrics::Metrics::new()).await;

    let d1 = e.fixture("good", "v1");
    let d2 = e.fixture("good", "v2");
    let d3 = e.fixture("bad-health", "v3");
    let d4 = e.fixture("bad-health", "v4");
    let image = e.ws.image.to_string();
    // The first digest seen is the baseline, not a release.
    assert_eq!(release(&e.store, &image, &d1, None).await, None);
    assert!(
        release(&e.store, &image, &d2, Some(CHANGELOG))
            .await
            .is_some()
    );
    assert!(
        release(&e.store, &image, &d3, Some("- breaks health"))
            .await
            .is_some()
    );

    // The first start is no update; v1 → v2 is.
    e.desire(&d1).await;
    e.rec.converge_all().await.expect("converge v1");
    e.desire(&d2).await;
    e.rec.converge_all().await.expect("converge v2");
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::Succeeded));
    // v3 fails its health gate and is rolled back: the tenant hears nothing of it.
    e.desire(&d3).await;
    e.rec.converge_all().await.expect("converge v3");
    assert_eq!(e.latest_phase().await, Some(UpdatePhase::RolledBack));
    // v4 fails too, and its rollback finds the snapshot damaged: quarantined.
    e.desire(&d4).await;
    let rec = e.rec.clone();
    let saga = tokio::spawn(async move { rec.converge_all().await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let damaged = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot completed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        if u.to_digest != d4 {
            continue;
        }
        let snaps = e.store.snapshots_of_update(u.id).await.unwrap();
        if let Some(s) = snaps
            .into_iter()
            .find(|s| s.state == sluice::domain::SnapshotState::Complete)
        {
            break s;
        }
    };
    std::fs::write(&damaged.path, b"damaged").unwrap();
    saga.await.unwrap().expect("converge v4");
    assert_eq!(e.workspace().await.state, WorkspaceState::Quarantined);
    drained(&e.store).await;

    let to_tenant = sink.to(tenant);
    assert_eq!(
        to_tenant.len(),
        1,
        "one mail, of the good update: {to_tenant:#?}"
    );
    let m = &to_tenant[0];
    assert!(m["authenticated"].as_bool().unwrap(), "{m}");
    assert_eq!(m["mail_from"], "sluice@ops.example.com");
    let subject = m["subject"].as_str().unwrap();
    assert!(
        subject.contains("was updated") && subject.contains(e.ws.name.as_str()),
        "{subject}"
    );
    let text = m["text"].as_str().unwrap();
    for item in CHANGELOG.lines() {
        assert!(
            text.contains(item),
            "changelog item {item:?} missing: {text}"
        );
    }
    assert!(
        text.contains(d1.as_str()) && text.contains(d2.as_str()),
        "{text}"
    );
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("faster &lt;startup&gt; &amp; less memory"),
        "{html}"
    );
    assert!(!html.contains("<startup>"), "{html}");
    assert!(!text.contains("breaks health"), "{text}");

    let to_admin = sink.to(admin);
    assert_eq!(to_admin.len(), 1, "one quarantine mail: {to_admin:#?}");
    let q = &to_admin[0];
    assert!(
        q["subject"].as_str().unwrap().contains("QUARANTINED"),
        "{q}"
    );
    assert!(
        q["text"].as_str().unwrap().contains(e.ws.name.as_str()),
        "{q}"
    );
    assert!(
        q["html"].as_str().unwrap().contains(e.ws.name.as_str()),
        "{q}"
    );
    assert!(
        sink.mails()
            .iter()
            .all(|m| m["rcpt_tos"].as_array().unwrap().len() == 1)
    );

    stop.cancel();
    task.await.unwrap();
    let logs = logs.text();
    assert!(logs.contains("mail sent"), "{logs}");
    assert!(!logs.contains(PASSWORD), "the SMTP password was logged");
}

#[tokio::test]
async fn manual_workspaces_hear_that_an_update_is_available() {
    let sink = SmtpSink::start();
    let api = TestApi::start_with(|s| mail_settings(s, &sink, &[])).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the tail starts after existing events
    let image = crate::api::fixture_image();
    let contact = "owner@tenant.example.org";
    for (name, mode, contacts) in [
        ("mail-manual", "manual", json!([contact])),
        ("mail-auto", "auto", json!(["auto@tenant.example.org"])),
    ] {
        let (status, v) = api
            .admin(
                Method::POST,
                "/api/v1/workspaces",
                Some(json!({"name": name, "image": image, "update_mode": mode,
                    "update_tier": "production", "contacts": contacts})),
            )
            .await;
        assert!(status.is_success(), "{v}");
        assert_eq!(v["spec"]["contacts"], contacts, "{v}");
    }
    // The daemon's watcher may have seen the image's digest already (then the first of
    // these is a release) or not (then it is the baseline, and the second is).
    let mut digest = None;
    for c in ['b', 'c'] {
        let d = Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap();
        if release(&api.store, &image, &d, Some(CHANGELOG))
            .await
            .is_some()
        {
            digest = Some(d);
            break;
        }
    }
    let digest = digest.expect("a release was recorded");
    drained(&api.store).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["rcpt_tos"], json!([contact]));
    assert!(
        mails[0]["subject"]
            .as_str()
            .unwrap()
            .contains("mail-manual")
    );
    let text = mails[0]["text"].as_str().unwrap();
    assert!(
        text.contains(digest.as_str()) && text.contains("fixes the export button"),
        "{text}"
    );
}

#[tokio::test]
async fn a_bad_contact_is_refused_naming_its_field_and_stores_nothing() {
    let api = TestApi::start().await;
    let image = crate::api::fixture_image();
    let body = json!({"name": "mail-bad", "image": image,
        "contacts": ["ok@example.com", "not an address"]});
    let (status, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_spec", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contacts[1]"),
        "{v}"
    );
    let (status, _) = api
        .admin(Method::GET, "/api/v1/workspaces/mail-bad", None)
        .await;
    assert_eq!(status, 404, "nothing was stored");

    let (status, v) = api
        .admin(
            Method::POST,
            "/api/v1/workspaces",
            Some(json!({"name": "mail-ok", "image": image})),
        )
        .await;
    assert!(status.is_success(), "{v}");
    for (contacts, field) in [
        (json!(["a@example.com", "a@example.com"]), "contacts[1]"),
        (json!(["x@y"]), "contacts[0]"),
    ] {
        let (status, v) = api
            .admin(
                Method::PATCH,
                "/api/v1/workspaces/mail-ok",
                Some(json!({"contacts": contacts})),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_spec", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
    }
    let (_, v) = api
        .admin(Method::GET, "/api/v1/workspaces/mail-ok", None)
        .await;
    assert!(
        v["spec"].get("contacts").is_none(),
        "nothing was stored: {v}"
    );
}

/// `sluice_notifications_total` of the mail sink for `outcome`.
fn mail_counter(metrics: &sluice::metrics::Metrics, outcome: &str) -> f64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|f| f.name() == "sluice_notifications_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            let label = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            label("sink").starts_with("email:") && label("outcome") == outcome
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test]
async fn a_refused_login_is_retried_then_counted_and_no_password_is_logged() {
    const WRONG: &str = "wrong-pa55-s3cr3t";
    let logs = Logs::default();
    let _guard = logs.capture();
    let sink = SmtpSink::start();
    let db = sluice::store::TestDb::new().await;
    let store = db.store(2).await;
    let mut s = Settings::default();
    mail_settings(&mut s, &sink, &["oncall@ops.example.com"]);
    s.email.password = Some(Secret::new(WRONG));
    s.notifications.retries = 2;
    let metrics = sluice::metrics::Metrics::new();
    let (stop, task) = notifier(&store, &s, &metrics).await;
    assert_eq!(mail_counter(&metrics, "failed"), 0.0, "exported at zero");
    quarantine(&store).await;
    drained(&store).await;
    assert!(sink.mails().is_empty(), "the server refused the login");
    assert_eq!(mail_counter(&metrics, "failed"), 1.0);
    assert_eq!(mail_counter(&metrics, "delivered"), 0.0);
    stop.cancel();
    task.await.unwrap();
    let logs = logs.text();
    assert_eq!(logs.matches("mail failed; retrying").count(), 2, "{logs}");
    assert!(logs.contains("mail given up"), "{logs}");
    assert!(
        !logs.contains(WRONG) && !logs.contains(PASSWORD),
        "a password was logged: {logs}"
    );
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost, made
/// with the openssl CLI for this test (nothing committed).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
             keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .expect("write server.ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The SMTP sink with `--tls mode` and this server certificate, with AUTH.
    fn sink(&self, mode: &str) -> SmtpSink {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        SmtpSink::start_with(&[
            "--tls".as_ref(),
            mode.as_ref(),
            "--cert".as_ref(),
            cert.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ])
    }
}

/// One quarantine in the audit trail: one mail to the admins.
async fn quarantine(store: &Store) {
    store
        .append_event(
            &sluice::store::NewEvent {
                actor: "system".into(),
                subject: "workspace:acme".into(),
                action: "update_quarantined".into(),
                detail: json!({"error": "rollback failed"}),
                rollout_id: None,
                workspace: Some("acme".into()),
            },
            SystemClock.now(),
        )
        .await
        .expect("append");
}

/// Runs the notifier with `s` until the mail of one quarantine is delivered or given
/// up; the delivered and failed counts.
async fn mail_one_quarantine(s: &Settings) -> (f64, f64) {
    let db = sluice::store::TestDb::new().await;
    let store = db.store(2).await;
    let metrics = sluice::metrics::Metrics::new();
    let (stop, task) = notifier(&store, s, &metrics).await;
    quarantine(&store).await;
    drained(&store).await;
    stop.cancel();
    task.await.expect("notifier");
    (
        mail_counter(&metrics, "delivered"),
        mail_counter(&metrics, "failed"),
    )
}

#[tokio::test]
async fn mail_goes_over_starttls_and_implicit_tls_to_a_server_the_ca_file_trusts() {
    let pki = Pki::new();
    for (mode, tls) in [
        ("starttls", EmailTls::Starttls),
        ("implicit", EmailTls::Implicit),
    ] {
        let sink = pki.sink(mode);
        let mut s = Settings::default();
        mail_settings(&mut s, &sink, &["oncall@ops.example.com"]);
        s.email.tls = tls;
        s.email.ca_file = Some(pki.path("ca.pem"));
        s.notifications.retries = 1;
        assert_eq!(mail_one_quarantine(&s).await, (1.0, 0.0), "{mode}");
        let mails = sink.mails();
        assert_eq!(mails.len(), 1, "{mode}: {mails:#?}");
        assert_eq!(mails[0]["tls"], true, "{mode}: {}", mails[0]);
        assert_eq!(mails[0]["authenticated"], true, "{mode}: {}", mails[0]);
        assert_eq!(mails[0]["rcpt_tos"], json!(["oncall@ops.example.com"]));
    }
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_mail_and_nothing_is_sent() {
    let pki = Pki::new();
    for (mode, tls) in [
        ("starttls", EmailTls::Starttls),
        ("implicit", EmailTls::Implicit),
    ] {
        let sink = pki.sink(mode);
        let mut s = Settings::default();
        mail_settings(&mut s, &sink, &["oncall@ops.example.com"]);
        s.email.tls = tls;
        s.notifications.retries = 1;
        assert_eq!(mail_one_quarantine(&s).await, (0.0, 1.0), "{mode}");
        assert!(sink.mails().is_empty(), "{mode}: {:#?}", sink.mails());
    }
}

#[tokio::test]
async fn starttls_to_a_server_that_offers_none_fails_rather_than_sending_in_clear() {
    let sink = SmtpSink::start();
    let pki = Pki::new();
    let mut s = Settings::default();
    mail_settings(&mut s, &sink, &["oncall@ops.example.com"]);
    s.email.tls = EmailTls::Starttls;
    s.email.ca_file = Some(pki.path("ca.pem"));
    s.notifications.retries = 1;
    assert_eq!(mail_one_quarantine(&s).await, (0.0, 1.0));
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());
}
