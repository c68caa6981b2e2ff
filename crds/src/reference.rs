//! The CRD reference (`docs/crd-reference.md`), generated from the same schemas the
//! API server validates with, so the docs cannot drift from the API.

use serde_json::Value;
use std::fmt::Write as _;

/// Markdown for every CRD: one table of fields per resource, spec then status.
pub fn render(
    crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
) -> String {
    let mut out = String::from(
        "# CRD reference\n\nGenerated from the CRD schemas by `make generate`; do not edit. \
         `kubectl explain <kind>.spec` shows the same descriptions on a cluster.\n",
    );
    for crd in crds {
        let value = serde_json::to_value(crd).unwrap_or_default();
        let names = &value["spec"]["names"];
        let version = &value["spec"]["versions"][0];
        let schema = &version["schema"]["openAPIV3Schema"];
        let _ = write!(
            out,
            "\n## {} (`{}/{}`)\n\n{}\n\nScope: {}. Short names: {}.\n",
            names["kind"].as_str().unwrap_or_default(),
            value["spec"]["group"].as_str().unwrap_or_default(),
            version["name"].as_str().unwrap_or_default(),
            schema["description"].as_str().unwrap_or_default(),
            value["spec"]["scope"].as_str().unwrap_or_default(),
            names["shortNames"].as_array().map_or_else(
                || "none".to_owned(),
                |s| s
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        for part in ["spec", "status"] {
            let _ = write!(
                out,
                "\n### {part}\n\n| field | type | default | description |\n| --- | --- | --- | --- |\n"
            );
            fields(&mut out, part, &schema["properties"][part]);
        }
    }
    out
}

fn fields(out: &mut String, path: &str, schema: &Value) {
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, property) in properties {
        let here = format!("{path}.{name}");
        let mut description = property["description"]
            .as_str()
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        for rule in property["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(message) = rule["message"].as_str() {
                let _ = write!(
                    description,
                    " *Rule:* {}.",
                    message.trim_end_matches('.').replace('|', "\\|")
                );
            }
        }
        let _ = writeln!(
            out,
            "| `{here}`{} | {} | {} | {} |",
            if required.contains(&name.as_str()) {
                " (required)"
            } else {
                ""
            },
            type_of(property),
            property
                .get("default")
                .map_or_else(String::new, |d| format!(
                    "`{}`",
                    d.to_string().replace('|', "\\|")
                )),
            description
        );
        // The embedded pod template is Kubernetes' own, documented upstream.
        if here.ends_with(".worker.template")
            || here.ends_with(".conditions")
            || here.ends_with(".selector")
        {
            continue;
        }
        fields(out, &here, property);
        if let Some(items) = property
            .get("items")
            .filter(|i| i["properties"].is_object())
        {
            fields(out, &format!("{here}[]"), items);
        }
    }
}

fn type_of(schema: &Value) -> String {
    let mut kind = match schema["type"].as_str() {
        Some("array") => format!("[]{}", schema["items"]["type"].as_str().unwrap_or("object")),
        Some("object") if schema.get("additionalProperties").is_some() => {
            "map[string]string".to_owned()
        }
        Some(kind) => kind.to_owned(),
        None => "object".to_owned(),
    };
    if let Some(values) = schema["enum"].as_array() {
        kind = values
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let bound = |key: &str| schema.get(key).map(Value::to_string);
    match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => format!("{kind} ({min}..{max})"),
        (Some(min), None) => format!("{kind} (≥ {min})"),
        (None, Some(max)) => format!("{kind} (≤ {max})"),
        (None, None) => kind,
    }
}
