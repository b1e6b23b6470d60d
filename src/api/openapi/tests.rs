#[test]
fn snapshot_routes_document_their_status_and_codes() {
    let doc = super::document();
    let restore = &doc["paths"]["/api/v1/snapshots/{id}/restore"]["post"];
    assert!(restore["responses"]["202"].is_object(), "{restore}");
    assert_eq!(restore["parameters"][0]["schema"]["type"], "string");
    let conflict = restore["responses"]["409"]["description"].as_str().unwrap();
    assert!(conflict.contains("update_in_progress"), "{conflict}");
    let delete = &doc["paths"]["/api/v1/snapshots/{id}"]["delete"];
    let codes = &delete["responses"]["409"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
        ["error"]["properties"]["code"]["enum"];
    assert!(
        codes
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("snapshot_protected")),
        "{codes}"
    );
    let recover = &doc["paths"]["/api/v1/workspaces/{name}/recover"]["post"];
    assert_eq!(recover["requestBody"]["required"], false);
    assert_eq!(
        doc["paths"]["/api/v1/workspaces"]["post"]["requestBody"]["required"],
        true
    );
}

#[test]
fn every_reference_resolves() {
    let doc = super::document();
    let text = doc.to_string();
    for part in text.split("#/components/schemas/").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(
            doc["components"]["schemas"].get(&name).is_some(),
            "{name} undefined"
        );
    }
}

#[test]
fn volume_ownership_is_documented() {
    let doc = super::document();
    let s = &doc["components"]["schemas"];
    let volume = &s["CreateWorkspace"]["properties"]["volumes"]["items"];
    assert_eq!(volume["properties"]["adopt"]["type"], "boolean");
    let text = volume.to_string();
    assert!(text.contains("volume_in_use") && text.contains("volume_exists"));
    assert_eq!(
        s["PatchWorkspace"]["properties"]["volumes"]["items"]["properties"]["adopt"]["default"],
        false
    );
    let kept = &s["Deleted"]["properties"]["volumes_kept"]["items"]["properties"];
    assert_eq!(kept["reason"]["enum"][0], "other_workspace");
}

#[test]
fn the_rollout_schema_names_every_host_field_the_view_serializes() {
    use crate::api::rollouts::{HostSummary, TargetView};
    use crate::domain::{Digest, HostName, HostState};
    let doc = super::document();
    let s = &doc["components"]["schemas"];
    let summary = serde_json::to_value(HostSummary {
        host: HostName::local(),
        state: HostState::Down,
        total: 0,
        updated: 0,
        updating: 0,
        pending: 0,
        waiting_for_host: 0,
        failed: 0,
        skipped: 0,
    })
    .unwrap();
    for key in summary.as_object().unwrap().keys() {
        assert!(
            s["RolloutHost"]["properties"].get(key).is_some(),
            "RolloutHost lacks {key}"
        );
    }
    let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
    let target = serde_json::to_value(TargetView {
        name: "w".to_owned(),
        tier: "production".to_owned(),
        status: crate::api::rollouts::WAITING_FOR_HOST.to_owned(),
        host: HostName::local(),
        status_reason: Some("host local down".to_owned()),
        wave: 0,
        attempts: 0,
        from_digest: None,
        to_digest: digest,
        updated_at: chrono::DateTime::UNIX_EPOCH,
    })
    .unwrap();
    let props = &s["Rollout"]["properties"]["workspaces"]["items"]["properties"];
    for key in target.as_object().unwrap().keys() {
        assert!(props.get(key).is_some(), "Rollout.workspaces lacks {key}");
    }
    assert!(
        props["status"]["enum"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("waiting_for_host"))
    );
    assert_eq!(
        s["Rollout"]["properties"]["hosts"]["items"]["$ref"],
        "#/components/schemas/RolloutHost"
    );
}

#[test]
fn every_error_response_carries_the_error_schema_and_its_codes() {
    let doc = super::document();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (verb, op) in ops.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                let s: u16 = status.parse().unwrap();
                if s < 400 || (path == "/readyz" && s == 503) {
                    continue;
                }
                let schema = &r["content"]["application/json"]["schema"];
                assert_eq!(
                    schema["allOf"][0]["$ref"], "#/components/schemas/Error",
                    "{verb} {path} {status}"
                );
                let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap();
                assert!(!codes.is_empty(), "{verb} {path} {status}");
            }
        }
    }
}

