use super::*;

fn spec() -> WorkspaceSpec {
    WorkspaceSpec::default()
}

#[test]
fn good_values_pass() {
    let s = WorkspaceSpec {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        user: Some("1000:1000".into()),
        working_dir: Some("/srv/app".into()),
        hostname: Some("tenant-a".into()),
        stop_signal: Some("SIGQUIT".into()),
        read_only_rootfs: true,
        resources: Some(Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0-1,3".into()),
            pids_limit: Some(100),
            nano_cpus: None,
        }),
        ..spec()
    };
    assert_eq!(check(&s), Ok(()));
    for user in ["app", "1000", "app:staff", "www-data"] {
        let s = WorkspaceSpec {
            user: Some(user.into()),
            ..spec()
        };
        assert_eq!(check(&s), Ok(()), "{user}");
    }
    for sig in ["SIGTERM", "SIGRTMIN+3", "15"] {
        let s = WorkspaceSpec {
            stop_signal: Some(sig.into()),
            ..spec()
        };
        assert_eq!(check(&s), Ok(()), "{sig}");
    }
}

#[test]
fn each_bad_value_is_refused_naming_its_field() {
    let r = |f: fn(&mut Resources)| {
        let mut res = Resources::default();
        f(&mut res);
        WorkspaceSpec {
            resources: Some(res),
            ..spec()
        }
    };
    let cases: Vec<(WorkspaceSpec, &str)> = vec![
        (
            WorkspaceSpec {
                entrypoint: Some(vec![]),
                ..spec()
            },
            "entrypoint",
        ),
        (
            WorkspaceSpec {
                user: Some("root user".into()),
                ..spec()
            },
            "user",
        ),
        (
            WorkspaceSpec {
                user: Some("a:b:c".into()),
                ..spec()
            },
            "user",
        ),
        (
            WorkspaceSpec {
                working_dir: Some("srv".into()),
                ..spec()
            },
            "working_dir",
        ),
        (
            WorkspaceSpec {
                hostname: Some("-bad".into()),
                ..spec()
            },
            "hostname",
        ),
        (
            WorkspaceSpec {
                stop_signal: Some("TERM".into()),
                ..spec()
            },
            "stop_signal",
        ),
        (
            WorkspaceSpec {
                stop_signal: Some("99".into()),
                ..spec()
            },
            "stop_signal",
        ),
        (r(|r| r.memory = Some(1024)), "resources.memory"),
        (
            r(|r| r.memory_swap = Some(1 << 30)),
            "resources.memory_swap",
        ),
        (
            r(|r| {
                r.memory = Some(64 << 20);
                r.memory_swap = Some(32 << 20);
            }),
            "resources.memory_swap",
        ),
        (r(|r| r.cpu_quota = Some(10)), "resources.cpu_quota"),
        (r(|r| r.cpu_period = Some(10)), "resources.cpu_period"),
        (r(|r| r.cpu_shares = Some(1)), "resources.cpu_shares"),
        (
            r(|r| r.cpuset_cpus = Some("2-1".into())),
            "resources.cpuset_cpus",
        ),
        (
            r(|r| r.cpuset_cpus = Some("a".into())),
            "resources.cpuset_cpus",
        ),
        (r(|r| r.pids_limit = Some(0)), "resources.pids_limit"),
    ];
    for (s, field) in cases {
        let (f, _, _) = check(&s).expect_err(field);
        assert_eq!(f, field);
    }
}

#[test]
fn a_spec_without_the_new_fields_serializes_as_before() {
    // Stored specs are compared and shown as JSON: unset fields must not appear.
    let s = spec();
    let v = serde_json::to_value(&s).unwrap();
    for absent in [
        "entrypoint",
        "user",
        "working_dir",
        "hostname",
        "stop_signal",
        "read_only_rootfs",
        "resources",
    ] {
        assert!(v.get(absent).is_none(), "{absent} in {v}");
    }
}
