//! The operator↔worker contract, round trip: the worker Deployment the operator
//! builds carries an environment that the worker's own flag parser
//! (`hookline_worker::config`) reads back into the same `WorkerEnv` the operator
//! meant, field for field, for Webhooks that between them set every option to a
//! value that is not the worker's default (so a variable one side renamed or
//! dropped cannot pass as a default).

use anyhow::{Context as _, Result};
use hookline_contract::env::{AwsEnv, WorkerEnv};
use hookline_crds::Webhook;
use hookline_operator::aws::{QueuePair, QueueRef};
use hookline_operator::desired::{self, Settings, WORKER_CONTAINER};
use hookline_worker::config::{parse_run_env, run_env_names};
use std::collections::BTreeMap;

/// Every option: generic-hmac with its settings, listed keys, and delivery, handler
/// and signature settings off the worker's defaults.
const EVERY_OPTION: &str = r#"
metadata: {name: orders, namespace: shop, uid: uid-1}
spec:
  path: /orders
  signature:
    preset: GenericHmac
    secretRef: {name: orders-hmac, keys: [current, next]}
    toleranceSeconds: 120
    rotationWindowSeconds: 600
    genericHmac: {header: X-Acme-Signature, encoding: Base64, prefix: "sha256="}
  delivery:
    maxReceiveCount: 8
    visibilityTimeoutSeconds: 90
    retryBackoff: {initialSeconds: 3, maxSeconds: 120}
  worker:
    concurrency: 7
    handler: {port: 9000, path: /hooks/orders, timeoutSeconds: 45}
    template: {spec: {containers: [{name: handler, image: handler:1}]}}
"#;

/// The whole Secret mounted, a preset with fixed headers.
const WHOLE_SECRET: &str = r#"
metadata: {name: stripe, namespace: payments, uid: uid-2}
spec:
  path: /stripe
  signature: {preset: StandardWebhooks, secretRef: {name: std, keys: []}}
  worker: {template: {spec: {containers: [{name: handler, image: handler:1}]}}}
"#;

/// A preset that signs the public URL, which the worker then needs as well.
const SIGNS_THE_URL: &str = r#"
metadata: {name: sms, namespace: comms, uid: uid-4}
spec:
  path: /twilio
  signature: {preset: Twilio, secretRef: {name: twilio, keys: [authToken]}}
  worker: {template: {spec: {containers: [{name: handler, image: handler:1}]}}}
"#;

/// The Webhook's URL, as the route plan has it.
const PUBLIC_URL: &str = "https://hooks.example.com/twilio";

/// No signature at all.
const UNSIGNED: &str = r#"
metadata: {name: plain, namespace: ops, uid: uid-3}
spec:
  path: /plain
  worker: {template: {spec: {containers: [{name: handler, image: handler:1}]}}}
"#;

fn pair() -> QueuePair {
    QueuePair {
        queue: QueueRef {
            url: "https://sqs.eu-west-1.amazonaws.com/123456789012/hl-q.fifo".into(),
            arn: "arn:aws:sqs:eu-west-1:123456789012:hl-q.fifo".into(),
        },
        dead_letter: QueueRef {
            url: "https://sqs.eu-west-1.amazonaws.com/123456789012/hl-q-dlq.fifo".into(),
            arn: "arn:aws:sqs:eu-west-1:123456789012:hl-q-dlq.fifo".into(),
        },
    }
}

fn settings(endpoint: Option<&str>) -> Settings {
    Settings {
        name_prefix: "hl".to_owned(),
        region: "eu-west-1".to_owned(),
        worker_image: "ghcr.io/hookline/hookline-worker:0.1.0".to_owned(),
        aws_endpoint_url: endpoint.map(str::to_owned),
        irsa_oidc_provider_arn: None,
    }
}

/// The sidecar's environment in the Deployment the operator builds.
fn sidecar_env(webhook: &Webhook, settings: &Settings) -> Result<BTreeMap<String, String>> {
    let deployment = desired::worker_deployment(webhook, &pair(), settings, Some(PUBLIC_URL));
    let pod = deployment.spec.template.spec.context("the pod")?;
    let sidecar = pod
        .init_containers
        .into_iter()
        .flatten()
        .find(|c| c.name == WORKER_CONTAINER)
        .context("the worker sidecar")?;
    Ok(sidecar
        .env
        .into_iter()
        .flatten()
        .map(|var| (var.name, var.value.unwrap_or_default()))
        .collect())
}

