//! Properties of the generated CRDs that no API server call would reveal.

use hookline_crds::{Webhook, WebhookGateway};

/// `kubectl apply` (client-side) stores the whole object in an annotation limited to
/// 256 KiB; a CRD over that can only be installed with `--server-side` or `create`.
#[test]
fn crds_fit_in_the_last_applied_annotation() {
    for crd in hookline_crds::crds() {
        let json = serde_json::to_vec(&crd).unwrap();
        assert!(
            json.len() < 256 * 1024,
            "{} is {} bytes of JSON",
            crd.metadata.name.unwrap_or_default(),
            json.len()
        );
    }
}

#[test]
fn the_pod_template_keeps_its_validation_but_not_upstream_prose() {
    let crd = serde_json::to_value(hookline_crds::crds().remove(1)).unwrap();
    let template = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["worker"]["properties"]["template"];
    assert!(
        template["description"]
            .as_str()
            .unwrap()
            .contains("handler container")
    );
    let containers = &template["properties"]["spec"]["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    assert!(
        containers["items"]["required"]
            .as_array()
            .unwrap()
            .contains(&"name".into())
    );
    assert!(containers["description"].is_null());
    // A field called "description" is a schema, not prose, and must survive.
    let text = serde_json::to_string(template).unwrap();
    assert!(
        !text.contains("More info: https://kubernetes.io"),
        "upstream descriptions left in"
    );
}

#[test]
fn samples_parse_as_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
    let gateway: WebhookGateway =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("webhookgateway.yaml")).unwrap())
            .unwrap();
    assert_eq!(gateway.spec.hostname, "hooks.example.com");
    assert!(gateway.spec.is_default);
    let webhook: Webhook =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("webhook.yaml")).unwrap())
            .unwrap();
    assert_eq!(webhook.spec.path, "/payments/stripe");
    assert_eq!(webhook.spec.worker.handler.path, "/stripe");
}

#[test]
fn every_spec_and_status_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        let Some(properties) = schema["properties"].as_object() else {
            if let Some(items) = schema.get("items") {
                walk(&format!("{path}[]"), items, missing);
            }
            return;
        };
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            if property["description"].as_str().is_none_or(str::is_empty) {
                missing.push(here.clone());
            }
            // Upstream Kubernetes types are documented upstream.
            if here.ends_with(".worker.template")
                || here.ends_with(".conditions")
                || here.ends_with(".selector")
            {
                continue;
            }
            walk(&here, property, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in hookline_crds::crds() {
        let crd = serde_json::to_value(crd).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            walk(part, &root["properties"][part], &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}
