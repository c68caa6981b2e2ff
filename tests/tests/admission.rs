//! The CRDs on a real API server: valid resources are accepted and defaulted, bad
//! ones are rejected at admission with a message that says what to fix, immutable
//! fields stay immutable, and `kubectl get` shows the printer columns.

use anyhow::{Context, Result, bail};
use hookline_crds::{Webhook, WebhookGateway};
use hookline_tests::Bench;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

static GATEWAY_SEQ: AtomicU32 = AtomicU32::new(0);

fn sample(file: &str) -> Result<Value> {
    let path = hookline_tests::repo_root().join("crds/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The sample Webhook, placed in `namespace`.
fn webhook_sample(namespace: &str) -> Result<Value> {
    let mut webhook = sample("webhook.yaml")?;
    webhook["metadata"]["namespace"] = json!(namespace);
    Ok(webhook)
}

/// The sample gateway under a name no other test uses (gateways are cluster-scoped).
fn gateway_sample() -> Result<Value> {
    let mut gateway = sample("webhookgateway.yaml")?;
    gateway["metadata"]["name"] = json!(format!(
        "public-{}-{}",
        std::process::id(),
        GATEWAY_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(gateway)
}

fn webhooks(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<Webhook>(&()),
    )
}

fn gateways(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<WebhookGateway>(&()))
}

async fn create(api: &Api<DynamicObject>, object: &Value) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject =
        serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
    api.create(&PostParams::default(), &object).await
}

/// Asserts that the API server refused with 422 Invalid and a message containing `expected`.
fn assert_rejected(
    case: &str,
    result: Result<DynamicObject, kube::Error>,
    expected: &str,
) -> Result<()> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 422 => {
            if !status.message.contains(expected) {
                bail!(
                    "{case}: rejected, but the message does not contain {expected:?}:\n{}",
                    status.message
                );
            }
            Ok(())
        }
        Err(other) => bail!("{case}: expected 422 Invalid, got {other}"),
        Ok(_) => bail!("{case}: the API server accepted an invalid object"),
    }
}

/// Sets the value at a JSON pointer, creating objects on the way.
fn set(object: &mut Value, pointer: &str, value: Value) {
    let mut cursor = object;
    for token in pointer.trim_start_matches('/').split('/') {
        if !cursor.is_object() {
            *cursor = json!({});
        }
        cursor = cursor
            .as_object_mut()
            .map(|map| map.entry(token.to_owned()).or_insert(Value::Null))
            .unwrap_or_else(|| unreachable!("made an object above"));
    }
    *cursor = value;
}

#[tokio::test]
async fn api_server_is_the_pinned_kubernetes_version() -> Result<()> {
    let bench = Bench::shared().await?;
    let pinned =
        std::fs::read_to_string(hookline_tests::repo_root().join("tests/kube-bench/KUBE_VERSION"))?;
    assert_eq!(bench.kube.version(), pinned.trim());
    Ok(())
}

