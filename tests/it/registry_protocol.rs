//! Registry behaviours the local distribution registry cannot show without a token
//! service or a fault: the bearer-token flow, a HEAD without `Docker-Content-Digest`
//! (GET fallback, counted apart) and `429 Retry-After`. A small HTTP stub on loopback
//! speaks the distribution API's wire protocol for these cases.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use sluice::domain::{Digest, ImageRef};
use sluice::registry::{Registry, RegistryError, RequestKind};

use crate::registry::{add_workspace, fresh_store, rig, settings};

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[]}"#;

#[derive(Default)]
struct Counts {
    tokens: AtomicUsize,
    heads: AtomicUsize,
    gets: AtomicUsize,
}

#[derive(Clone)]
struct Stub {
    addr: String,
    counts: Arc<Counts>,
}

fn challenge(stub: &Stub) -> Response {
    let value = format!(
        "Bearer realm=\"http://{}/token\",service=\"stub\"",
        stub.addr
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, value)],
    )
        .into_response()
}

async fn token(State(stub): State<Stub>) -> Response {
    stub.counts.tokens.fetch_add(1, Ordering::SeqCst);
    axum::Json(serde_json::json!({ "token": "tok-123", "expires_in": 300 })).into_response()
}

async fn v2(State(stub): State<Stub>) -> Response {
    challenge(&stub)
}

async fn manifests(
    State(stub): State<Stub>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Response {
    if method == Method::HEAD {
        stub.counts.heads.fetch_add(1, Ordering::SeqCst);
    } else {
        stub.counts.gets.fetch_add(1, Ordering::SeqCst);
    }
    let digest = Digest::of_bytes(MANIFEST);
    let ct = (
        header::CONTENT_TYPE,
        "application/vnd.oci.image.manifest.v1+json",
    );
    match rest.split('/').next() {
        Some("secure") => {
            let ok = headers
                .get(header::AUTHORIZATION)
                .is_some_and(|v| v == "Bearer tok-123");
            if !ok {
                return challenge(&stub);
            }
            let d = ("docker-content-digest", digest.as_str().to_owned());
            (StatusCode::OK, [ct], [d], MANIFEST).into_response()
        }
        Some("nodigest") => (StatusCode::OK, [ct], MANIFEST).into_response(),
        Some("limited") => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "120")],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_stub() -> Stub {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stub = Stub {
        addr: listener.local_addr().unwrap().to_string(),
        counts: Arc::default(),
    };
    let app = Router::new()
        .route("/token", get(token))
        .route("/v2/", get(v2))
        .route("/v2/{*rest}", any(manifests))
        .with_state(stub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    stub
}

#[tokio::test]
async fn the_bearer_token_flow_runs_once_and_is_reused() {
    let stub = start_stub().await;
    let (_d, store) = fresh_store().await;
    let r = rig(&store, &settings(60));
    let image = ImageRef::parse(&format!("{}/secure/app:stable", stub.addr)).unwrap();
    for _ in 0..3 {
        let got = r.registry.resolve(&image).await.unwrap();
        assert_eq!(got.digest, Digest::of_bytes(MANIFEST));
        assert_eq!(got.via, RequestKind::Head);
    }
    assert_eq!(
        stub.counts.tokens.load(Ordering::SeqCst),
        1,
        "token fetched once"
    );
    assert_eq!(
        stub.counts.heads.load(Ordering::SeqCst),
        4,
        "one challenged HEAD, then one HEAD per probe"
    );
    assert_eq!(stub.counts.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_head_without_a_digest_falls_back_to_a_counted_get() {
    let stub = start_stub().await;
    let (_d, store) = fresh_store().await;
    let r = rig(&store, &settings(60));
    let image = ImageRef::parse(&format!("{}/nodigest/app:stable", stub.addr)).unwrap();
    let got = r.registry.resolve(&image).await.unwrap();
    assert_eq!(
        got.digest,
        Digest::of_bytes(MANIFEST),
        "the manifest's own hash"
    );
    assert_eq!(got.via, RequestKind::Get);
    assert_eq!(r.requests.requests_of_kind("head"), 1);
    assert_eq!(r.requests.requests_of_kind("get"), 1);
}

#[tokio::test]
async fn a_429_honours_retry_after_and_creates_nothing() {
    let stub = start_stub().await;
    let (_d, store) = fresh_store().await;
    let image = format!("{}/limited/app:stable", stub.addr);
    add_workspace(&store, &image, None).await;
    let r = rig(&store, &settings(60));
    let e = r
        .registry
        .resolve(&ImageRef::parse(&image).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::RateLimited { .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    let pass = r.watcher.pass().await.unwrap();
    assert_eq!((pass.failed, pass.releases.len()), (1, 0));
    let st = store.tracked_image(&image).await.unwrap();
    assert_eq!(
        (st.next_probe_at.unwrap() - r.clock_now()).num_seconds(),
        120,
        "Retry-After (120 s) wins over the 30 s backoff"
    );
    assert!(st.last_error.unwrap().contains("rate limiting"));
}
