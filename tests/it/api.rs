//! The admin API as a black box: an in-process daemon on port 0 with a fresh database.

use std::net::SocketAddr;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sluice::config::{ApiToken, Secret, Settings};
use sluice::domain::Role;
use sluice::startup::Application;
use tokio_util::sync::CancellationToken;

use crate::support::{registry, unique};

/// A tag that exists in the test registry (pushed by `tests/env/up.sh`).
pub fn fixture_image() -> String {
    format!("{}/sluice-fixtures/good:v1", registry())
}

pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
pub const READ_TOKEN: &str = "read-token-0123456789";

/// A daemon served from this process; stops when dropped.
pub struct TestApi {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: sluice::store::Store,
    stop: CancellationToken,
    /// Workspaces created through [`TestApi::call`]: their containers and volumes are
    /// removed on drop (the in-process reconciler creates them).
    created: std::sync::Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
    _db: sluice::store::TestDb,
}

pub fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.data.dir = dir.to_owned();
    s.api.listen = "127.0.0.1:0".parse().unwrap();
    s.auth.tokens = vec![
        ApiToken {
            name: "ops-alice".into(),
            role: Role::Admin,
            token: Secret::new(ADMIN_TOKEN),
        },
        ApiToken {
            name: "dash-viewer".into(),
            role: Role::Read,
            token: Secret::new(READ_TOKEN),
        },
    ];
    s
}

impl TestApi {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = sluice::store::TestDb::new().await;
        let mut s = settings(dir.path());
        s.database.url = Some(sluice::config::Secret::new(db.url()));
        tweak(&mut s);
        let app = Application::build(s).await.expect("daemon builds");
        let addr = app.local_addr();
        let store = app.state().store.clone();
        let leader = app.state().leader.clone();
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone()));
        // On PostgreSQL the instance first wins the lease (and audits it): wait, so that
        // the tests see a leading daemon and a settled audit trail.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !matches!(leader.role(), sluice::leader::Role::Leader { .. }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the test daemon did not start leading: {:?}",
                leader.role()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Self {
            addr,
            client: reqwest::Client::new(),
            store,
            stop,
            created: std::sync::Mutex::new(Vec::new()),
            _dir: dir,
            _db: db,
        }
    }

    /// Removes this workspace's container and volume on drop, like one created through
    /// [`TestApi::call`].
    pub fn track_workspace(&self, name: &str) {
        self.created.lock().unwrap().push(name.to_owned());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with `token` (if any) and returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req_method = method.clone();
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let created = match (&body, req_method.as_str(), path) {
            (Some(b), "POST", "/api/v1/workspaces") => b["name"].as_str().map(str::to_owned),
            _ => None,
        };
        if let Some(n) = created {
            self.created.lock().unwrap().push(n);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request sent");
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN_TOKEN), body).await
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.stop.cancel();
        let names = std::mem::take(&mut *self.created.lock().unwrap());
        if names.is_empty() {
            return;
        }
        let cleanup = || crate::support::DockerCleanup {
            containers: names.iter().map(|n| format!("sluice-{n}")).collect(),
            volumes: names.iter().map(|n| format!("{n}-data")).collect(),
            images: Vec::new(),
        };
        drop(cleanup());
        // A create request the in-process reconciler sent just before the stop can still
        // land in dockerd after that first pass: sweep once more.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(cleanup());
    }
}

fn ws_body(name: &str) -> Value {
    json!({ "name": name, "image": fixture_image(), "update_tier": "canary",
            "env": {"K": "V"}, "volumes": [{"name": format!("{name}-data"), "mount": "/data"}],
            "health": {"http": {"port": 8080, "path": "/health"}} })
}

