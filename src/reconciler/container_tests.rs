use super::*;
use crate::domain::spec::{PortMapping, VolumeMount};

#[test]
fn two_digests_differ_only_in_image_and_digest_label() {
    let spec = WorkspaceSpec {
        env: [("K".to_owned(), "V".to_owned())].into(),
        volumes: vec![VolumeMount::new("acme-data", "/data")],
        ports: vec![PortMapping {
            container: 8080,
            host: None,
            host_ip: None,
            protocol: None,
        }],
        labels: [("team".to_owned(), "a".to_owned())].into(),
        ..Default::default()
    };
    let d1 = Digest::of_bytes(b"1");
    let d2 = Digest::of_bytes(b"2");
    let a = build(7, "acme", "r/x@1", &d1, &spec);
    let mut b = build(7, "acme", "r/x@2", &d2, &spec);
    assert_eq!(a.name, "sluice-acme");
    assert_eq!(a.ports[0].host_ip, "127.0.0.1");
    assert_eq!(a.labels["sluice.managed"], "true");
    assert_eq!(a.labels["sluice.workspace_id"], "7");
    assert_eq!(a.labels["team"], "a");
    assert_eq!(a.env, ["K=V"]);
    b.image = a.image.clone();
    b.labels.insert(LABEL_DIGEST.into(), d1.to_string());
    assert_eq!(a, b);
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn volume_labels_name_the_owner_by_id() {
    let l = volume_labels(42, "acme");
    assert_eq!(l["sluice.managed"], "true");
    assert_eq!(l["sluice.workspace"], "acme");
    assert_eq!(l["sluice.workspace_id"], "42");
    assert_eq!(volume_owner(&l), Some(42));
    assert!(volume_owned_by(&l, 42));
    assert!(!volume_owned_by(&l, 43));
}

#[test]
fn only_managed_numeric_labels_name_an_owner() {
    assert_eq!(volume_owner(&labels(&[])), None);
    // A hand-made volume that copies the id label but not the managed flag.
    assert_eq!(volume_owner(&labels(&[("sluice.workspace_id", "1")])), None);
    assert_eq!(
        volume_owner(&labels(&[
            ("sluice.managed", "true"),
            ("sluice.workspace_id", "x1")
        ])),
        None
    );
    // Labelled by sluice before owners were labelled: a name, no id.
    assert_eq!(
        volume_owner(&labels(&[
            ("sluice.managed", "true"),
            ("sluice.workspace", "acme")
        ])),
        None
    );
    assert!(!volume_owned_by(&labels(&[]), 0));
}

#[test]
fn volume_labels_for_a_container_spec_carry_its_owner() {
    let spec = build(
        9,
        "acme",
        "r/x@1",
        &Digest::of_bytes(b"1"),
        &WorkspaceSpec::default(),
    );
    assert_eq!(
        volume_labels_for(&spec, "acme").unwrap(),
        volume_labels(9, "acme")
    );
    let mut bare = spec.clone();
    bare.labels.remove(LABEL_WORKSPACE_ID);
    let e = volume_labels_for(&bare, "acme").unwrap_err();
    assert!(e.contains("sluice.workspace_id"), "{e}");
}

#[test]
fn only_own_or_adopted_volumes_may_be_removed() {
    let own = volume_labels(1, "acme");
    let other = volume_labels(2, "globex");
    let bare = labels(&[("team", "a")]);
    assert_eq!(may_remove_volume(&own, 1, false), Ok(()));
    assert_eq!(may_remove_volume(&own, 1, true), Ok(()));
    assert_eq!(
        may_remove_volume(&other, 1, false),
        Err(KeepReason::OtherWorkspace { owner: 2 })
    );
    assert_eq!(
        may_remove_volume(&other, 1, true),
        Err(KeepReason::OtherWorkspace { owner: 2 }),
        "a label naming another workspace wins over adoption"
    );
    assert_eq!(
        may_remove_volume(&bare, 1, false),
        Err(KeepReason::NotOwned)
    );
    assert_eq!(may_remove_volume(&bare, 1, true), Ok(()));
    assert_eq!(
        KeepReason::OtherWorkspace { owner: 2 }.as_str(),
        "other_workspace"
    );
    assert_eq!(KeepReason::NotOwned.as_str(), "not_owned");
}

#[test]
fn claims_follow_the_ownership_table() {
    let own = volume_labels(1, "acme");
    let other = volume_labels(2, "globex");
    let bare = labels(&[]);
    let live = LabelledOwner::Live("globex".into());
    let gone = LabelledOwner::Deleted("globex~deleted-2".into());
    // Missing volumes are created, whatever the flag.
    assert_eq!(claim_volume(None, None, None, false), Ok(Claim::Create));
    assert_eq!(claim_volume(None, Some(1), None, true), Ok(Claim::Create));
    // Own volumes stay own.
    assert_eq!(
        claim_volume(Some(&own), Some(1), None, false),
        Ok(Claim::Own)
    );
    // Another live workspace's volume: never, adopt or not; on creation too.
    for adopt in [false, true] {
        for claimant in [None, Some(1)] {
            assert_eq!(
                claim_volume(Some(&other), claimant, Some(&live), adopt),
                Err(ClaimRefused::InUse {
                    owner: 2,
                    owner_name: Some("globex".into())
                })
            );
            assert_eq!(
                claim_volume(Some(&other), claimant, Some(&LabelledOwner::Unknown), adopt),
                Err(ClaimRefused::InUse {
                    owner: 2,
                    owner_name: None
                })
            );
        }
    }
    // A deleted workspace's volume: only explicitly.
    assert_eq!(
        claim_volume(Some(&other), None, Some(&gone), false),
        Err(ClaimRefused::LeftByDeleted {
            owner: 2,
            owner_name: "globex~deleted-2".into()
        })
    );
    assert_eq!(
        claim_volume(Some(&other), None, Some(&gone), true),
        Ok(Claim::Adopt {
            previous_owner: Some(2)
        })
    );
    // An unowned volume: only explicitly.
    assert_eq!(
        claim_volume(Some(&bare), None, None, false),
        Err(ClaimRefused::Unowned)
    );
    assert_eq!(
        claim_volume(Some(&bare), Some(1), None, true),
        Ok(Claim::Adopt {
            previous_owner: None
        })
    );
    let msg = ClaimRefused::Unowned.to_string();
    assert!(msg.contains("\"adopt\": true"), "{msg}");
    let msg = ClaimRefused::InUse {
        owner: 2,
        owner_name: Some("globex".into()),
    }
    .to_string();
    assert!(msg.contains("`globex`"), "{msg}");
}

#[test]
fn a_volume_from_before_owner_ids_belongs_to_its_named_workspace_only() {
    let legacy = BTreeMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_WORKSPACE.to_owned(), "acme".to_owned()),
    ]);
    assert!(legacy_owned_by(&legacy, "acme"));
    assert!(!legacy_owned_by(&legacy, "globex"));
    assert!(
        !legacy_owned_by(&volume_labels(7, "acme"), "acme"),
        "has an id: not legacy"
    );
    let mut unmanaged = legacy.clone();
    unmanaged.remove(LABEL_MANAGED);
    assert!(!legacy_owned_by(&unmanaged, "acme"));
}