#[test]
fn body_field_codes_and_parameter_bounds_come_from_the_parsers() {
    let doc = super::document();
    let create = &doc["paths"]["/api/v1/workspaces"]["post"]["responses"]["400"]["description"];
    for code in [
        "invalid_tier",
        "invalid_image",
        "invalid_spec",
        "unknown_field",
    ] {
        assert!(create.as_str().unwrap().contains(code), "{create}");
    }
    let events = &doc["paths"]["/api/v1/events"]["get"]["parameters"];
    assert_eq!(events[1]["name"], "limit");
    assert_eq!(
        events[1]["schema"]["maximum"],
        crate::api::fleet::MAX_EVENTS
    );
    let status = &doc["paths"]["/api/v1/releases"]["get"]["parameters"][0]["schema"]["enum"];
    assert_eq!(
        status.as_array().unwrap().len(),
        crate::domain::ReleaseStatus::ALL.len()
    );
    let tiers = &doc["components"]["schemas"]["Workspace"]["properties"]["update_tier"]["enum"];
    assert_eq!(tiers, &serde_json::json!(["canary", "production"]));
}

/// Every (status, code) the API's sources can answer — read from the constructors that
/// choose them — is documented for at least one operation. (`method_not_allowed` is the
/// answer for a method no operation has, so no operation lists it.)
#[test]
fn every_error_code_in_the_sources_is_documented() {
    use std::collections::BTreeSet;
    let doc = super::document();
    let mut documented: BTreeSet<(u16, String)> = BTreeSet::new();
    for ops in doc["paths"].as_object().unwrap().values() {
        for op in ops.as_object().unwrap().values() {
            for (status, r) in op["responses"].as_object().unwrap() {
                let codes = &r["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
                    ["properties"]["code"]["enum"];
                for c in codes.as_array().into_iter().flatten() {
                    documented.insert((status.parse().unwrap(), c.as_str().unwrap().to_owned()));
                }
            }
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut found: BTreeSet<(u16, String)> = BTreeSet::new();
    let mut files = vec![dir];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("tests.rs") || !name.ends_with(".rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap();
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        found.extend(codes_after(&squeezed));
    }
    assert!(found.len() >= 30, "the scan found only {found:?}");
    let missing: Vec<_> = found
        .iter()
        .filter(|(s, c)| c != "method_not_allowed" && !documented.contains(&(*s, c.clone())))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but documented nowhere: {missing:?}"
    );
}

/// `(status, code)` of each `bad_request("c"`, `conflict("c"`, `unavailable("c"` and
/// `StatusCode::NAME,"c"` in whitespace-free source.
fn codes_after(src: &str) -> Vec<(u16, String)> {
    let literal = |rest: &str| -> Option<String> {
        let rest = rest.strip_prefix('"')?;
        let end = rest.find('"')?;
        let word = &rest[..end];
        (!word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .then(|| word.to_owned())
    };
    let mut out = Vec::new();
    for (ctor, status) in [
        ("bad_request(", 400),
        ("conflict(", 409),
        ("unavailable(", 503),
    ] {
        for (i, _) in src.match_indices(ctor) {
            if let Some(c) = literal(&src[i + ctor.len()..]) {
                out.push((status, c));
            }
        }
    }
    for (i, _) in src.match_indices("StatusCode::") {
        let rest = &src[i + "StatusCode::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        let Some(after) = rest[name.len()..].strip_prefix(',') else {
            continue;
        };
        let Some(c) = literal(after) else { continue };
        let status = match name.as_str() {
            "BAD_REQUEST" => 400,
            "UNAUTHORIZED" => 401,
            "FORBIDDEN" => 403,
            "NOT_FOUND" => 404,
            "METHOD_NOT_ALLOWED" => 405,
            "REQUEST_TIMEOUT" => 408,
            "CONFLICT" => 409,
            "PAYLOAD_TOO_LARGE" => 413,
            "INTERNAL_SERVER_ERROR" => 500,
            "BAD_GATEWAY" => 502,
            "SERVICE_UNAVAILABLE" => 503,
            other => panic!("a status the document does not know: {other}"),
        };
        out.push((status, c));
    }
    out
}