/// The audit trail's first 100 events but the daemon's own (actor `system`: the
/// reconciler's, and the leader's on PostgreSQL), which interleave with operators'.
async fn operator_events(store: &sluice::store::Store) -> Vec<sluice::store::Event> {
    store
        .events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor != "system")
        .collect()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn tokens_are_required_and_roles_enforced() {
    let api = TestApi::start().await;
    let (s, v) = api
        .call(Method::GET, "/api/v1/workspaces", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&v), "unauthorized");
    let (s, _) = api
        .call(
            Method::GET,
            "/api/v1/workspaces",
            Some("not-a-real-token-xxxxxxxx"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = api
        .call(Method::GET, "/api/v1/workspaces", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/workspaces",
            Some(READ_TOKEN),
            Some(ws_body(&unique("ws"))),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(code(&v), "forbidden");
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/v1/fleet",
            Some(READ_TOKEN),
            Some(json!({"mode": "paused"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        api.store.fleet_mode().await.unwrap().as_str(),
        "manual",
        "a refused call changes nothing"
    );
    // Probes stay open.
    let (s, _) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn every_documented_operation_is_served_behind_a_token() {
    let api = TestApi::start().await;
    let (s, doc) = api.admin(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/v1/workspaces/{name}"));
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            if op.get("x-sluice-role").is_none() {
                // Probes, /metrics and registry notifications: not behind an API token.
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{name}", "x").replace("{id}", "1");
            let (s, v) = api.call(m, &concrete, None, None).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
        }
    }
}

#[tokio::test]
async fn workspace_lifecycle_is_audited_with_the_token_name() {
    let api = TestApi::start().await;
    let name = unique("acme");
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(ws_body(&name)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["name"], name);
    assert_eq!(v["image"], fixture_image());
    assert_eq!(v["update_tier"], "canary");
    assert_eq!(v["update_mode"], "auto");
    assert_eq!(v["state"], "creating");
    assert_eq!(v["health"], "unknown");
    let desired = v["desired_digest"]
        .as_str()
        .expect("starts on the tag's current digest");
    assert!(desired.starts_with("sha256:"), "{v}");
    if let Ok(v1) = std::env::var("SLUICE_FIXTURE_GOOD_V1") {
        assert_eq!(desired, v1, "the digest the tag points at");
    }
    assert!(v["actual_digest"].is_null() && v["last_update"].is_null());
    assert_eq!(v["spec"]["volumes"][0]["mount"], "/data");

    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(ws_body(&name)))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "already_exists");

    let (s, list) = api
        .call(Method::GET, "/api/v1/workspaces", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);

    let digest = format!("sha256:{}", "a".repeat(64));
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{name}"),
            Some(json!({"update_tier": "production", "pinned_digest": digest, "env": {"K": "W"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["update_tier"], "production");
    assert_eq!(v["pinned_digest"], digest);
    assert_eq!(
        v["desired_digest"], digest,
        "a pin is what the reconciler converges to"
    );
    assert_eq!(v["spec"]["env"]["K"], "W");
    assert_eq!(
        v["spec"]["volumes"][0]["mount"], "/data",
        "untouched spec fields stay"
    );
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{name}"),
            Some(json!({"pinned_digest": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["pinned_digest"].is_null());

    let (s, v) = api
        .admin(
            Method::PUT,
            "/api/v1/fleet",
            Some(json!({"mode": "paused"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["mode"], "paused");
    let (_, v) = api
        .call(Method::GET, "/api/v1/fleet", Some(READ_TOKEN), None)
        .await;
    assert_eq!(v["mode"], "paused");

    // The reconciler may be busy with it (409 update_in_progress says: retry).
    let mut deleted = None;
    for _ in 0..240 {
        let path = format!("/api/v1/workspaces/{name}?purge=true");
        let (s, v) = api.admin(Method::DELETE, &path, None).await;
        if s == StatusCode::CONFLICT && code(&v) == "update_in_progress" {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        }
        deleted = Some((s, v));
        break;
    }
    let (s, v) = deleted.expect("the update ended within a minute");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["name"], name.as_str());
    let (s, _) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, events) = api
        .call(
            Method::GET,
            "/api/v1/events?since=0&limit=100",
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The reconciler's own events (actor `system`) interleave; the operator's are these.
    let all = events.as_array().unwrap();
    let events: Vec<&Value> = all.iter().filter(|e| e["actor"] != "system").collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "workspace.created",
            "workspace.changed",
            "workspace.changed",
            "fleet.mode_changed",
            "workspace.deleted"
        ]
    );
    assert!(
        events.iter().all(|e| e["actor"] == "ops-alice"),
        "{events:?}"
    );
    assert_eq!(events[1]["detail"]["update_tier"]["before"], "canary");
    assert_eq!(events[4]["detail"]["purge"], true);
    let first = events[0]["id"].as_i64().unwrap();
    let (_, later) = api
        .admin(
            Method::GET,
            &format!("/api/v1/events?since={first}&limit=2"),
            None,
        )
        .await;
    let later = later.as_array().unwrap();
    assert_eq!(later.len(), 2);
    assert!(later.iter().all(|e| e["id"].as_i64().unwrap() > first));
    assert!(later[0]["id"].as_i64() < later[1]["id"].as_i64());
}

#[tokio::test]
async fn invalid_bodies_get_400_naming_the_field() {
    let api = TestApi::start().await;
    let name = unique("bad");
    let (s, _) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(ws_body(&name)))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let path = format!("/api/v1/workspaces/{name}");
    let update = format!("{path}/update");
    let cases = [
        (
            Method::POST,
            update.as_str(),
            json!({"digest": "sha256:zz"}),
            "invalid_digest",
            "digest",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"update_tier": "canery"}),
            "invalid_tier",
            "update_tier",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"update_mode": "sometimes"}),
            "invalid_mode",
            "update_mode",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"pinned_digest": "sha256:xyz"}),
            "invalid_digest",
            "pinned_digest",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"volumes": [{"name": "../x", "mount": "/d"}]}),
            "invalid_spec",
            "volumes[0].name: ",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"volumes": [{"name": "a", "mount": "/a"}, {"name": "b", "mount": "/data/../etc"}]}),
            "invalid_spec",
            "volumes[1].mount: ",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"volumes": [{"name": "a", "mount": "data"}]}),
            "invalid_spec",
            "volumes[0].mount: ",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"volumes": [{"name": "a", "mount": "/"}]}),
            "invalid_spec",
            "volumes[0].mount: ",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": "127.0.0.1:5000/app:1", "volumes": [{"name": "/etc", "mount": "/data"}]}),
            "invalid_spec",
            "volumes[0].name: ",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": "127.0.0.1:5000/app:1", "volumes": [{"name": "v", "mount": "/data:ro"}]}),
            "invalid_spec",
            "volumes[0].mount: ",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"tierr": "canary"}),
            "unknown_field",
            "tierr",
        ),
        // Start-first would put two writers on a volume not marked shared.
        (
            Method::PATCH,
            path.as_str(),
            json!({"update_order": "start-first"}),
            "invalid_spec",
            "volumes[0].shared",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"update_order": "sideways"}),
            "invalid_spec",
            "update_order",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": "127.0.0.1:5000/app:1", "update_order": "start-first",
                   "ports": [{"container": 8080, "host": 18080}]}),
            "invalid_spec",
            "ports[0].host",
        ),
        (
            Method::PATCH,
            path.as_str(),
            json!({"update_order": "stop-first", "snapshot_on_start_first": true}),
            "invalid_spec",
            "snapshot_on_start_first",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"image": "127.0.0.1:5000/app:stable"}),
            "missing_field",
            "name",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": "Bad Name!", "image": "x:1"}),
            "invalid_name",
            "name",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": "UPPER//bad::ref"}),
            "invalid_image",
            "image",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": format!("127.0.0.1:5000/app@sha256:{}", "b".repeat(64))}),
            "invalid_image",
            "image",
        ),
        (
            Method::POST,
            "/api/v1/workspaces",
            json!({"name": unique("m"), "image": "127.0.0.1:5000/app:1", "ports": [{"container": "x"}]}),
            "invalid_spec",
            "ports[0].container",
        ),
        (
            Method::PUT,
            "/api/v1/fleet",
            json!({"mode": "sideways"}),
            "invalid_mode",
            "mode",
        ),
    ];
    for (method, p, body, want_code, field) in cases {
        let (s, v) = api.admin(method.clone(), p, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {p} {body}: {v}");
        assert_eq!(code(&v), want_code, "{body}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field),
            "{body}: message `{msg}` should name `{field}`"
        );
        if want_code == "invalid_spec" {
            assert!(
                msg.starts_with(field),
                "{body}: `{msg}` should start with `{field}`"
            );
        }
    }
    let (s, v) = api.admin(Method::GET, "/api/v1/events?limit=0", None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_limit"));
    // Nothing of that changed the workspace; only the creation was audited.
    let (_, v) = api.admin(Method::GET, &path, None).await;
    assert_eq!(v["update_tier"], "canary");
    let by_operator = operator_events(&api.store).await;
    assert_eq!(by_operator.len(), 1, "{by_operator:?}");
    let (s, v) = api
        .call(Method::POST, "/api/v1/workspaces", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "missing_field"),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_names_are_404() {
    let api = TestApi::start().await;
    for (m, p) in [
        (Method::GET, "/api/v1/workspaces/nosuch"),
        (Method::PATCH, "/api/v1/workspaces/nosuch"),
        (Method::DELETE, "/api/v1/workspaces/nosuch"),
        (Method::GET, "/api/v1/workspaces/NOT%20VALID"),
        (Method::GET, "/api/v1/nosuch"),
    ] {
        let body = (m == Method::PATCH).then(|| json!({"update_tier": "canary"}));
        let (s, v) = api.admin(m.clone(), p, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}: {v}");
        assert_eq!(code(&v), "not_found");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let api = TestApi::start_with(|s| s.api.body_limit = 4096).await;
    let mut body = ws_body(&unique("big"));
    body["env"]["PADDING"] = json!("x".repeat(8192));
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "body_too_large");
    assert!(api.store.workspaces().await.unwrap().is_empty());
}

#[tokio::test]
async fn images_outside_the_allowlist_are_refused() {
    let reg = registry();
    let api =
        TestApi::start_with(|s| s.images.allow = vec![format!("{reg}/sluice-fixtures/")]).await;
    let mut body = ws_body(&unique("out"));
    body["image"] = json!(format!("{reg}/other/app:stable"));
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "image_not_allowed");
    assert!(v["error"]["message"].as_str().unwrap().contains("image"));
    body["image"] = json!("docker.io/acme/app:stable");
    let (s, _) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        api.store.workspaces().await.unwrap().is_empty(),
        "nothing outside the allowlist is tracked"
    );
    body["image"] = json!(fixture_image());
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn a_tag_missing_from_its_registry_is_refused() {
    let api = TestApi::start().await;
    let mut body = ws_body(&unique("missing"));
    body["image"] = json!(format!("{}/sluice-fixtures/good:no-such-tag", registry()));
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "image_not_found"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("image:")
    );
    let mut body = ws_body(&unique("down"));
    body["image"] = json!("127.0.0.1:9/app:stable"); // nothing listens on the discard port
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_GATEWAY, "registry_unavailable"),
        "{v}"
    );
    assert!(api.store.workspaces().await.unwrap().is_empty());
}

