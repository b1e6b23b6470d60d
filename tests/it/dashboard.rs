//! The dashboard (`/ui/`) over HTTP against a daemon served in-process: sign-in trades
//! a token for an `HttpOnly; SameSite=Strict` session cookie and never shows the token;
//! pages carry a strict Content-Security-Policy and load only the binary's own script;
//! the fleet and events pages show what the API shows; a `read` session sees no action
//! and its POSTs are refused; an admin's POST without the session's CSRF token is
//! refused; the page script's event stream needs a session.

use reqwest::StatusCode;
use serde_json::json;

use crate::api::{ADMIN_TOKEN, READ_TOKEN, TestApi, fixture_image};

/// A form body, as a browser sends it.
fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k.as_ref(), v.as_ref());
    }
    out.finish()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Signs in with `token`; returns the `Cookie` header value.
async fn sign_in(api: &TestApi, token: &str) -> String {
    let r = client()
        .post(api.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("token", token)]))
        .send()
        .await
        .expect("POST /ui/login");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/fleet");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for want in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age="] {
        assert!(set.contains(want), "{set}");
    }
    assert!(!set.contains(token), "{set}");
    set.split(';').next().expect("name=value").to_owned()
}

async fn get(api: &TestApi, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = client()
        .get(api.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    (r.status(), r.text().await.expect("body"))
}

/// The session's CSRF token, as the page's forms carry it.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with the CSRF token");
    html[at + 19..].chars().take_while(|c| *c != '"').collect()
}