#[tokio::test]
async fn valid_samples_are_accepted_and_defaulted() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "samples").await?;

    let gateway = create(&gateways(&client), &gateway_sample()?).await?;
    assert_eq!(
        gateway.data["spec"]["stageName"], "live",
        "stageName default"
    );
    assert_eq!(gateway.data["spec"]["endpointType"], "Regional");
    assert_eq!(
        gateway.data["spec"]["accessLogs"],
        json!({"enabled": true, "retentionDays": 30})
    );
    assert_eq!(gateway.data["spec"]["deletionPolicy"], "Delete");

    let webhook = create(&webhooks(&client, &namespace), &webhook_sample(&namespace)?).await?;
    let spec = &webhook.data["spec"];
    assert_eq!(
        spec["auth"]["type"], "None",
        "auth defaults to no gateway auth"
    );
    assert_eq!(
        spec["deduplication"],
        json!({"type": "ContentBased", "scope": "Queue"})
    );
    assert_eq!(spec["delivery"]["messageRetentionSeconds"], 345_600);
    assert_eq!(
        spec["delivery"]["retryBackoff"],
        json!({"initialSeconds": 5, "maxSeconds": 900})
    );
    assert_eq!(spec["signature"]["toleranceSeconds"], 300);
    assert_eq!(spec["signature"]["rotationWindowSeconds"], 3600);
    assert_eq!(spec["worker"]["concurrency"], 10);
    assert_eq!(spec["worker"]["handler"]["timeoutSeconds"], 30);
    assert_eq!(spec["worker"]["scaling"]["scaleDownDelaySeconds"], 300);
    assert_eq!(spec["worker"]["scaling"]["engine"], "Builtin");

    // The smallest Webhook: a path and a handler container; everything else defaults.
    let minimal = json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": "minimal", "namespace": namespace},
        "spec": {
            "path": "/minimal",
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    });
    let minimal = create(&webhooks(&client, &namespace), &minimal).await?;
    assert_eq!(
        minimal.data["spec"]["ordering"],
        json!({"type": "Constant"})
    );
    assert_eq!(minimal.data["spec"]["delivery"]["maxReceiveCount"], 5);
    assert_eq!(minimal.data["spec"]["worker"]["scaling"]["minReplicas"], 1);

    // `keys: []` is the whole Secret, and stays empty (the default is for absence only).
    let mut whole = webhook_sample(&namespace)?;
    whole["metadata"]["name"] = json!("whole-secret");
    whole["spec"]["path"] = json!("/whole-secret");
    whole["spec"]["signature"]["secretRef"]["keys"] = json!([]);
    let whole = create(&webhooks(&client, &namespace), &whole).await?;
    assert_eq!(
        whole.data["spec"]["signature"]["secretRef"]["keys"],
        json!([])
    );
    Ok(())
}

/// One bad Webhook: what to change in the sample, and what the API server must say.
struct Case {
    name: &'static str,
    change: fn(&mut Value),
    message: &'static str,
}