/// What the worker makes of `env`, through its own flags.
fn as_the_worker_reads(env: &BTreeMap<String, String>) -> Result<WorkerEnv> {
    let args = parse_run_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .context("the worker refuses the operator's environment")?;
    Ok(args.worker_env(AwsEnv::from_lookup(|name| env.get(name).cloned()))?)
}

#[test]
fn the_worker_reads_back_what_the_operator_writes() -> Result<()> {
    let read_by_worker = run_env_names();
    for (yaml, endpoint) in [
        (EVERY_OPTION, Some("http://127.0.0.1:4566")),
        (WHOLE_SECRET, None),
        (SIGNS_THE_URL, None),
        (UNSIGNED, None),
    ] {
        let webhook: Webhook = serde_saphyr::from_str(yaml)?;
        let settings = settings(endpoint);
        let env = sidecar_env(&webhook, &settings)?;
        for name in env.keys().filter(|n| n.starts_with("HOOKLINE_")) {
            assert!(
                read_by_worker.contains(name),
                "the operator writes {name}, which `hookline-worker run` does not read"
            );
        }
        let meant = desired::worker_env(&webhook, &pair(), &settings, Some(PUBLIC_URL));
        assert_eq!(as_the_worker_reads(&env)?, meant, "{yaml}");
    }
    Ok(())
}

#[test]
fn every_option_is_off_the_workers_defaults() -> Result<()> {
    // Were a value equal to the default, a variable lost on the way would still
    // compare equal above.
    let webhook: Webhook = serde_saphyr::from_str(EVERY_OPTION)?;
    let full = desired::worker_env(
        &webhook,
        &pair(),
        &settings(Some("http://127.0.0.1:4566")),
        Some(PUBLIC_URL),
    );
    use hookline_contract::env::{HMAC_HEADER, QUEUE_URL, SIGNATURE_PRESET};
    let defaults = parse_run_env([
        (QUEUE_URL, full.queue_url.as_str()),
        (SIGNATURE_PRESET, "generic-hmac"),
        (HMAC_HEADER, "x-acme-signature"),
    ])?
    .worker_env(AwsEnv::from_lookup(|_| None))?;
    let signature = full.signature.clone().context("a signature")?;
    let default_signature = defaults
        .signature
        .clone()
        .context("the default signature")?;
    let (generic, default_generic) = (
        signature
            .generic_hmac
            .clone()
            .context("generic-hmac settings")?,
        default_signature
            .generic_hmac
            .clone()
            .context("default generic-hmac settings")?,
    );
    let differs = [
        (
            "dead-letter queue",
            full.dead_letter_queue_url != defaults.dead_letter_queue_url,
        ),
        ("handler url", full.handler_url != defaults.handler_url),
        (
            "handler timeout",
            full.handler_timeout_seconds != defaults.handler_timeout_seconds,
        ),
        ("concurrency", full.concurrency != defaults.concurrency),
        (
            "visibility",
            full.visibility_timeout_seconds != defaults.visibility_timeout_seconds,
        ),
        (
            "max receive count",
            full.max_receive_count != defaults.max_receive_count,
        ),
        (
            "backoff initial",
            full.backoff_initial_seconds != defaults.backoff_initial_seconds,
        ),
        (
            "backoff max",
            full.backoff_max_seconds != defaults.backoff_max_seconds,
        ),
        (
            "metrics address",
            full.metrics_addr != defaults.metrics_addr,
        ),
        ("region", full.aws.region != defaults.aws.region),
        (
            "endpoint",
            full.aws.endpoint_url != defaults.aws.endpoint_url,
        ),
        ("secrets", signature.secrets != default_signature.secrets),
        (
            "tolerance",
            signature.tolerance_seconds != default_signature.tolerance_seconds,
        ),
        (
            "rotation window",
            signature.rotation_window_seconds != default_signature.rotation_window_seconds,
        ),
        (
            "hmac encoding",
            generic.encoding != default_generic.encoding,
        ),
        ("hmac prefix", generic.prefix != default_generic.prefix),
    ];
    for (what, off_default) in differs {
        assert!(
            off_default,
            "{what} is the worker's default in EVERY_OPTION"
        );
    }
    Ok(())
}
