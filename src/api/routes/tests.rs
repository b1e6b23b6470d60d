use std::collections::BTreeSet;

use super::{Access, Place, all};

/// The `{param}` names of a path template.
fn template_params(path: &str) -> BTreeSet<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

#[test]
fn each_path_parameter_is_declared_and_each_declared_one_is_in_the_path() {
    for op in all() {
        let declared: BTreeSet<&str> = op
            .params
            .iter()
            .filter(|p| p.place == Place::Path)
            .map(|p| p.name)
            .collect();
        assert_eq!(
            declared,
            template_params(op.path),
            "{} {}: path parameters",
            op.verb.as_str(),
            op.path
        );
    }
}

#[test]
fn no_operation_is_listed_twice() {
    let mut seen = BTreeSet::new();
    for op in all() {
        assert!(
            seen.insert((op.path, op.verb.as_str())),
            "{} {} is in the table twice",
            op.verb.as_str(),
            op.path
        );
    }
}

#[test]
fn every_api_route_needs_a_token_and_only_probes_are_open() {
    for op in all() {
        match op.access {
            Access::Token => assert!(op.path.starts_with("/api/v1/"), "{}", op.path),
            Access::Open => assert!(
                ["/healthz", "/readyz"].contains(&op.path),
                "{} must not be open",
                op.path
            ),
            Access::Metrics => assert_eq!(op.path, "/metrics"),
            Access::RegistryToken => assert_eq!(op.path, "/api/v1/registry/events"),
        }
    }
}

#[test]
fn the_main_operations_are_in_the_table() {
    let ops: BTreeSet<(&str, &str)> = all().map(|o| (o.verb.as_str(), o.path)).collect();
    for want in [
        ("get", "/api/v1/releases"),
        ("post", "/api/v1/releases/{id}/apply"),
        ("post", "/api/v1/releases/{id}/reject"),
        ("post", "/api/v1/rollouts/{id}/promote"),
        ("post", "/api/v1/rollouts/{id}/rollback"),
        ("post", "/api/v1/workspaces/{name}/update"),
        ("post", "/api/v1/registry/events"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ] {
        assert!(ops.contains(&want), "{want:?} missing");
    }
}
