//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (`chromedriver`), against `sluice run` with real Docker and the local registry. Sign
//! in, see three workspaces, apply a release to the canary and watch the rollout page
//! turn `soaking` without a reload, promote, see `completed`; a `read` token sees no
//! action; a forged POST without the CSRF token is refused. Screenshots of every page go
//! to `target/dashboard-screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{Daemon, DockerCleanup, build_fixture, free_port, registry, unique};

const ADMIN: &str = "browser-admin-token-0123456789";
const READER: &str = "browser-read-token-0123456789";

/// `chromedriver` on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (tests/env/up.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, port }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,1000"] }),
        );
        ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a browser session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_file(dir: &std::path::Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("tokens.toml");
    std::fs::write(
        &file,
        format!(
            "[[tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"{ADMIN}\"\n\n\
             [[tokens]]\nname = \"viewer\"\nrole = \"read\"\ntoken = \"{READER}\"\n"
        ),
    )
    .expect("write the token file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    file.to_str().expect("utf-8").to_owned()
}

async fn api(d: &Daemon, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, d.url(path))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("API answers");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// Waits (≤ `limit`) until `check` holds.
async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn shot(c: &Client, name: &str) {
    let dir = crate::support::repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text_of(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn sign_in(c: &Client, d: &Daemon, token: &str) {
    c.goto(&d.url("/ui/login")).await.expect("sign-in page");
    let field = c.find(Locator::Id("token")).await.expect("token field");
    field.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("form.login button"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
    until("the fleet page", Duration::from_secs(10), || async {
        c.current_url().await.is_ok_and(|u| u.path() == "/ui/fleet")
    })
    .await;
    assert!(
        !c.current_url().await.expect("url").as_str().contains(token),
        "the token is in no URL"
    );
}

/// Follows an action link to its confirmation and confirms.
async fn act(c: &Client, label: &str, screenshot: Option<&str>) {
    let link = c
        .find(Locator::XPath(&format!(
            "//a[contains(@class,'button') and normalize-space()='{label}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("a `{label}` button: {e}"));
    link.click().await.expect("open the confirmation");
    let blast = c
        .find(Locator::Css("p.blast"))
        .await
        .expect("the confirmation");
    let text = blast.text().await.unwrap_or_default();
    assert!(
        text.contains("workspace"),
        "the confirmation names the blast radius: {text}"
    );
    if let Some(name) = screenshot {
        shot(c, name).await;
    }
    c.find(Locator::Id("confirm"))
        .await
        .expect("confirm button")
        .click()
        .await
        .expect("confirm");
    if let Ok(e) = c.find(Locator::Css("p.error")).await {
        panic!(
            "`{label}` was refused: {}",
            e.text().await.unwrap_or_default()
        );
    }
}

#[tokio::test]
async fn sign_in_apply_watch_promote_and_the_read_token_and_csrf_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cleanup = DockerCleanup::default();
    let repo = format!("{}/{}/app", registry(), unique("dash"));
    let image = format!("{repo}:stable");
    let v1 = build_fixture("good", "v1", &image);
    cleanup.images.push(format!("{repo}@{v1}"));
    let tokens = token_file(dir.path());
    let d = Daemon::start(
        dir.path(),
        &[
            ("SLUICE__AUTH__TOKEN_FILE", &tokens),
            ("SLUICE__POLL__INTERVAL", "2s"),
            ("SLUICE__ROLLOUT__SOAK", "3s"),
            ("SLUICE__UPDATE__MIN_HEALTHY_TIME", "1s"),
        ],
    );
    api(
        &d,
        reqwest::Method::PUT,
        "/api/v1/fleet",
        Some(json!({ "mode": "manual" })),
    )
    .await;
    let base = unique("ui").replace('_', "-");
    let names: Vec<String> = ["canary", "prod-1", "prod-2"]
        .iter()
        .map(|n| format!("{base}-{n}"))
        .collect();
    for (i, name) in names.iter().enumerate() {
        cleanup.containers.push(format!("sluice-{name}"));
        cleanup.volumes.push(format!("{name}-data"));
        let tier = if i == 0 { "canary" } else { "production" };
        api(
            &d,
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(json!({ "name": name, "image": image, "update_tier": tier,
                "volumes": [{ "name": format!("{name}-data"), "mount": "/data" }],
                "health": { "http": { "port": 8080, "path": "/health" } } })),
        )
        .await;
    }
    until(
        "three running workspaces",
        Duration::from_secs(90),
        || async {
            let all = api(&d, reqwest::Method::GET, "/api/v1/workspaces", None).await;
            all.as_array().is_some_and(|a| {
                a.iter().filter(|w| w["state"] == "running").count() == names.len()
            })
        },
    )
    .await;

    let driver = Driver::start();
    let c = driver.browser().await;
    sign_in(&c, &d, ADMIN).await;
    let fleet = c.source().await.expect("page");
    for n in &names {
        assert!(fleet.contains(n.as_str()), "{n} on the fleet page");
    }
    assert!(!fleet.contains(ADMIN), "the token is not in the page");
    shot(&c, "fleet").await;

    // A new digest on the tag becomes a queued release.
    let v2 = build_fixture("good", "v2", &image);
    cleanup.images.push(format!("{repo}@{v2}"));
    until(
        "the release on the page",
        Duration::from_secs(60),
        || async {
            c.goto(&d.url("/ui/releases")).await.is_ok()
                && c.source()
                    .await
                    .is_ok_and(|s| s.contains("class=\"status\">queued<"))
        },
    )
    .await;
    shot(&c, "releases").await;
    act(&c, "Apply to canary", Some("confirm-apply")).await;

    // The rollout page changes by itself (server-sent events), without a reload.
    until("the rollout page", Duration::from_secs(10), || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.path().starts_with("/ui/rollouts/"))
    })
    .await;
    c.execute("window.__sluiceNoReload = true;", vec![])
        .await
        .expect("mark the page");
    until("soaking", Duration::from_secs(90), || async {
        text_of(&c, "#rollout-state").await == "soaking"
    })
    .await;
    let same_page = c
        .execute("return window.__sluiceNoReload === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_page, json!(true), "the page was not reloaded");
    shot(&c, "rollout-soaking").await;
    // The soak passes (the countdown on the page says so); then promote.
    until("the soak to pass", Duration::from_secs(30), || async {
        text_of(&c, ".countdown").await == "due"
    })
    .await;

    act(&c, "Promote", None).await;
    c.execute("window.__sluiceNoReload = true;", vec![])
        .await
        .expect("mark the page");
    until("completed", Duration::from_secs(120), || async {
        text_of(&c, "#rollout-state").await == "completed"
    })
    .await;
    let same_page = c
        .execute("return window.__sluiceNoReload === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(same_page, json!(true), "the page was not reloaded");
    shot(&c, "rollout").await;
    let rollout_url = c.current_url().await.expect("url");

    c.goto(&d.url(&format!("/ui/workspaces/{}", names[0])))
        .await
        .expect("workspace");
    let history = text_of(&c, "table.history tbody").await;
    assert!(
        history.contains("succeeded"),
        "the update in the history: {history}"
    );
    shot(&c, "workspace").await;
    c.goto(&d.url("/ui/events")).await.expect("events");
    shot(&c, "events").await;

    // A forged POST (no CSRF token) from the signed-in page is refused.
    let status = c
        .execute(
            "return fetch('/ui/do', { method: 'POST', credentials: 'same-origin',
               headers: { 'content-type': 'application/x-www-form-urlencoded' },
               body: 'what=reject&id=1' }).then(r => r.status);",
            vec![],
        )
        .await
        .expect("forged POST");
    assert_eq!(status, json!(403), "a POST without the CSRF token");

    // A read token sees no action.
    c.find(Locator::Css("header form button"))
        .await
        .expect("sign out")
        .click()
        .await
        .expect("sign out");
    sign_in(&c, &d, READER).await;
    for page in ["/ui/releases", rollout_url.path()] {
        c.goto(&d.url(page)).await.expect("page");
        let buttons = c.find_all(Locator::Css("a.button")).await.expect("find");
        assert!(buttons.is_empty(), "{page}: a read token sees no action");
    }
    shot(&c, "rollout-read-only").await;
    let status = c
        .execute(
            "const csrf = document.querySelector('input[name=csrf]').value;
             return fetch('/ui/do', { method: 'POST', credentials: 'same-origin',
               headers: { 'content-type': 'application/x-www-form-urlencoded' },
               body: 'what=reject&id=1&csrf=' + csrf }).then(r => r.status);",
            vec![],
        )
        .await
        .expect("read POST");
    assert_eq!(
        status,
        json!(403),
        "a read token's POST, CSRF token and all"
    );
    c.close().await.expect("close the browser");
}
