//! Zero-downtime proof under load: Debian's nginx on loopback is the reverse proxy in
//! front of a workspace, fed by sluice's `file` router (an upstream file written
//! atomically, then `nginx -s reload`). A steady stream of requests (100 a second,
//! bounded) goes through nginx during an update. With start-first no request fails;
//! the same update with stop-first is measured too, and its failures are reported (not
//! asserted: they are the outage start-first removes).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice::config::{RouterKind, RouterSettings};
use sluice::domain::spec::UpdateOrder;

use crate::reconciler::env_in_repo;

/// An nginx master process with its own configuration, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx proxying 127.0.0.1:PORT to upstream `sluice_<workspace>`, read from `dir/up`.
fn nginx(dir: &Path, workspace: &str) -> Nginx {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("up")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    // Until sluice routes the workspace, the upstream points nowhere.
    std::fs::write(
        dir.join(format!("up/{workspace}.conf")),
        format!("upstream sluice_{workspace} {{\n    server 127.0.0.1:9;\n}}\n"),
    )
    .unwrap();
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\nworker_processes 1;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp;\n  \
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n  \
             include {d}/up/*.conf;\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://sluice_{workspace}; \
             proxy_next_upstream off; }} }}\n}}\n"
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let child = Command::new("nginx")
        .args(["-c", &conf])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Debian's nginx is installed (tests/env/up.sh)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, port }
}

/// Requests `url` 100 times a second until `stop` (at most 60 s); (sent, failed, bodies).
async fn load(url: String, stop: Arc<AtomicBool>) -> (usize, usize, Vec<String>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut sent, mut failed, mut seen) = (0usize, 0usize, Vec::<String>::new());
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        tick.tick().await;
        sent += 1;
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default().trim().to_owned();
                if seen.last() != Some(&body) {
                    seen.push(body);
                }
            }
            _ => failed += 1,
        }
    }
    (sent, failed, seen)
}

/// One update of a workspace behind nginx under load; (sent, failed, versions seen).
async fn update_under_load(order: UpdateOrder) -> (usize, usize, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up");
    let tag = if order == UpdateOrder::StartFirst {
        "sfl"
    } else {
        "sfs"
    };
    let conf = dir.path().join("nginx.conf").display().to_string();
    let reload = vec![
        "nginx".into(),
        "-c".into(),
        conf,
        "-s".into(),
        "reload".into(),
    ];
    let file = up.join("{workspace}.conf");
    let mut e = env_in_repo(
        tag,
        None,
        move |s, _| {
            s.update_order = order;
            for v in &mut s.volumes {
                v.shared = true;
            }
        },
        move |s| {
            s.router = RouterSettings {
                kind: RouterKind::File,
                file: Some(file),
                reload,
                ..RouterSettings::default()
            };
        },
    )
    .await;
    let proxy = nginx(dir.path(), e.ws.name.as_str());
    e.cleanup.containers.push(format!("{}.next", e.container()));
    let v1 = e.fixture("good", "v1");
    let v2 = e.fixture("good", "v2");
    e.desire(&v1).await;
    e.rec.converge_all().await.unwrap();
    let url = format!("http://127.0.0.1:{}/version", proxy.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(&url)
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(Instant::now() < deadline, "nginx never reached v1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(url, stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    e.desire(&v2).await;
    e.rec.converge_all().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let out = traffic.await.unwrap();
    assert_eq!(e.workspace().await.actual_digest, Some(v2));
    drop(proxy);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_start_first_fails_no_request_and_stop_first_is_counted() {
    let (sent, failed, seen) = update_under_load(UpdateOrder::StartFirst).await;
    println!("start-first behind nginx: {failed} of {sent} requests failed; versions {seen:?}");
    assert!(sent >= 100, "the load ran through the update: {sent}");
    assert_eq!(failed, 0, "start-first: no request fails ({sent} sent)");
    assert_eq!(seen, ["v1", "v2"], "v1 served until v2 took over");

    let (sent, failed, seen) = update_under_load(UpdateOrder::StopFirst).await;
    println!("stop-first behind nginx: {failed} of {sent} requests failed; versions {seen:?}");
    assert!(seen.last().is_some_and(|v| v == "v2"), "{seen:?}");
}
