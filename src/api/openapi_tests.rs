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
