//! Webhook notifications: signed payloads to a receiver on loopback, retries after a 500,
//! and a hanging sink that only loses its own notifications.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use sluice::config::{Secret, WebhookSink, WebhookUrl};
use sluice::store::NewEvent;

use crate::api::{TestApi, parse_prometheus};

/// Requests received so far: headers and body.
pub type Received = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Received,
    /// Statuses to answer with, in order; 200 once exhausted.
    pub plan: Arc<Mutex<VecDeque<u16>>>,
    pub hang: bool,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    r.got.lock().unwrap().push((headers, body.to_vec()));
    let code = r.plan.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

pub async fn start_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

fn sink(url: &str, secret: Option<&str>, format: Option<&str>) -> WebhookSink {
    WebhookSink {
        url: WebhookUrl::parse(url).expect("a receiver URL"),
        events: vec![],
        secret: secret.map(Secret::new),
        format: format.map(Into::into),
    }
}

fn fast(s: &mut sluice::config::Settings) {
    s.notifications.poll_interval = Duration::from_millis(50);
    s.notifications.backoff = Duration::from_millis(20);
    s.notifications.timeout = Duration::from_secs(2);
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn event(subject: &str, action: &str, detail: Value) -> NewEvent {
    NewEvent {
        actor: "system".into(),
        subject: subject.into(),
        action: action.into(),
        detail,
        rollout_id: subject
            .strip_prefix("rollout:")
            .and_then(|n| n.parse().ok()),
        workspace: subject.strip_prefix("workspace:").map(Into::into),
    }
}

#[tokio::test]
async fn receivers_get_signed_payloads_in_json_and_slack_form() {
    let json_rx = Receiver::default();
    let slack_rx = Receiver::default();
    let json_url = start_receiver(json_rx.clone()).await;
    let slack_url = start_receiver(slack_rx.clone()).await;
    let api = TestApi::start_with(|s| {
        fast(s);
        s.notifications.webhooks = vec![
            sink(&json_url, Some("hook-secret"), None),
            WebhookSink {
                events: vec!["workspace.quarantined".into()],
                ..sink(&slack_url, None, Some("slack"))
            },
        ];
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the tail starts after existing events
    let now = chrono::Utc::now();
    let digest = format!("sha256:{}", "e".repeat(64));
    api.store
        .append_event(
            &event(
                "release:1",
                "release.detected",
                json!({"image": "reg/app:stable", "digest": digest}),
            ),
            now,
        )
        .await
        .unwrap();
    api.store
        .append_event(&event("fleet", "fleet.mode_changed", json!({})), now)
        .await
        .unwrap();
    api.store
        .append_event(
            &event(
                "rollout:2",
                "rollout.transition",
                json!({"from": "canary", "to": "soaking"}),
            ),
            now,
        )
        .await
        .unwrap();
    api.store
        .append_event(
            &event(
                "workspace:acme",
                "update_quarantined",
                json!({"error": "restore failed"}),
            ),
            now,
        )
        .await
        .unwrap();

    wait_for("three json notifications", || {
        json_rx.got.lock().unwrap().len() >= 3
    })
    .await;
    wait_for("one slack notification", || {
        !slack_rx.got.lock().unwrap().is_empty()
    })
    .await;
    let got = json_rx.got.lock().unwrap().clone();
    let kinds: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "release.detected",
            "rollout.state_changed",
            "workspace.quarantined"
        ],
        "fleet changes are not notified"
    );
    for (headers, body) in &got {
        let sig = headers["x-sluice-signature"].to_str().unwrap();
        assert_eq!(
            sig,
            sluice::notify::signature("hook-secret", body),
            "HMAC-SHA256 of the exact body"
        );
        assert_ne!(sig, sluice::notify::signature("other-secret", body));
    }
    let first: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(first["detail"]["digest"], digest);
    assert_eq!(got[0].0["x-sluice-event"], "release.detected");
    let second: Value = serde_json::from_slice(&got[1].1).unwrap();
    assert_eq!(second["rollout_id"], 2);

    let slack = slack_rx.got.lock().unwrap().clone();
    assert_eq!(slack.len(), 1, "only the subscribed kind");
    assert!(
        slack[0].0.get("x-sluice-signature").is_none(),
        "no secret, no signature"
    );
    let text: Value = serde_json::from_slice(&slack[0].1).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .contains("workspace acme QUARANTINED"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_and_a_hanging_one_blocks_nothing() {
    let flaky = Receiver {
        plan: Arc::new(Mutex::new(VecDeque::from([500, 500]))),
        ..Default::default()
    };
    let flaky_url = start_receiver(flaky.clone()).await;
    let hanging = Receiver {
        hang: true,
        ..Default::default()
    };
    let hanging_url = start_receiver(hanging).await;
    let api = TestApi::start_with(|s| {
        fast(s);
        s.notifications.queue_capacity = 4;
        s.notifications.webhooks = vec![
            sink(&flaky_url, Some("k"), None),
            sink(&hanging_url, None, None),
        ];
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = chrono::Utc::now();
    api.store
        .append_event(
            &event(
                "workspace:w1",
                "update_rolled_back",
                json!({"from": "sha256:x"}),
            ),
            now,
        )
        .await
        .unwrap();
    wait_for("delivery after two 500s", || {
        flaky.got.lock().unwrap().len() >= 3
    })
    .await;
    let got = flaky.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        3,
        "two failures, then success, then no more attempts"
    );
    assert!(
        got.iter().all(|(_, b)| b == &got[0].1),
        "each retry carries the same payload"
    );

    // The hanging sink holds one delivery and queues four; the rest are dropped, while
    // the other sink and the API carry on.
    // One at a time, so the healthy sink's small queue never overflows.
    for i in 0..10 {
        api.store
            .append_event(
                &event(
                    "workspace:w2",
                    "update_succeeded",
                    json!({"to": format!("d{i}")}),
                ),
                now,
            )
            .await
            .unwrap();
        wait_for("the healthy sink to receive it", || {
            flaky.got.lock().unwrap().len() > 3 + i
        })
        .await;
    }
    let (s, _) = api.admin(reqwest::Method::GET, "/api/v1/fleet", None).await;
    assert_eq!(s, 200);
    let metrics = api
        .client
        .get(api.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse_prometheus(&metrics);
    let samples = &m["sluice_notifications_total"];
    let value = |sink_prefix: &str, outcome: &str| {
        samples
            .iter()
            .filter(|(l, _)| {
                l.contains(&format!("outcome=\"{outcome}\""))
                    && l.contains(&format!("sink=\"{sink_prefix}"))
            })
            .map(|s| s.1)
            .sum::<f64>()
    };
    assert_eq!(value("0:", "delivered"), 11.0, "{samples:?}");
    assert!(value("1:", "dropped") >= 5.0, "{samples:?}");
}

/// Starts the notifier alone on `store` with one sink; returns what stops it.
fn notifier(
    store: &sluice::store::Store,
    url: &str,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let mut s = sluice::config::Settings::default();
    fast(&mut s);
    s.notifications.webhooks = vec![sink(url, None, None)];
    let stop = tokio_util::sync::CancellationToken::new();
    let task = sluice::notify::spawn(
        store.clone(),
        &s.notifications,
        &s.email,
        &sluice::metrics::Metrics::new(),
        std::sync::Arc::new(sluice::clock::SystemClock),
        stop.clone(),
    )
    .expect("a sink is configured");
    (stop, task)
}

fn deliveries(r: &Receiver) -> Vec<String> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h["x-sluice-delivery"].to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn events_written_while_stopped_or_not_yet_delivered_are_sent_after_a_restart() {
    let db = sluice::store::TestDb::new().await;
    let store = db.store(2).await;
    let now = chrono::Utc::now();
    let append = |n: u32| {
        let store = store.clone();
        async move {
            store
                .append_event(
                    &event("workspace:w1", "update_succeeded", json!({"to": n})),
                    now,
                )
                .await
                .unwrap()
        }
    };
    // History before the first start with a sink is not replayed.
    append(0).await;

    let ok = Receiver::default();
    let ok_url = start_receiver(ok.clone()).await;
    let (stop, task) = notifier(&store, &ok_url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = append(1).await;
    wait_for("the first delivery", || !ok.got.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(deliveries(&ok), [first.to_string()]);

    // Written while no notifier runs (e.g. updates resumed at startup after a crash).
    let down = [append(2).await, append(3).await];
    let (stop, task) = notifier(&store, &ok_url);
    wait_for("the events from the downtime", || {
        ok.got.lock().unwrap().len() >= 3
    })
    .await;
    // A delivery in flight when the daemon stops is not lost either.
    let hang = Receiver {
        hang: true,
        ..Default::default()
    };
    let hang_url = start_receiver(hang).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    task.await.unwrap();
    let (stop, task) = notifier(&store, &hang_url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_flight = append(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    let (stop, task) = notifier(&store, &ok_url);
    wait_for("the delivery that was in flight", || {
        ok.got.lock().unwrap().len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    let expected: Vec<String> = [first, down[0], down[1], in_flight]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(deliveries(&ok), expected, "each event once, in order");
}