#[tokio::test]
async fn sign_in_pages_roles_and_csrf() {
    let api = TestApi::start().await;
    let ws = crate::support::unique("dash");
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(ADMIN_TOKEN),
            Some(
                json!({ "name": ws, "image": fixture_image(), "update_tier": "canary",
                "update_mode": "manual" }),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Not signed in: pages send the browser to the sign-in form, which says where a
    // newcomer finds a token; actions and the stream are refused.
    let r = client()
        .get(api.url("/ui/fleet"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/ui/login");
    let r = client()
        .get(api.url("/ui/login"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::OK);
    let login = r.text().await.expect("body");
    assert!(login.contains("admin.token"), "{login}");
    assert!(!login.contains("<script>"), "no inline script: {login}");
    let r = client()
        .post(api.url("/ui/do"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("what", "reject"), ("id", "1")]))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .get(api.url("/ui/stream"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = client()
        .post(api.url("/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("token", "not-a-token-0123456789")]))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());

    // An admin: the fleet shows the workspace by tier, the events page its creation;
    // the token appears nowhere.
    let admin = sign_in(&api, ADMIN_TOKEN).await;
    let (s, fleet) = get(&api, &admin, "/ui/fleet").await;
    assert_eq!(s, StatusCode::OK);
    assert!(fleet.contains(&ws) && fleet.contains("canary"), "{fleet}");
    assert!(fleet.contains("src=\"/ui/assets/app.js\""), "{fleet}");
    assert!(!fleet.contains(ADMIN_TOKEN));
    let (_, filtered) = get(&api, &admin, "/ui/fleet?q=no-such-workspace").await;
    assert!(!filtered.contains(&ws), "the search filters");
    let (_, events) = get(&api, &admin, "/ui/events?action=workspace.created").await;
    assert!(events.contains(&format!("workspace:{ws}")), "{events}");
    let (s, page) = get(&api, &admin, &format!("/ui/workspaces/{ws}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("Spec") && page.contains("workspace.created"),
        "{page}"
    );
    let (_, script) = get(&api, &admin, "/ui/assets/app.js").await;
    assert!(script.contains("EventSource"), "{script}");

    // The confirmation names the blast radius; without the CSRF token the action is
    // refused, with it the API's own handler answers (here: no such release).
    let (s, confirm) = get(&api, &admin, "/ui/confirm?what=reject&id=999999").await;
    assert_eq!(s, StatusCode::OK);
    assert!(confirm.contains("Reject release 999999"), "{confirm}");
    let csrf = csrf_of(&confirm);
    let post = |cookie: &str, form: Vec<(&'static str, String)>| {
        client()
            .post(api.url("/ui/do"))
            .header("cookie", cookie.to_owned())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&form))
            .send()
    };
    let r = post(
        &admin,
        vec![("what", "reject".into()), ("id", "999999".into())],
    )
    .await
    .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "forged: no CSRF token");
    let r = post(
        &admin,
        vec![
            ("what", "reject".into()),
            ("id", "999999".into()),
            ("csrf", "0".repeat(64)),
        ],
    )
    .await
    .expect("POST");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "forged: a wrong CSRF token"
    );
    let r = post(
        &admin,
        vec![
            ("what", "reject".into()),
            ("id", "999999".into()),
            ("csrf", csrf.clone()),
        ],
    )
    .await
    .expect("POST");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "past the CSRF check");

    // The page script's stream follows the audit trail with the session.
    let r = client()
        .get(api.url("/ui/stream"))
        .header("cookie", &admin)
        .send()
        .await
        .expect("GET /ui/stream");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    drop(r);

    // A read session sees no action and may not act, CSRF token or not.
    let reader = sign_in(&api, READ_TOKEN).await;
    let (_, fleet) = get(&api, &reader, "/ui/fleet").await;
    assert!(fleet.contains(&ws), "{fleet}");
    let (_, releases) = get(&api, &reader, "/ui/releases").await;
    assert!(!releases.contains("/ui/confirm"), "{releases}");
    let (s, _) = get(&api, &reader, "/ui/confirm?what=reject&id=999999").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let reader_csrf = csrf_of(&fleet);
    let r = post(
        &reader,
        vec![
            ("what", "reject".into()),
            ("id", "999999".into()),
            ("csrf", reader_csrf),
        ],
    )
    .await
    .expect("POST");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Signing out ends the session on the server.
    let r = post(&admin, vec![("csrf", csrf)]).await.expect("POST");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "/ui/do with no action");
    let r = client()
        .post(api.url("/ui/logout"))
        .header("cookie", &admin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(&[("csrf", csrf_of(&fleet_of(&api, &admin).await))]))
        .send()
        .await
        .expect("POST /ui/logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = client()
        .get(api.url("/ui/fleet"))
        .header("cookie", &admin)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed out");
}

async fn fleet_of(api: &TestApi, cookie: &str) -> String {
    get(api, cookie, "/ui/fleet").await.1
}

/// The apply confirmation names exactly the workspaces the apply would add — the
/// rollout's own decision run without writing: a workspace pinned to another digest is
/// not counted, and nothing is applied by looking.
#[tokio::test]
async fn the_apply_confirmation_counts_what_the_rollout_would_update() {
    let api = TestApi::start().await;
    let canary = crate::support::unique("dash-c");
    let pinned = crate::support::unique("dash-p");
    let prod = crate::support::unique("dash-q");
    for (name, tier) in [
        (&canary, "canary"),
        (&pinned, "canary"),
        (&prod, "production"),
    ] {
        let (s, v) = api
            .admin(
                reqwest::Method::POST,
                "/api/v1/workspaces",
                Some(json!({ "name": name, "image": fixture_image(), "update_tier": tier })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let other = format!("sha256:{}", "b".repeat(64));
    let (s, v) = api
        .admin(
            reqwest::Method::PATCH,
            &format!("/api/v1/workspaces/{pinned}"),
            Some(json!({ "pinned_digest": other })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let release: i64 = sqlx::query_scalar(
        "INSERT INTO releases (image, digest, detected_at, status, updated_at) \
         VALUES ($1, $2, 0, 'queued', 0) RETURNING id",
    )
    .bind(fixture_image())
    .bind(format!("sha256:{}", "c".repeat(64)))
    .fetch_one(api.store.raw_pool())
    .await
    .expect("release");
    let admin = sign_in(&api, ADMIN_TOKEN).await;

    let (s, page) = get(
        &api,
        &admin,
        &format!("/ui/confirm?what=apply&id={release}&tier=canary"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("1 workspace(s) on tier canary"), "{page}");
    assert!(page.contains(&format!("{canary} (canary)")), "{page}");
    assert!(
        page.contains(&format!("running it already): {pinned}.")),
        "a pinned workspace is named as left out, not counted: {page}"
    );

    let (s, page) = get(
        &api,
        &admin,
        &format!("/ui/confirm?what=apply&id={release}&tier=all"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("2 workspace(s)"), "{page}");
    assert!(page.contains(&format!("{prod} (production)")), "{page}");
    assert!(!page.contains(&format!("{pinned} (")), "{page}");
    let (_, v) = api
        .admin(
            reqwest::Method::GET,
            &format!("/api/v1/releases/{release}"),
            None,
        )
        .await;
    assert_eq!(v["status"], "queued", "looking applied nothing: {v}");
}

/// The workspace page lists under each attempt every phase it went through, with when
/// it began and how long it lasted: a journal written through the store as the
/// reconciler writes it.
#[tokio::test]
async fn the_workspace_page_shows_each_attempts_phases_and_their_durations() {
    use sluice::domain::{Digest, UpdatePhase as P, WorkspaceName};
    let api = TestApi::start().await;
    let ws = crate::support::unique("dash-ph");
    let (s, v) = api
        .admin(
            reqwest::Method::POST,
            "/api/v1/workspaces",
            Some(json!({ "name": ws, "image": fixture_image(), "update_mode": "manual" })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let w = api
        .store
        .workspace(&WorkspaceName::parse(&ws).expect("name"))
        .await
        .expect("workspace");
    let t0 = chrono::Utc::now() - chrono::Duration::seconds(60);
    let at = |s: i64| t0 + chrono::Duration::milliseconds(s * 100);
    let row = api
        .store
        .open_update(w.id, None, None, &Digest::of_bytes(b"v2"), at(0))
        .await
        .expect("open");
    api.store
        .advance_update(row.id, P::Pulling, P::Stopping, at(25))
        .await
        .expect("advance");
    api.store
        .advance_update(row.id, P::Stopping, P::Snapshotting, at(37))
        .await
        .expect("advance");

    let admin = sign_in(&api, ADMIN_TOKEN).await;
    let (s, page) = get(&api, &admin, &format!("/ui/workspaces/{ws}")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("table class=\"phases\""), "{page}");
    assert!(page.contains("<th>duration</th>"), "{page}");
    for shown in [
        ">pulling</td>",
        ">2.5 s</td>",
        ">stopping</td>",
        ">1.2 s</td>",
        ">snapshotting</td>",
    ] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }
}
