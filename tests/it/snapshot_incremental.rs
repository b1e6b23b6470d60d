//! The incremental snapshot store on real Docker: update after update of a volume that
//! changes little, each snapshot taken in two stages (pre-copy journaled), the store
//! growing by what changed, retention leaving exactly the objects the kept snapshots
//! name, and a rollback restoring a snapshot assembled from many stages exactly.

use std::collections::BTreeSet;
use std::path::Path;

use sluice::domain::UpdatePhase;
use sluice::snapshot::Snapshots;

use crate::reconciler::{env_with, settings};
use crate::snapshot_fidelity::{manifest, mountpoint, random_file};

const FILES: u64 = 64;
const FILE_LEN: usize = 512 << 10;

/// Allocated bytes and names of the objects in the store.
fn objects(store: &Path) -> (u64, BTreeSet<String>) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut names) = (0, BTreeSet::new());
    for dir in std::fs::read_dir(store.join("objects")).unwrap().flatten() {
        if dir.file_name() == "tmp" {
            continue;
        }
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            bytes += f.metadata().unwrap().blocks() * 512;
            names.insert(f.file_name().to_string_lossy().into_owned());
        }
    }
    (bytes, names)
}

/// Every object the manifests left in the store name.
fn referenced(store: &Path) -> (usize, BTreeSet<String>) {
    let mut out = BTreeSet::new();
    let mut manifests = 0;
    for f in std::fs::read_dir(store.join("manifests"))
        .unwrap()
        .flatten()
    {
        manifests += 1;
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
        for e in m["entries"].as_array().unwrap() {
            if let Some(o) = e["object"].as_str() {
                out.insert(o.to_owned());
            }
        }
    }
    (manifests, out)
}

#[tokio::test]
async fn updates_of_a_volume_that_changes_little_store_little_and_retention_frees_the_rest() {
    let mut e = env_with("snap-inc", |_, _| {}, |s| s.snapshots.keep_last = 2).await;
    let s = {
        let mut s = settings(e.dir.path());
        s.snapshots.keep_last = 2;
        s
    };
    let snaps = Snapshots::new(s.snapshot_dir(), s.snapshots.clone(), e.store.clone());
    let store_dir = s.snapshot_dir();
    let digests = [e.fixture("good", "v1"), e.fixture("good", "v2")];
    e.desire(&digests[0]).await;
    e.rec.converge_all().await.expect("converge");
    let data = mountpoint(&e.volume);
    for i in 0..FILES {
        random_file(&data.join(format!("f{i:02}")), FILE_LEN, i);
    }
    let volume_bytes = FILES * FILE_LEN as u64;
    for round in 1..=5u64 {
        // About 1.5% of the files change between updates.
        random_file(
            &data.join(format!("f{:02}", round * 7 % FILES)),
            FILE_LEN,
            1000 + round,
        );
        e.desire(&digests[(round % 2) as usize]).await;
        e.rec.converge_all().await.expect("converge");
        let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
        assert_eq!(u.phase, UpdatePhase::Succeeded, "{:?}", u.error);
        // Both stages ran: the pre-copy is in the journal, the row is complete.
        let taken = e.store.snapshot(&u.snapshot_ids[0]).await.unwrap();
        assert_eq!(taken.method.as_deref(), Some("store"));
        assert!(
            e.store
                .snapshot_precopied_at(&taken.id)
                .await
                .unwrap()
                .is_some(),
            "round {round}: no pre-copy recorded"
        );
        snaps.cleanup(chrono::Utc::now()).await.unwrap();
        let (bytes, names) = objects(&store_dir);
        let (manifests, named) = referenced(&store_dir);
        assert!(
            manifests <= 2,
            "round {round}: {manifests} manifests kept, keep_last is 2"
        );
        assert_eq!(
            names, named,
            "round {round}: objects beyond what kept snapshots name"
        );
        // The first snapshot stores the volume; each later one only the changed file.
        let bound = volume_bytes + (round.min(2) + 1) * FILE_LEN as u64 + (1 << 20);
        assert!(
            bytes <= bound,
            "round {round}: the store holds {bytes} bytes, bound {bound}"
        );
    }
    // A failing update is rolled back from a snapshot whose objects were stored by
    // earlier stages: the volume comes back exactly.
    let skip = ["boots.log"];
    random_file(&data.join("f03"), FILE_LEN, 4242);
    let before = manifest(&data, &skip);
    let bad = e.fixture("migrates-then-fails", "v3");
    e.desire(&bad).await;
    e.rec.converge_all().await.expect("converge");
    let u = e.store.latest_update(e.ws.id).await.unwrap().unwrap();
    assert_eq!(u.phase, UpdatePhase::RolledBack, "{:?}", u.error);
    assert_eq!(manifest(&data, &skip), before);
}
