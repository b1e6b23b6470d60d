//! The canary smoke-check HTTP adapter against a real fixture container: it reaches the
//! workspace the way the health gate does (container IP on its network) and the
//! controller's verdict passes or names the failure.

use std::time::Duration;

use sluice::config::SmokeCheck;
use sluice::reconciler::smoke::HttpSmokeProbe;
use sluice::rollout::smoke::{SmokeProbe, run_checks};
use sluice::runtime::ContainerRuntime;

use crate::reconciler::env;

fn check(image: &str, body: &str) -> SmokeCheck {
    SmokeCheck {
        image: image.to_owned(),
        path: "/version".to_owned(),
        status: 200,
        body_contains: Some(body.to_owned()),
    }
}

#[tokio::test]
async fn smoke_checks_reach_the_canary_container_over_http() {
    let mut e = env("smoke").await;
    let d2 = e.fixture("good", "v2");
    e.desire(&d2).await;
    e.rec.converge_all().await.unwrap();
    let probe = HttpSmokeProbe::new(
        e.rec.runtime().clone(),
        e.store.clone(),
        Duration::from_secs(5),
    );
    let image = format!("{}:stable", e.repo);
    let name = e.ws.name.as_str();

    let got = probe.get(name, "/version").await.unwrap();
    assert_eq!((got.status, got.body.trim()), (200, "v2"));
    assert_eq!(
        run_checks(&probe, &[check(&image, "v2")], &image, name).await,
        None
    );
    assert_eq!(
        run_checks(&probe, &[check(&image, "nope")], &image, name).await,
        Some("GET /version: body does not contain `nope`".to_owned())
    );
    // A wrong status is named too.
    let missing = SmokeCheck {
        path: "/no-such-page".to_owned(),
        body_contains: None,
        ..check(&image, "")
    };
    let why = run_checks(&probe, &[missing], &image, name).await.unwrap();
    assert!(why.starts_with("GET /no-such-page: status 404"), "{why}");

    // A stopped canary fails the check instead of hanging.
    e.rec
        .runtime()
        .stop(&e.container(), Duration::from_secs(5))
        .await
        .unwrap();
    let why = run_checks(&probe, &[check(&image, "v2")], &image, name)
        .await
        .unwrap();
    assert!(why.contains("is not running"), "{why}");
}
