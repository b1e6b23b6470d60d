//! Registry requests per poll cycle: sluice (one probe per distinct image reference) vs
//! the per-container approach (one request per container, as Watchtower and cron scripts
//! do), for N workspaces over M images; and the wall time of one full cycle against the
//! local registry (`tests/env/up.sh`). Run: `cargo bench --bench registry`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sluice::clock::ManualClock;
use sluice::config::Settings;
use sluice::domain::{ImageRef, Tier, UpdateMode, WorkspaceName};
use sluice::registry::{FakeRegistry, OciRegistry, Registry, RegistryMetrics};
use sluice::store::{NewWorkspace, Store};
use sluice::wake::Wakers;
use sluice::watcher::{Hints, Watcher};

const N: usize = 1000;
const M: usize = 10;
const ROUNDS: usize = 5;

fn images() -> Vec<String> {
    let reg = std::env::var("SLUICE_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let mut v = Vec::new();
    for mode in ["good", "bad-health", "crash", "migrates-then-fails"] {
        for tag in ["v1", "v2", "v3"] {
            v.push(format!("{reg}/sluice-fixtures/{mode}:{tag}"));
        }
    }
    v.truncate(M);
    v
}

/// A store with N workspaces spread over the images, each running the tag's digest.
async fn fleet<R: Registry>(dir: &std::path::Path, registry: &R) -> Store {
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::open(&url, 4, Duration::from_secs(5)).await.unwrap();
    store.migrate().await.unwrap();
    let imgs = images();
    let mut digests = Vec::new();
    for i in &imgs {
        digests.push(
            registry
                .resolve(&ImageRef::parse(i).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{e}: run tests/env/up.sh first"))
                .digest,
        );
    }
    for n in 0..N {
        let ws = store
            .insert_workspace(
                &NewWorkspace {
                    host: sluice::domain::HostName::local(),
                    name: WorkspaceName::parse(&format!("bench-{n}")).unwrap(),
                    image: ImageRef::parse_tracked(&imgs[n % M]).unwrap(),
                    update_tier: Tier::Production,
                    update_mode: UpdateMode::Auto,
                    maintenance_window: None,
                    spec: Default::default(),
                },
                Utc::now(),
            )
            .await
            .unwrap();
        sqlx::query("UPDATE workspaces SET actual_digest = $1 WHERE id = $2")
            .bind(digests[n % M].as_str())
            .bind(ws.id)
            .execute(store.raw_pool())
            .await
            .unwrap();
    }
    store
}

fn watcher<R: Registry>(store: &Store, registry: R, clock: &ManualClock) -> Watcher<R> {
    let mut s = Settings::default();
    s.poll.jitter = 0.0;
    let w = Wakers::new();
    Watcher::new(
        store.clone(),
        registry,
        Arc::new(clock.clone()),
        &s,
        w.clone(),
        Hints::new(w.watcher.clone()),
        RegistryMetrics::unregistered().unwrap(),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let interval = chrono::Duration::seconds(301);

    // 1. Requests per cycle (in-memory registry counts every resolution).
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeRegistry::new());
    let bogus = sluice::domain::Digest::of_bytes(b"bench");
    for i in images() {
        fake.push(&ImageRef::parse(&i).unwrap(), &bogus, None);
    }
    let store = fleet(dir.path(), &fake).await;
    let w = watcher(&store, fake.clone(), &clock);
    w.pass().await.unwrap();
    let before = fake.heads();
    clock.advance(interval);
    w.pass().await.unwrap();
    let sluice_requests = fake.heads() - before;
    let before = fake.heads();
    for ws in store.workspaces().await.unwrap() {
        fake.resolve(&ws.image).await.unwrap();
    }
    let per_container = fake.heads() - before;
    println!("registry requests per poll cycle, N={N} workspaces over M={M} images");
    println!("  sluice (one HEAD per image):        {sluice_requests}");
    println!("  per-container (one per container):  {per_container}");
    #[allow(clippy::cast_precision_loss)] // reason: small counts
    let ratio = per_container as f64 / sluice_requests.max(1) as f64;
    println!("  ratio per-container / sluice:       {ratio:.1}x");

    // 2. Wall time of one full cycle against the local registry.
    let dir = tempfile::tempdir().unwrap();
    let metrics = RegistryMetrics::unregistered().unwrap();
    let real = Arc::new(
        OciRegistry::new(
            &Settings::default().registries,
            Duration::from_secs(15),
            metrics.clone(),
        )
        .unwrap(),
    );
    let store = fleet(dir.path(), &real).await;
    let w = watcher(&store, real.clone(), &clock);
    w.pass().await.unwrap(); // first pass: baseline statuses
    let mut cycle = Vec::new();
    let heads_before = metrics.requests_of_kind("head");
    for _ in 0..ROUNDS {
        clock.advance(interval);
        let t = Instant::now();
        let report = w.pass().await.unwrap();
        cycle.push(t.elapsed());
        assert_eq!(report.probed, M);
    }
    let heads = (metrics.requests_of_kind("head") - heads_before) / ROUNDS as u64;
    let workspaces = store.workspaces().await.unwrap();
    let mut per = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for ws in &workspaces {
            real.resolve(&ws.image).await.unwrap();
        }
        per.push(t.elapsed());
    }
    let (c, p) = (median(cycle), median(per));
    println!("one full cycle against the local registry (median of {ROUNDS}):");
    println!("  sluice cycle ({heads} HEADs, store reads and writes included): {c:?}");
    println!("  per-container ({N} sequential HEADs):                         {p:?}");
    println!(
        "  ratio per-container / sluice:                                  {:.1}x",
        p.as_secs_f64() / c.as_secs_f64()
    );
}
