//! `GET /api/v1/events/stream` against a running `sluice run`: an operator's action shows
//! up on an open stream as a server-sent event, a reconnect with `Last-Event-ID` gets
//! only what came after, a `read` token may stream and no token is 401.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::Daemon;

const ADMIN: &str = "stream-admin-token-0123456789";
const READER: &str = "stream-read-token-0123456789";

/// A daemon whose tokens come from a token file: `ops` (admin) and `viewer` (read).
fn daemon(dir: &std::path::Path) -> Daemon {
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
    let file = file.to_str().expect("utf-8 path").to_owned();
    Daemon::start(dir, &[("SLUICE__AUTH__TOKEN_FILE", &file)])
}

/// One server-sent event as the wire carries it.
#[derive(Debug)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

/// An open stream and what it has received but not yet handed out.
struct Stream {
    response: reqwest::Response,
    text: String,
    /// Comments seen (keep-alives).
    comments: usize,
}

impl Stream {
    async fn open(d: &Daemon, token: &str, last_event_id: Option<i64>) -> Stream {
        let mut req = reqwest::Client::new()
            .get(d.url("/api/v1/events/stream"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let response = req.send().await.expect("the stream answers");
        assert_eq!(response.status(), 200);
        let ct = response.headers()["content-type"].to_str().unwrap_or("");
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Stream {
            response,
            text: String::new(),
            comments: 0,
        }
    }

    /// The next event, waiting at most `limit`; `None` when none came.
    async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(ev) = self.parse(&block) {
                    return Some(ev);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.text.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the stream ended"),
                Ok(Err(e)) => panic!("reading the stream: {e}"),
                Err(_) => return None,
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<Sse> {
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in block.lines() {
            if line.starts_with(':') {
                self.comments += 1;
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        Some(Sse {
            id: id?,
            event: event?,
            data: serde_json::from_str(&data).expect("data is JSON"),
        })
    }
}

async fn set_mode(d: &Daemon, mode: &str) {
    let r = reqwest::Client::new()
        .put(d.url("/api/v1/fleet"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "mode": mode }))
        .send()
        .await
        .expect("PUT /api/v1/fleet");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

/// The next `fleet.mode_changed` event (skipping whatever else the daemon audits).
async fn next_mode_change(s: &mut Stream) -> Sse {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = s.next(left).await.expect("a fleet.mode_changed event");
        if ev.event == "fleet.mode_changed" {
            return ev;
        }
    }
}

#[tokio::test]
async fn an_action_shows_up_on_the_stream_and_a_reconnect_resumes_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());

    // No token: 401 with the API's error body; a bad Last-Event-ID: 400.
    let r = reqwest::Client::new()
        .get(d.url("/api/v1/events/stream"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("JSON error");
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    let r = reqwest::Client::new()
        .get(d.url("/api/v1/events/stream"))
        .bearer_auth(READER)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("JSON error");
    assert_eq!(v["error"]["code"], "invalid_last_event_id", "{v}");

    // A read token streams; an admin's action shows up as it happens.
    let mut stream = Stream::open(&d, READER, None).await;
    set_mode(&d, "paused").await;
    let first = next_mode_change(&mut stream).await;
    assert_eq!(first.data["id"], first.id, "{first:?}");
    assert_eq!(first.data["action"], "fleet.mode_changed");
    assert_eq!(first.data["actor"], "ops");
    assert_eq!(first.data["subject"], "fleet");
    assert_eq!(first.data["detail"]["after"], "paused", "{first:?}");

    // The event is the entry GET /api/v1/events serves.
    let listed: Vec<Value> = reqwest::Client::new()
        .get(d.url(&format!("/api/v1/events?since={}", first.id - 1)))
        .bearer_auth(READER)
        .send()
        .await
        .expect("GET /api/v1/events")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed.first(), Some(&first.data));

    set_mode(&d, "manual").await;
    let second = next_mode_change(&mut stream).await;
    assert!(second.id > first.id);
    assert_eq!(second.data["detail"]["after"], "manual", "{second:?}");
    drop(stream);

    // Resuming after the first gets the second (and nothing older) at once.
    let mut resumed = Stream::open(&d, READER, Some(first.id)).await;
    let again = resumed
        .next(Duration::from_secs(10))
        .await
        .expect("the entries after Last-Event-ID");
    assert!(again.id > first.id, "{again:?}");
    let again = if again.id == second.id {
        again
    } else {
        next_mode_change(&mut resumed).await
    };
    assert_eq!(again.id, second.id);
    assert_eq!(again.data, second.data);

    // Resuming after the newest gets nothing until something new happens.
    let mut up_to_date = Stream::open(&d, ADMIN, Some(second.id)).await;
    set_mode(&d, "auto").await;
    let third = next_mode_change(&mut up_to_date).await;
    assert!(third.id > second.id);
    assert_eq!(third.data["detail"]["after"], "auto", "{third:?}");
}

#[tokio::test]
async fn open_streams_do_not_hold_up_the_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = daemon(dir.path());
    let _streams = [
        Stream::open(&d, READER, None).await,
        Stream::open(&d, ADMIN, Some(0)).await,
    ];
    let asked = Instant::now();
    d.signal("TERM");
    let status = d
        .wait_timeout(Duration::from_secs(10))
        .expect("exited with streams open");
    assert!(status.success(), "{status:?}");
    assert!(
        asked.elapsed() < sluice::startup::SHUTDOWN_GRACE,
        "took {:?}: the streams held up the drain",
        asked.elapsed()
    );
}