/// Parses Prometheus text exposition: metric name → samples (labels, value).
pub fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(String, f64)>> = Default::default();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad sample line `{line}`"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in `{line}`"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        out.entry(name.to_owned())
            .or_default()
            .push((labels.to_owned(), value));
    }
    out
}

#[tokio::test]
async fn metrics_expose_workspace_counts_and_can_require_a_token() {
    let api = TestApi::start().await;
    for tier in ["canary", "production", "production"] {
        let mut b = ws_body(&unique("m"));
        b["update_tier"] = json!(tier);
        assert_eq!(
            api.admin(Method::POST, "/api/v1/workspaces", Some(b))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let text = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_prometheus(&text);
    assert_eq!(m["sluice_build_info"][0].1, 1.0);
    let ws = &m["sluice_workspaces"];
    // States move as the reconciler works; tiers do not.
    let tier_total = |tier: &str| {
        ws.iter()
            .filter(|(l, _)| l.contains(&format!("tier=\"{tier}\"")))
            .map(|s| s.1)
            .sum::<f64>()
    };
    assert_eq!(tier_total("production"), 2.0, "{ws:?}");
    assert_eq!(tier_total("canary"), 1.0, "{ws:?}");
    assert_eq!(
        ws.len(),
        2 * 7,
        "every tier × state is exported, zeros included: {ws:?}"
    );
    assert!(
        ws.iter()
            .any(|(l, _)| l == "state=\"quarantined\",tier=\"canary\"")
    );

    let locked = TestApi::start_with(|s| s.api.metrics_require_token = true).await;
    let r = locked
        .client
        .get(locked.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = locked
        .client
        .get(locked.url("/metrics"))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn insert_release(api: &TestApi, image: &str, digest: &str, status: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, status, updated_at) VALUES ($1, $2, 0, $3, 0) RETURNING id",
    )
    .bind(image)
    .bind(digest)
    .bind(status)
    .fetch_one(api.store.raw_pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn releases_are_listed_shown_and_rejected_with_an_audit_event() {
    let api = TestApi::start().await;
    let image = "127.0.0.1:5000/app:stable";
    let queued = insert_release(&api, image, &format!("sha256:{}", "1".repeat(64)), "queued").await;
    let done = insert_release(
        &api,
        image,
        &format!("sha256:{}", "2".repeat(64)),
        "completed",
    )
    .await;

    let (s, v) = api
        .call(
            Method::GET,
            "/api/v1/releases?status=queued",
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [queued]);
    assert_eq!(v[0]["image"], image);
    assert_eq!(v[0]["status"], "queued");
    assert!(v[0].get("detected_at").is_some() && v[0].get("changelog").is_some());
    let (_, all) = api.admin(Method::GET, "/api/v1/releases", None).await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (s, v) = api
        .admin(Method::GET, "/api/v1/releases?status=maybe", None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_status"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("status:")
    );

    let (s, v) = api
        .admin(Method::GET, &format!("/api/v1/releases/{done}"), None)
        .await;
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    for p in ["/api/v1/releases/999999", "/api/v1/releases/abc"] {
        let (s, _) = api.admin(Method::GET, p, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{p}");
    }
    let (s, _) = api
        .admin(Method::POST, "/api/v1/releases/999999/reject", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = api
        .call(
            Method::POST,
            &format!("/api/v1/releases/{queued}/reject"),
            Some(READ_TOKEN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/releases/{queued}/reject"),
            Some(json!({"reason": "known bad"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["status_reason"], "known bad");
    let (s, _) = api
        .admin(
            Method::POST,
            &format!("/api/v1/releases/{queued}/reject"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "rejecting twice is a no-op");
    let (s, v) = api
        .admin(
            Method::POST,
            &format!("/api/v1/releases/{done}/reject"),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "invalid_state"),
        "{v}"
    );

    let events = operator_events(&api.store).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].action, "release.rejected");
    assert_eq!(events[0].actor, "ops-alice");
    assert_eq!(events[0].subject, format!("release:{queued}"));
    assert_eq!(events[0].detail["reason"], "known bad");
}

#[tokio::test]
async fn handlers_are_cut_off_at_the_request_timeout() {
    let api =
        TestApi::start_with(|s| s.api.request_timeout = std::time::Duration::from_millis(300))
            .await;
    // Another writer holds the database (SQLite) or the row (PostgreSQL): the handler's
    // write waits on it and the request deadline cuts it off first.
    let mut lock = api.store.raw_pool().acquire().await.unwrap();
    let hold: &[&'static str] = match api.store.engine() {
        sluice::store::Engine::Sqlite => &["BEGIN IMMEDIATE"],
        sluice::store::Engine::Postgres => &[
            "BEGIN",
            "SELECT value FROM settings WHERE key = 'fleet_mode' FOR UPDATE",
        ],
    };
    for sql in hold {
        sqlx::query(*sql).execute(&mut *lock).await.unwrap();
    }
    let (s, v) = api
        .admin(
            Method::PUT,
            "/api/v1/fleet",
            Some(json!({"mode": "paused"})),
        )
        .await;
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT, "{v}");
    assert_eq!(code(&v), "timeout", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not finish within 300ms"), "{v}");
    // The cut-off write left nothing behind: no mode change, no audit event.
    let (s, v) = api.admin(Method::GET, "/api/v1/fleet", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["mode"], "manual", "{v}");
    let events = api.store.events(0, 100).await.unwrap();
    assert!(
        events.iter().all(|e| e.action != "fleet.mode_changed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn every_exposed_metric_is_documented_and_the_core_ones_are_there() {
    let api = TestApi::start().await;
    let text = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse_prometheus(&text); // well-formed
    let exposed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for name in [
        "sluice_build_info",
        "sluice_workspaces",
        "sluice_registry_probe_duration_seconds",
        "sluice_releases_detected_total",
    ] {
        assert!(
            exposed.contains(&name),
            "{name} missing from /metrics:\n{text}"
        );
    }
    let docs =
        std::fs::read_to_string(crate::support::repo_root().join("docs/operations.md")).unwrap();
    for name in &exposed {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is exposed but not documented in docs/operations.md"
        );
    }
}

#[tokio::test]
async fn the_instance_names_its_role_in_readyz_the_fleet_view_and_metrics() {
    let api = TestApi::start().await;
    let engine = sluice::store::TestDb::engine_of_run();
    let ready: Value = reqwest::get(api.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let instance = &ready["instance"];
    assert_eq!(instance["role"], "leader", "{ready}");
    assert_eq!(instance["engine"], engine.as_str(), "{ready}");
    let (s, fleet) = api
        .call(Method::GET, "/api/v1/fleet", Some(READ_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{fleet}");
    assert_eq!(fleet["instance"], *instance, "{fleet}");
    let metrics = reqwest::get(api.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\nsluice_leader 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nsluice_leader_changes_total 1\n"),
        "{metrics}"
    );
    match engine {
        sluice::store::Engine::Sqlite => {
            assert_eq!(instance["epoch"], 0, "{ready}");
            assert!(fleet["leader"].is_null(), "no lease on SQLite: {fleet}");
        }
        sluice::store::Engine::Postgres => {
            let epoch = instance["epoch"].as_i64().expect("an epoch");
            assert!(epoch >= 1, "{ready}");
            assert_eq!(fleet["leader"]["epoch"], epoch, "{fleet}");
            assert_eq!(fleet["leader"]["holder"], instance["name"], "{fleet}");
            let events = api.store.events(0, 100).await.unwrap();
            let acquired: Vec<_> = events
                .iter()
                .filter(|e| e.action == "leader.acquired")
                .collect();
            assert_eq!(acquired.len(), 1, "{events:?}");
            assert_eq!(acquired[0].actor, "system");
            assert_eq!(acquired[0].detail["epoch"], epoch);
        }
    }
}

#[tokio::test]
async fn process_and_limit_fields_are_checked_at_the_edge_and_patched() {
    let api = TestApi::start().await;
    let name = unique("limits");
    for (field, value, named) in [
        ("entrypoint", json!([]), "entrypoint"),
        ("user", json!("root user"), "user"),
        ("working_dir", json!("srv"), "working_dir"),
        ("hostname", json!("-x"), "hostname"),
        ("stop_signal", json!("TERM"), "stop_signal"),
        ("read_only_rootfs", json!("yes"), "read_only_rootfs"),
        ("stop_timeout", json!(3601), "stop_timeout"),
        (
            "health",
            json!({"tcp": {"port": 8080}, "image": true}),
            "health",
        ),
        ("health", json!({"tcp": {"port": 0}}), "health.tcp.port"),
        ("health", json!({"command": []}), "health.command"),
        ("stop_timeout", json!(-1), "stop_timeout"),
        ("resources", json!({"memory": 1024}), "resources.memory"),
        (
            "resources",
            json!({"memory_swap": 1_073_741_824}),
            "resources.memory_swap",
        ),
        (
            "resources",
            json!({"cpu_shares": 1}),
            "resources.cpu_shares",
        ),
        (
            "resources",
            json!({"cpuset_cpus": "3-1"}),
            "resources.cpuset_cpus",
        ),
        (
            "resources",
            json!({"pids_limit": 0}),
            "resources.pids_limit",
        ),
        ("resources", json!({"gpus": 1}), "resources"),
        ("restart", json!("on-failure:0"), "restart"),
        (
            "resources",
            json!({"nano_cpus": 500_000_000, "cpu_quota": 50_000}),
            "resources.nano_cpus",
        ),
        ("networks", json!([{"name": "host"}]), "networks[0].name"),
        (
            "networks",
            json!([{"name": "front", "aliases": ["not an alias"]}]),
            "networks[0].aliases[0]",
        ),
        (
            "networks",
            json!([{"name": "a"}, {"name": "a"}]),
            "networks[1].name",
        ),
        ("drift", json!("ignore"), "drift"),
        ("tmpfs", json!({"run": ""}), "tmpfs.run"),
        ("tmpfs", json!({"/data": ""}), "tmpfs./data"),
        ("tmpfs", json!({"/tmp/../etc": ""}), "tmpfs./tmp/../etc"),
        ("extra_hosts", json!(["db"]), "extra_hosts[0]"),
        ("extra_hosts", json!(["db:not-an-ip"]), "extra_hosts[0]"),
        ("dns", json!(["8.8.8"]), "dns[0]"),
        (
            "ulimits",
            json!([{"name": "nofiles", "soft": 1, "hard": 2}]),
            "ulimits[0]",
        ),
        (
            "ulimits",
            json!([{"name": "nofile", "soft": 3, "hard": 2}]),
            "ulimits[0]",
        ),
        (
            "sysctls",
            json!({"kernel.panic": "1"}),
            "sysctls.kernel.panic",
        ),
        ("log", json!({"driver": "blackhole"}), "log.driver"),
        (
            "ports",
            json!([{"container": 53, "protocol": "sctp"}]),
            "ports[0].protocol",
        ),
        (
            "ports",
            json!([{"container": 53, "host_ip": "localhost"}]),
            "ports[0].host_ip",
        ),
    ] {
        let mut body = ws_body(&name);
        body[field] = value;
        let (s, v) = api
            .admin(Method::POST, "/api/v1/workspaces", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(code(&v), "invalid_spec", "{field}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(named), "{field}: {message}");
    }
    // A container's own name comes with adoption only.
    let mut body = ws_body(&name);
    body["container_name"] = json!("mine");
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "unknown_field"),
        "{v}"
    );
    let (_, list) = api.admin(Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(list, json!([]), "a refused create leaves nothing behind");

    let mut body = ws_body(&name);
    body["user"] = json!("1000");
    body["resources"] = json!({"memory": 67_108_864, "pids_limit": 50});
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["spec"]["resources"]["memory"], 67_108_864);
    let path = format!("/api/v1/workspaces/{name}");
    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"resources": {"cpu_shares": 256}, "read_only_rootfs": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["spec"]["resources"],
        json!({"cpu_shares": 256}),
        "the object replaces the stored one"
    );
    assert_eq!(v["spec"]["read_only_rootfs"], true);
    assert_eq!(v["spec"]["user"], "1000", "untouched fields stay");
    let (s, v) = api
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"resources": null, "user": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["spec"].get("resources").is_none(), "{v}");
    assert!(v["spec"].get("user").is_none(), "{v}");
    let (s, v) = api
        .admin(Method::PATCH, &path, Some(json!({"hostname": "bad_name"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (_, after) = api.admin(Method::GET, &path, None).await;
    assert!(
        after["spec"].get("hostname").is_none(),
        "a refused patch changes nothing"
    );
}

#[tokio::test]
async fn host_paths_and_privileges_follow_the_operators_policy() {
    let allowed = tempfile::tempdir().unwrap();
    let prefix = allowed.path().to_owned();
    let api = TestApi::start_with(move |s| s.workspaces.allowed_bind_prefixes = vec![prefix]).await;
    let inside = allowed.path().join("tenant-a");
    let name = unique("policy");
    for (field, value, named) in [
        (
            "binds",
            json!([{"source": "/etc", "target": "/etc2"}]),
            "binds[0].source",
        ),
        (
            "binds",
            json!([{"source": "/var/run/docker.sock", "target": "/d.sock"}]),
            "binds[0].source",
        ),
        (
            "binds",
            json!([{"source": "/", "target": "/host"}]),
            "binds[0].source",
        ),
        (
            "binds",
            json!([{"source": allowed.path(), "target": "/all"}]),
            "binds[0].source",
        ),
        (
            "binds",
            json!([{"source": format!("{}/../x", allowed.path().display()), "target": "/x"}]),
            "binds[0].source",
        ),
        (
            "binds",
            json!([{"source": inside, "target": "/data"}]),
            "binds[0].target",
        ),
        ("cap_add", json!(["SYS_ADMIN"]), "cap_add[0]"),
        ("cap_add", json!(["CAP_ALL"]), "cap_add[0]"),
        ("cap_add", json!(["net admin"]), "cap_add[0]"),
        (
            "security_opt",
            json!(["seccomp=unconfined"]),
            "security_opt[0]",
        ),
        ("security_opt", json!(["label=disable"]), "security_opt[0]"),
        ("security_opt", json!(["privileged"]), "security_opt[0]"),
    ] {
        let mut body = ws_body(&name);
        body[field] = value;
        let (s, v) = api
            .admin(Method::POST, "/api/v1/workspaces", Some(body))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert_eq!(code(&v), "invalid_spec", "{field}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(named), "{field}: {message}");
    }
    let (_, list) = api.admin(Method::GET, "/api/v1/workspaces", None).await;
    assert_eq!(list, json!([]), "a refused create leaves nothing behind");
    let mut body = ws_body(&name);
    body["binds"] = json!([{"source": inside, "target": "/shared"}]);
    body["cap_add"] = json!(["NET_BIND_SERVICE"]);
    body["security_opt"] = json!(["no-new-privileges:true"]);
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = api
        .admin(
            Method::PATCH,
            &format!("/api/v1/workspaces/{name}"),
            Some(json!({"cap_add": ["SYS_PTRACE"]})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_spec"),
        "{v}"
    );
    let (_, w) = api
        .admin(Method::GET, &format!("/api/v1/workspaces/{name}"), None)
        .await;
    assert_eq!(
        w["spec"]["cap_add"],
        json!(["NET_BIND_SERVICE"]),
        "a refused patch changes nothing"
    );
    drop(api);

    // An operator who allows privileged-equivalents gets them; bind prefixes still hold.
    let api = TestApi::start_with(|s| s.workspaces.allow_privileged = true).await;
    let name = unique("privileged");
    let mut body = ws_body(&name);
    body["cap_add"] = json!(["SYS_ADMIN"]);
    body["security_opt"] = json!(["seccomp=unconfined"]);
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut body = ws_body(&unique("nobinds"));
    body["binds"] = json!([{"source": "/srv/x", "target": "/x"}]);
    let (s, v) = api
        .admin(Method::POST, "/api/v1/workspaces", Some(body))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_spec"),
        "no prefixes: no binds: {v}"
    );
}