const WEBHOOK_CASES: &[Case] = &[
    Case {
        name: "path without leading slash",
        change: |w| set(w, "/spec/path", json!("payments/stripe")),
        message: "path must start with '/'",
    },
    Case {
        name: "path with a '..' segment",
        change: |w| set(w, "/spec/path", json!("/payments/../admin")),
        message: "path must not contain '.' or '..' segments",
    },
    Case {
        name: "path with a trailing slash",
        change: |w| set(w, "/spec/path", json!("/payments/")),
        message: "without a trailing '/'",
    },
    Case {
        name: "maxReceiveCount 0",
        change: |w| set(w, "/spec/delivery/maxReceiveCount", json!(0)),
        message: "spec.delivery.maxReceiveCount in body should be greater than or equal to 1",
    },
    Case {
        name: "maxReceiveCount over 1000",
        change: |w| set(w, "/spec/delivery/maxReceiveCount", json!(1001)),
        message: "spec.delivery.maxReceiveCount in body should be less than or equal to 1000",
    },
    Case {
        name: "visibility timeout over 12 hours",
        change: |w| set(w, "/spec/delivery/visibilityTimeoutSeconds", json!(43_201)),
        message: "spec.delivery.visibilityTimeoutSeconds in body should be less than or equal to 43200",
    },
    Case {
        name: "minReplicas above maxReplicas",
        change: |w| {
            set(w, "/spec/worker/scaling/minReplicas", json!(6));
            set(w, "/spec/worker/scaling/maxReplicas", json!(5));
        },
        message: "worker.scaling.minReplicas must not exceed maxReplicas",
    },
    Case {
        name: "a Meta handshake without its verify token",
        change: |w| set(w, "/spec/handshake", json!({"type": "Meta"})),
        message: "handshake.verifyTokenSecretRef must be set when handshake.type is Meta, and only then",
    },
    Case {
        name: "a Dropbox handshake with a verify token",
        change: |w| {
            set(
                w,
                "/spec/handshake",
                json!({"type": "Dropbox", "verifyTokenSecretRef": {"name": "hs", "key": "token"}}),
            );
        },
        message: "handshake.verifyTokenSecretRef must be set when handshake.type is Meta, and only then",
    },
    Case {
        name: "a handshake of an unknown provider",
        change: |w| set(w, "/spec/handshake", json!({"type": "Slack"})),
        message: "spec.handshake.type: Unsupported value: \"Slack\"",
    },
    Case {
        name: "auth type ApiKey without its settings",
        change: |w| set(w, "/spec/auth", json!({"type": "ApiKey"})),
        message: "auth.apiKey must be set when auth.type is ApiKey, and only then",
    },
    Case {
        name: "two auth modes at once",
        change: |w| {
            set(
                w,
                "/spec/auth",
                json!({
                    "type": "ApiKey",
                    "apiKey": {"secretRef": {"name": "key", "key": "apiKey"}},
                    "cognito": {"userPoolArns": ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc"]}
                }),
            );
        },
        message: "auth.cognito must be set when auth.type is Cognito, and only then",
    },
    Case {
        name: "source IP list entry that is not a CIDR",
        change: |w| {
            set(
                w,
                "/spec/auth/sourceIpAllowList",
                json!(["192.0.2.0/24", "stripe"]),
            )
        },
        message: "sourceIpAllowList entries must be CIDRs",
    },
    Case {
        name: "ordering by header without a header",
        change: |w| set(w, "/spec/ordering", json!({"type": "Header"})),
        message: "ordering.header must be set when ordering.type is Header",
    },
    Case {
        name: "ordering body field that is not a JSON path",
        change: |w| set(w, "/spec/ordering/bodyField", json!("data.customer")),
        message: "ordering.bodyField must be a dotted JSON path",
    },
    Case {
        name: "unknown signature preset",
        change: |w| set(w, "/spec/signature/preset", json!("PayPal")),
        message: "Unsupported value: \"PayPal\"",
    },
    Case {
        name: "rotation window longer than SQS keeps a message",
        change: |w| set(w, "/spec/signature/rotationWindowSeconds", json!(1_209_601)),
        message: "spec.signature.rotationWindowSeconds in body should be less than or equal to",
    },
    Case {
        name: "GenericHmac preset without its settings",
        change: |w| set(w, "/spec/signature/preset", json!("GenericHmac")),
        message: "signature.genericHmac must be set when signature.preset is GenericHmac",
    },
    Case {
        name: "dead-letter retention shorter than retention",
        change: |w| {
            set(w, "/spec/delivery/messageRetentionSeconds", json!(86_400));
            set(w, "/spec/delivery/deadLetterRetentionSeconds", json!(3_600));
        },
        message: "delivery.deadLetterRetentionSeconds must be at least messageRetentionSeconds",
    },
    Case {
        name: "high-throughput FIFO with queue-wide dedup scope",
        change: |w| {
            set(
                w,
                "/spec/delivery/fifoThroughputLimit",
                json!("PerMessageGroupId"),
            )
        },
        message: "PerMessageGroupId requires deduplication.scope MessageGroup",
    },
    Case {
        name: "retry backoff that shrinks",
        change: |w| {
            set(
                w,
                "/spec/delivery/retryBackoff",
                json!({"initialSeconds": 600, "maxSeconds": 60}),
            )
        },
        message: "retryBackoff.initialSeconds must not exceed retryBackoff.maxSeconds",
    },
    Case {
        name: "worker without a handler container",
        change: |w| set(w, "/spec/worker/template/spec/containers", json!([])),
        message: "worker.template.spec.containers must contain the handler container",
    },
    Case {
        name: "reserved tag key",
        change: |w| set(w, "/spec/tags", json!({"hookline.dev/owner": "me"})),
        message: "must not start with 'aws:' or 'hookline.dev/'",
    },
    Case {
        name: "gateway name that is not a DNS subdomain",
        change: |w| set(w, "/spec/gatewayRef/name", json!("Public_Gateway")),
        message: "gatewayRef.name must be a DNS subdomain",
    },
];

#[tokio::test]
async fn invalid_webhooks_are_rejected_with_a_clear_message() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "invalid").await?;
    let api = webhooks(&client, &namespace);

    let mut failures = Vec::new();
    for (i, case) in WEBHOOK_CASES.iter().enumerate() {
        let mut webhook = webhook_sample(&namespace)?;
        webhook["metadata"]["name"] = json!(format!("case-{i}"));
        (case.change)(&mut webhook);
        if let Err(e) = assert_rejected(case.name, create(&api, &webhook).await, case.message) {
            failures.push(format!("{e:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

const GATEWAY_CASES: &[Case] = &[
    Case {
        name: "hostname with a scheme",
        change: |g| set(g, "/spec/hostname", json!("https://hooks.example.com")),
        message: "hostname must be a lowercase DNS name",
    },
    Case {
        name: "wildcard hostname",
        change: |g| set(g, "/spec/hostname", json!("*.example.com")),
        message: "hostname must be a lowercase DNS name",
    },
    Case {
        name: "hosted zone by id and by name",
        change: |g| set(g, "/spec/hostedZone/id", json!("Z0123456789ABCDEFGHIJ")),
        message: "set exactly one of hostedZone.id or hostedZone.name",
    },
    Case {
        name: "hostname outside the hosted zone",
        change: |g| set(g, "/spec/hostname", json!("hooks.example.org")),
        message: "hostname must be inside hostedZone.name",
    },
    Case {
        name: "namespace selector mode without a selector",
        change: |g| set(g, "/spec/allowedNamespaces", json!({"from": "Selector"})),
        message: "allowedNamespaces.selector must be set when from is Selector",
    },
    Case {
        name: "access log retention CloudWatch does not offer",
        change: |g| set(g, "/spec/accessLogs/retentionDays", json!(2)),
        message: "retentionDays must be one of",
    },
    Case {
        name: "AWS-reserved tag key",
        change: |g| {
            set(
                g,
                "/spec/tags",
                json!({"aws:cloudformation:stack-name": "x"}),
            )
        },
        message: "must not start with 'aws:' or 'hookline.dev/'",
    },
    Case {
        name: "stage name with a dash",
        change: |g| set(g, "/spec/stageName", json!("live-1")),
        message: "stageName may contain only letters, digits and '_'",
    },
    Case {
        name: "an IRSA role per namespace for per-Webhook ServiceAccounts",
        change: |g| {
            set(
                g,
                "/spec/workerIdentity",
                json!({"irsaRolePerNamespace": true}),
            )
        },
        message: "workerIdentity.irsaRolePerNamespace needs serviceAccount PerNamespace",
    },
    Case {
        name: "a KEDA role without its ARN",
        change: |g| set(g, "/spec/workerIdentity", json!({"keda": "Role"})),
        message: "workerIdentity.kedaRoleArn must be set when keda is Role, and only then",
    },
    Case {
        name: "a KEDA role ARN with another identity",
        change: |g| {
            set(
                g,
                "/spec/workerIdentity",
                json!({"kedaRoleArn": "arn:aws:iam::123456789012:role/keda"}),
            )
        },
        message: "workerIdentity.kedaRoleArn must be set when keda is Role, and only then",
    },
    Case {
        name: "a shared ServiceAccount name that is no DNS label",
        change: |g| {
            set(
                g,
                "/spec/workerIdentity",
                json!({"serviceAccount": "PerNamespace", "serviceAccountName": "Hookline_Worker"}),
            )
        },
        message: "serviceAccountName must be a DNS label",
    },
];

#[tokio::test]
async fn invalid_gateways_are_rejected_with_a_clear_message() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let api = gateways(&client);

    let mut failures = Vec::new();
    for case in GATEWAY_CASES {
        let mut gateway = gateway_sample()?;
        (case.change)(&mut gateway);
        if let Err(e) = assert_rejected(case.name, create(&api, &gateway).await, case.message) {
            failures.push(format!("{e:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}

async fn patch_rejected(
    api: &Api<DynamicObject>,
    name: &str,
    patch: Value,
    case: &str,
    expected: &str,
) -> Result<()> {
    let result = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    assert_rejected(case, result, expected)
}

#[tokio::test]
async fn immutable_fields_cannot_change() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "immutable").await?;

    let api = webhooks(&client, &namespace);
    create(&api, &webhook_sample(&namespace)?).await?;
    patch_rejected(
        &api,
        "stripe",
        json!({"spec": {"path": "/payments/stripe-v2"}}),
        "path change",
        "path is immutable",
    )
    .await?;
    patch_rejected(
        &api,
        "stripe",
        json!({"spec": {"gatewayRef": {"name": "other"}}}),
        "gatewayRef change",
        "gatewayRef is immutable",
    )
    .await?;
    patch_rejected(
        &api,
        "stripe",
        json!({"spec": {"gatewayRef": null}}),
        "gatewayRef removal",
        "gatewayRef cannot be added or removed",
    )
    .await?;
    // Mutable fields still change.
    api.patch(
        "stripe",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"delivery": {"maxReceiveCount": 8}}})),
    )
    .await
    .context("changing a mutable field")?;

    let api = gateways(&client);
    let gateway = create(&api, &gateway_sample()?).await?;
    let name = gateway.metadata.name.clone().unwrap_or_default();
    patch_rejected(
        &api,
        &name,
        json!({"spec": {"hostname": "webhooks.example.com"}}),
        "hostname change",
        "hostname is immutable",
    )
    .await?;
    patch_rejected(
        &api,
        &name,
        json!({"spec": {"stageName": "prod"}}),
        "stageName change",
        "stageName is immutable",
    )
    .await?;
    patch_rejected(
        &api,
        &name,
        json!({"spec": {"hostedZone": {"name": "hooks.example.com"}}}),
        "hostedZone change",
        "hostedZone is immutable",
    )
    .await?;
    Ok(())
}

fn kubectl(bench: &Bench, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(bench.kube.kubeconfig_path())
        .args(args)
        .output()
        .context("running kubectl (is it installed?)")?;
    if !output.status.success() {
        bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let namespace = bench.kube.namespace(&client, "columns").await?;
    let api = webhooks(&client, &namespace);
    create(&api, &webhook_sample(&namespace)?).await?;

    // What the operator will write; the status subresource must take it.
    let status = json!({"status": {
        "observedGeneration": 1,
        "url": "https://hooks.example.com/payments/stripe",
        "backlog": {"visible": 42, "inFlight": 3, "deadLetter": 7},
        "replicas": {"desired": 3, "ready": 2},
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
            "lastTransitionTime": "2026-11-29T00:00:00Z", "observedGeneration": 1
        }]
    }});
    api.patch_status("stripe", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .context("writing status through the status subresource")?;

    let table = kubectl(bench, &["get", "wh", "-n", &namespace])?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "URL", "BACKLOG", "DLQ", "REPLICAS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..6],
        [
            "stripe",
            "True",
            "https://hooks.example.com/payments/stripe",
            "42",
            "7",
            "2"
        ],
        "{table}"
    );

    let wide = kubectl(bench, &["get", "webhooks", "-n", &namespace, "-o", "wide"])?;
    assert!(
        wide.lines().next().unwrap_or_default().contains("REASON"),
        "{wide}"
    );
    assert!(wide.contains("Reconciled"), "{wide}");

    // The schema's descriptions are the CRD reference users reach first.
    let explained = kubectl(
        bench,
        &["explain", "webhooks.spec.delivery.maxReceiveCount"],
    )?;
    assert!(
        explained.contains("Deliveries of one message before SQS moves it"),
        "{explained}"
    );

    let gateway = create(&gateways(&client), &gateway_sample()?).await?;
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let table = kubectl(bench, &["get", "webhookgateways", &name])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "HOSTNAME", "READY", "AGE"], "{table}");
    assert!(table.contains("hooks.example.com"), "{table}");
    Ok(())
}

#[tokio::test]
async fn every_example_is_accepted() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let examples = hookline_tests::repo_root().join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&examples)? {
        let path = entry?.path().join("webhook.yaml");
        if !path.is_file() {
            continue;
        }
        let mut webhook: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let namespace = bench.kube.namespace(&client, "example").await?;
        webhook["metadata"]["namespace"] = json!(namespace);
        create(&webhooks(&client, &namespace), &webhook)
            .await
            .with_context(|| format!("{} was refused", path.display()))?;
        applied += 1;
    }
    assert!(
        applied >= 4,
        "only {applied} examples found in {}",
        examples.display()
    );
    Ok(())
}
