//! Desired state (pure, no I/O): what AWS and the cluster should hold for a Webhook,
//! computed from the Webhook, its gateway and the operator's settings.

use hookline_contract::env::{AwsEnv, SecretFiles, SignatureEnv, WorkerEnv};
use hookline_crds::{
    AuthMode, DedupSource, GroupSource, KedaIdentity, ServiceAccountScope, Signature, Webhook,
    WebhookGateway,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, HTTPGetAction, KeyToPath, PodSecurityContext, Probe,
    SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::aws::templates::{DedupKey, GroupKey, RouteTemplate};
use crate::aws::{Owner, QueuePair, QueuePairSpec};

/// Settings of the operator that shape what it creates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefix of every AWS name (one per cluster sharing an account).
    pub name_prefix: String,
    /// AWS region (the worker needs it too).
    pub region: String,
    /// The worker image.
    pub worker_image: String,
    /// An endpoint override handed to workers (for emulators); none in production.
    pub aws_endpoint_url: Option<String>,
    /// ARN of the cluster's IAM OIDC provider, which the namespace roles the operator
    /// creates for IRSA trust (`workerIdentity.irsaRolePerNamespace`); none disables them.
    pub irsa_oidc_provider_arn: Option<String>,
}

#[cfg(test)]
impl Settings {
    /// Settings for unit tests: prefix `hl`, region `us-east-1`, worker image `w`.
    pub(crate) fn for_tests() -> Self {
        Self {
            name_prefix: "hl".to_owned(),
            region: "us-east-1".to_owned(),
            worker_image: "w".to_owned(),
            aws_endpoint_url: None,
            irsa_oidc_provider_arn: None,
        }
    }
}

/// Name of the worker sidecar container; a team container may not use it.
pub const WORKER_CONTAINER: &str = "hookline-worker";
/// Port of the worker's /healthz and /metrics inside the pod.
pub const WORKER_METRICS_PORT: i32 = 9095;
const SECRET_DIR: &str = "/var/run/hookline/signature";

/// The owner of a webhook's AWS objects.
pub fn webhook_owner(webhook: &Webhook) -> Owner {
    Owner {
        uid: webhook.metadata.uid.clone().unwrap_or_default(),
        resource: format!(
            "Webhook {}/{}",
            webhook.metadata.namespace.as_deref().unwrap_or_default(),
            webhook.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// The owner of a gateway's AWS objects.
pub fn gateway_owner(gateway: &WebhookGateway) -> Owner {
    Owner {
        uid: gateway.metadata.uid.clone().unwrap_or_default(),
        resource: format!(
            "WebhookGateway {}",
            gateway.metadata.name.as_deref().unwrap_or_default()
        ),
    }
}

/// The queue pair recorded in a webhook's status, once both queues exist.
pub fn queue_pair_in(status: &hookline_crds::WebhookStatus) -> Option<QueuePair> {
    let (queue, dead_letter) = (status.queue.as_ref()?, status.dead_letter_queue.as_ref()?);
    Some(QueuePair {
        queue: crate::aws::QueueRef {
            url: queue.url.clone(),
            arn: queue.arn.clone(),
        },
        dead_letter: crate::aws::QueueRef {
            url: dead_letter.url.clone(),
            arn: dead_letter.arn.clone(),
        },
    })
}

/// The queue pair of a webhook.
pub fn queue_pair(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    settings: &Settings,
) -> QueuePairSpec {
    let spec = &webhook.spec;
    let mut tags = gateway.spec.tags.clone();
    tags.extend(spec.tags.clone());
    QueuePairSpec {
        name: crate::names::queue_base(
            &settings.name_prefix,
            webhook.metadata.namespace.as_deref().unwrap_or_default(),
            webhook.metadata.name.as_deref().unwrap_or_default(),
        ),
        content_based_deduplication: spec.deduplication.source == DedupSource::ContentBased,
        deduplication_scope: spec.deduplication.scope,
        throughput_limit: spec.delivery.fifo_throughput_limit,
        visibility_timeout_seconds: spec.delivery.visibility_timeout_seconds,
        message_retention_seconds: spec.delivery.message_retention_seconds,
        dead_letter_retention_seconds: spec.delivery.dead_letter_retention_seconds,
        max_receive_count: spec.delivery.max_receive_count,
        tags,
        owner: webhook_owner(webhook),
    }
}

/// Headers a signature preset needs at the worker (the contract's table).
pub fn signature_headers(signature: Option<&Signature>) -> Vec<String> {
    signature
        .map(Signature::forwarded_headers)
        .unwrap_or_default()
}

/// The mapping template inputs of a webhook's route.
pub fn route_template(webhook: &Webhook) -> RouteTemplate {
    let spec = &webhook.spec;
    let group = match spec.ordering.source {
        GroupSource::Constant => GroupKey::Constant(
            spec.ordering
                .constant
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        ),
        GroupSource::Header => GroupKey::Header(spec.ordering.header.clone().unwrap_or_default()),
        GroupSource::BodyField => {
            GroupKey::BodyField(spec.ordering.body_field.clone().unwrap_or_default())
        }
    };
    let dedup = match spec.deduplication.source {
        DedupSource::ContentBased => DedupKey::ContentBased,
        DedupSource::Header => {
            DedupKey::Header(spec.deduplication.header.clone().unwrap_or_default())
        }
    };
    let mut headers = signature_headers(spec.signature.as_ref());
    headers.extend(["content-type".to_owned(), "user-agent".to_owned()]);
    headers.extend(spec.ordering.header.iter().map(|h| h.to_ascii_lowercase()));
    headers.extend(
        spec.deduplication
            .header
            .iter()
            .map(|h| h.to_ascii_lowercase()),
    );
    headers.sort();
    headers.dedup();
    RouteTemplate {
        group,
        dedup,
        headers,
        query: spec
            .signature
            .as_ref()
            .is_some_and(|s| s.preset_name().signs_url()),
    }
}

/// API group/version and kind of KEDA's ScaledObject.
pub const KEDA_API_VERSION: &str = "keda.sh/v1alpha1";
/// Name of KEDA's ScaledObject CRD, whose presence decides whether KEDA can be used.
pub const KEDA_CRD: &str = "scaledobjects.keda.sh";

/// The KEDA ScaledObject that scales the worker instead of the built-in scaler, with
/// the same rules where KEDA has them: an `aws-sqs-queue` trigger counting messages
/// in flight, `queueLength` per replica, the cooldown as the scale-down delay.
pub fn keda_scaled_object(
    webhook: &Webhook,
    pair: &QueuePair,
    settings: &Settings,
) -> serde_json::Value {
    let scaling = &webhook.spec.worker.scaling;
    let mut trigger = serde_json::json!({
        "queueURL": pair.queue.url,
        "queueLength": scaling.target_backlog_per_replica.to_string(),
        "awsRegion": settings.region,
        "scaleOnInFlight": "true",
    });
    if let Some(endpoint) = &settings.aws_endpoint_url {
        trigger["awsEndpoint"] = serde_json::json!(endpoint);
    }
    serde_json::json!({
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": {
            "name": worker_name(webhook),
            "namespace": webhook.metadata.namespace,
            "labels": worker_labels(webhook),
            "ownerReferences": owner_reference(webhook),
        },
        "spec": {
            "scaleTargetRef": {"name": worker_name(webhook)},
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "cooldownPeriod": scaling.scale_down_delay_seconds,
            "pollingInterval": 10,
            "triggers": [{
                "type": "aws-sqs-queue",
                "metadata": trigger,
                "authenticationRef": {"name": worker_name(webhook), "kind": "TriggerAuthentication"},
            }],
        },
    })
}

/// Name of KEDA's TriggerAuthentication CRD, installed with the ScaledObject one.
pub const KEDA_TRIGGER_AUTHENTICATION_CRD: &str = "triggerauthentications.keda.sh";

/// The TriggerAuthentication the ScaledObject's trigger reads the queue with: KEDA's
/// `aws` pod identity provider (IRSA or EKS Pod Identity), with the identity the
/// gateway chose. The older `aws-eks` provider and the trigger's own `identityOwner`
/// are deprecated in KEDA.
pub fn keda_trigger_authentication(
    webhook: &Webhook,
    gateway: &WebhookGateway,
) -> serde_json::Value {
    let identity = &gateway.spec.worker_identity;
    let pod_identity = match identity.keda {
        KedaIdentity::Keda => serde_json::json!({"provider": "aws", "identityOwner": "keda"}),
        KedaIdentity::Workload => {
            serde_json::json!({"provider": "aws", "identityOwner": "workload"})
        }
        KedaIdentity::Role => serde_json::json!({
            "provider": "aws",
            "roleArn": identity.keda_role_arn.clone().unwrap_or_default(),
        }),
    };
    serde_json::json!({
        "apiVersion": KEDA_API_VERSION,
        "kind": "TriggerAuthentication",
        "metadata": {
            "name": worker_name(webhook),
            "namespace": webhook.metadata.namespace,
            "labels": worker_labels(webhook),
            "ownerReferences": owner_reference(webhook),
        },
        "spec": {"podIdentity": pod_identity},
    })
}

/// Whether the team's pod template uses the worker's container name.
pub fn worker_has_reserved_container(webhook: &Webhook) -> bool {
    webhook.spec.worker.template.spec.iter().any(|pod| {
        pod.containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .any(|c| c.name == WORKER_CONTAINER)
    })
}

/// A handshake's verify token from its Secret value, surrounding whitespace trimmed
/// (a value written with `echo` ends in a newline no provider sends).
pub fn verify_token(value: &k8s_openapi::ByteString) -> String {
    String::from_utf8_lossy(&value.0).trim().to_owned()
}

/// Whether the webhook's route needs an API key.
pub fn needs_api_key(webhook: &Webhook) -> bool {
    webhook.spec.auth.mode == AuthMode::ApiKey
}

/// Labels of a webhook's worker pods; the selector uses the last one.
pub fn worker_labels(webhook: &Webhook) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "hookline-worker".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "hookline".to_owned(),
        ),
        (
            "hookline.dev/webhook".to_owned(),
            webhook.metadata.name.clone().unwrap_or_default(),
        ),
    ])
}

/// Name of the worker Deployment and ServiceAccount of a webhook.
pub fn worker_name(webhook: &Webhook) -> String {
    format!(
        "{}-worker",
        webhook.metadata.name.as_deref().unwrap_or_default()
    )
}

fn owner_reference(webhook: &Webhook) -> Vec<OwnerReference> {
    use kube::Resource;
    webhook.controller_owner_ref(&()).into_iter().collect()
}

/// The annotation IRSA reads the worker's role from.
pub const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// Whether the gateway's workers share one ServiceAccount per namespace.
pub fn shares_service_account(gateway: &WebhookGateway) -> bool {
    gateway.spec.worker_identity.service_account == ServiceAccountScope::PerNamespace
}

/// Name of the ServiceAccount a webhook's worker runs as.
pub fn worker_service_account_name(webhook: &Webhook, gateway: &WebhookGateway) -> String {
    if shares_service_account(gateway) {
        gateway.spec.worker_identity.service_account_name.clone()
    } else {
        worker_name(webhook)
    }
}

/// The worker's ServiceAccount, annotated for IRSA / Pod Identity from the gateway,
/// and with `role_arn` (the namespace role the operator made) for IRSA. A shared one
/// carries a plain owner reference to each Webhook using it, not a controller one:
/// Kubernetes allows one controller, and the garbage collector keeps an object
/// while any owner is left.
pub fn worker_service_account(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    role_arn: Option<&str>,
) -> ServiceAccount {
    use kube::Resource;
    let shared = shares_service_account(gateway);
    let mut annotations = gateway.spec.worker_service_account_annotations.clone();
    if let Some(arn) = role_arn {
        annotations.insert(IRSA_ROLE_ANNOTATION.to_owned(), arn.to_owned());
    }
    let mut labels = worker_labels(webhook);
    if shared {
        labels.remove("hookline.dev/webhook");
    }
    let owners = if shared {
        webhook.owner_ref(&()).into_iter().collect()
    } else {
        owner_reference(webhook)
    };
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(worker_service_account_name(webhook, gateway)),
            namespace: webhook.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// The worker Deployment running as `service_account` rather than its own.
pub fn with_service_account(mut deployment: Deployment, service_account: &str) -> Deployment {
    if let Some(pod) = deployment.spec.template.spec.as_mut() {
        pod.service_account_name = Some(service_account.to_owned());
    }
    deployment
}

/// Server-side apply field manager of one Webhook's share of a shared ServiceAccount:
/// its owner reference and annotations stay while another Webhook applies its own.
pub fn shared_service_account_manager(webhook: &Webhook) -> String {
    format!(
        "hookline-sa-{}",
        webhook.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The worker's `/healthz`, checked every `period` seconds.
fn health_probe(period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".to_owned()),
            port: IntOrString::Int(WORKER_METRICS_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Seconds and counts as the worker reads them; the schema's minimums keep the
/// CRD's `i32`s non-negative, so the fallback is never taken.
fn unsigned(value: i32) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// What the worker sidecar is told: the queues, the handler, the delivery settings,
/// AWS, and how to verify signatures with the secrets mounted at `SECRET_DIR`.
/// `public_url` is the Webhook's URL once its route is live (the route plan's, which
/// becomes `status.url`); it is written only for a preset that signs it.
pub fn worker_env(
    webhook: &Webhook,
    pair: &QueuePair,
    settings: &Settings,
    public_url: Option<&str>,
) -> WorkerEnv {
    let spec = &webhook.spec;
    WorkerEnv {
        queue_url: pair.queue.url.clone(),
        dead_letter_queue_url: Some(pair.dead_letter.url.clone()),
        handler_url: format!(
            "http://127.0.0.1:{}{}",
            spec.worker.handler.port, spec.worker.handler.path
        ),
        handler_timeout_seconds: unsigned(spec.worker.handler.timeout_seconds),
        concurrency: usize::try_from(spec.worker.concurrency).unwrap_or_default(),
        visibility_timeout_seconds: unsigned(spec.delivery.visibility_timeout_seconds),
        max_receive_count: Some(u32::try_from(spec.delivery.max_receive_count).unwrap_or_default()),
        backoff_initial_seconds: unsigned(spec.delivery.retry_backoff.initial_seconds),
        backoff_max_seconds: unsigned(spec.delivery.retry_backoff.max_seconds),
        metrics_addr: SocketAddr::from(([0, 0, 0, 0], WORKER_METRICS_PORT as u16)),
        aws: AwsEnv {
            region: Some(settings.region.clone()),
            endpoint_url: settings.aws_endpoint_url.clone(),
        },
        signature: spec.signature.as_ref().map(|signature| {
            // No keys listed: the whole Secret is mounted and every key is a secret, so a
            // key added for a rotation reaches the worker through the kubelet without a
            // roll. Listed keys are projected one by one; a new list changes this
            // template and rolls the worker. Values are re-read by the worker either way.
            let keys = &signature.secret_ref.keys;
            let secrets = if keys.is_empty() {
                SecretFiles::Dir(SECRET_DIR.into())
            } else {
                SecretFiles::Files(
                    keys.iter()
                        .map(|k| PathBuf::from(format!("{SECRET_DIR}/{k}")))
                        .collect(),
                )
            };
            SignatureEnv {
                preset: signature.preset_name(),
                tolerance_seconds: unsigned(signature.tolerance_seconds),
                rotation_window_seconds: unsigned(signature.rotation_window_seconds),
                secrets,
                generic_hmac: signature.generic_hmac_settings(),
                public_url: public_url
                    .filter(|_| signature.preset_name().signs_url())
                    .map(str::to_owned),
            }
        }),
    }
}

/// The signing Secret as a read-only volume and its mount in the sidecar: only the
/// keys the Webhook names, or the whole Secret when it names none.
fn signature_volume(webhook: &Webhook) -> Option<(Volume, VolumeMount)> {
    let signature = webhook.spec.signature.as_ref()?;
    let keys = &signature.secret_ref.keys;
    let volume = Volume {
        name: "hookline-signature".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(signature.secret_ref.name.clone()),
            items: (!keys.is_empty()).then(|| {
                keys.iter()
                    .map(|k| KeyToPath {
                        key: k.clone(),
                        path: k.clone(),
                        ..KeyToPath::default()
                    })
                    .collect()
            }),
            // Readable by every user: a kubelet makes the files root's, and the worker
            // runs as 65532 ("Permission denied" at 0440 on a real node:
            // operator/tests/node.rs). Only the worker's container mounts the volume.
            // Not an fsGroup instead: that is pod-wide, and a kubelet would re-own the
            // team's own volumes to it.
            default_mode: Some(0o444),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: "hookline-signature".to_owned(),
        mount_path: SECRET_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    Some((volume, mount))
}

/// The Hookline worker container, configured through its typed environment and
/// locked down as the restricted Pod Security Standard asks.
fn worker_sidecar(
    webhook: &Webhook,
    pair: &QueuePair,
    settings: &Settings,
    public_url: Option<&str>,
    signature_mount: Option<VolumeMount>,
) -> Container {
    let vars: Vec<EnvVar> = worker_env(webhook, pair, settings, public_url)
        .vars()
        .into_iter()
        .map(|(name, value)| env(name, value))
        .collect();
    Container {
        name: WORKER_CONTAINER.to_owned(),
        image: Some(settings.worker_image.clone()),
        args: Some(vec!["run".to_owned()]),
        env: Some(vars),
        restart_policy: Some("Always".to_owned()),
        volume_mounts: signature_mount.map(|m| vec![m]),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            name: Some("worker-metrics".to_owned()),
            container_port: WORKER_METRICS_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(health_probe(5)),
        liveness_probe: Some(health_probe(10)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The worker Deployment: the team's pod template plus the Hookline worker as a
/// native sidecar (an init container with `restartPolicy: Always`, so it starts
/// before and stops after the handler). `replicas` is left out: the scaler owns it.
/// `public_url` as in [`worker_env`].
pub fn worker_deployment(
    webhook: &Webhook,
    pair: &QueuePair,
    settings: &Settings,
    public_url: Option<&str>,
) -> Deployment {
    let spec = &webhook.spec;
    let mut template = spec.worker.template.clone();
    let labels = worker_labels(webhook);
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels.clone());

    let (volume, mount) = signature_volume(webhook).unzip();
    let sidecar = worker_sidecar(webhook, pair, settings, public_url, mount);

    let pod = template.spec.get_or_insert_with(Default::default);
    pod.service_account_name = Some(worker_name(webhook));
    pod.init_containers
        .get_or_insert_with(Vec::new)
        .push(sidecar);
    pod.volumes.get_or_insert_with(Vec::new).extend(volume);
    // Long enough to finish the slowest handler call and flush its delete.
    let needed = i64::from(spec.worker.handler.timeout_seconds) + 30;
    pod.termination_grace_period_seconds = Some(
        pod.termination_grace_period_seconds
            .unwrap_or(30)
            .max(needed),
    );
    if pod.security_context.is_none() {
        pod.security_context = Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        });
    }

    Deployment {
        metadata: ObjectMeta {
            name: Some(worker_name(webhook)),
            namespace: webhook.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            owner_references: Some(owner_reference(webhook)),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "hookline.dev/webhook".to_owned(),
                    webhook.metadata.name.clone().unwrap_or_default(),
                )])),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::QueueRef;

    fn webhook(yaml: &str) -> Webhook {
        let mut w: Webhook = serde_saphyr::from_str(yaml).unwrap();
        w.metadata.uid = Some("uid-1".to_owned());
        w
    }

    const STRIPE: &str = r#"
apiVersion: hookline.dev/v1alpha1
kind: Webhook
metadata: {name: stripe, namespace: payments}
spec:
  path: /payments/stripe
  ordering: {type: BodyField, bodyField: $.data.object.customer}
  signature: {preset: Stripe, secretRef: {name: stripe-webhook, keys: [a, b]}}
  worker:
    template:
      spec:
        containers: [{name: handler, image: handler:1}]
    handler: {port: 8080, path: /stripe, timeoutSeconds: 60}
"#;

    fn settings() -> Settings {
        Settings {
            name_prefix: "hl".to_owned(),
            region: "eu-west-1".to_owned(),
            worker_image: "ghcr.io/hookline/worker:0.1.0".to_owned(),
            aws_endpoint_url: None,
            irsa_oidc_provider_arn: None,
        }
    }

    fn pair() -> QueuePair {
        QueuePair {
            queue: QueueRef {
                url: "https://sqs/q.fifo".into(),
                arn: "arn:aws:sqs:eu-west-1:1:q.fifo".into(),
            },
            dead_letter: QueueRef {
                url: "https://sqs/q-dlq.fifo".into(),
                arn: "arn:aws:sqs:eu-west-1:1:q-dlq.fifo".into(),
            },
        }
    }

    #[test]
    fn route_templates_by_spec() {
        let cases = [
            (
                STRIPE,
                GroupKey::BodyField("$.data.object.customer".into()),
                DedupKey::ContentBased,
                vec!["content-type", "stripe-signature", "user-agent"],
            ),
            (
                r#"
metadata: {name: gh, namespace: ci}
spec:
  path: /github
  ordering: {type: Header, header: X-GitHub-Repo}
  deduplication: {type: Header, header: X-GitHub-Delivery}
  signature: {preset: GitHub, secretRef: {name: gh}}
  worker: {template: {spec: {containers: [{name: h, image: h}]}}}
"#,
                GroupKey::Header("X-GitHub-Repo".into()),
                DedupKey::Header("X-GitHub-Delivery".into()),
                vec![
                    "content-type",
                    "user-agent",
                    "x-github-delivery",
                    "x-github-repo",
                    "x-hub-signature-256",
                ],
            ),
            (
                r#"
metadata: {name: std, namespace: ci}
spec:
  path: /std
  signature: {preset: StandardWebhooks, secretRef: {name: s}}
  worker: {template: {spec: {containers: [{name: h, image: h}]}}}
"#,
                GroupKey::Constant("default".into()),
                DedupKey::ContentBased,
                vec![
                    "content-type",
                    "user-agent",
                    "webhook-id",
                    "webhook-signature",
                    "webhook-timestamp",
                ],
            ),
        ];
        for (yaml, group, dedup, headers) in cases {
            let t = route_template(&webhook(yaml));
            assert_eq!((t.group, t.dedup), (group, dedup));
            assert_eq!(t.headers, headers);
        }
    }

    #[test]
    fn every_preset_forwards_its_headers_within_the_attribute_budget() {
        // Every preset the CRD accepts, with an ordering and a deduplication header
        // as well: the route forwards the preset's headers and still renders.
        let crd = serde_json::to_value(<Webhook as kube::CustomResourceExt>::crd()).unwrap();
        let presets = crd
            .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/signature/properties/preset/enum")
            .and_then(|v| v.as_array())
            .unwrap()
            .clone();
        assert!(presets.len() > 6, "{presets:?}");
        for preset in presets {
            let preset = preset.as_str().unwrap();
            let generic = if preset == "GenericHmac" {
                ", genericHmac: {header: X-Sig}"
            } else {
                ""
            };
            let w = webhook(&format!(
                r#"
metadata: {{name: p, namespace: ci}}
spec:
  path: /p
  ordering: {{type: Header, header: X-Group}}
  deduplication: {{type: Header, header: X-Delivery}}
  signature: {{preset: {preset}, secretRef: {{name: s}}{generic}}}
  worker: {{template: {{spec: {{containers: [{{name: h, image: h}}]}}}}}}
"#
            ));
            let t = route_template(&w);
            let wanted = w.spec.signature.as_ref().unwrap().forwarded_headers();
            assert!(!wanted.is_empty(), "{preset}");
            for header in &wanted {
                assert!(
                    t.headers.contains(header),
                    "{preset}: {header} not forwarded"
                );
            }
            crate::aws::templates::request_template(&t).unwrap_or_else(|e| panic!("{preset}: {e}"));
        }
    }

    #[test]
    fn the_worker_is_a_native_sidecar_with_the_queue_and_secrets() {
        let w = webhook(STRIPE);
        let d = worker_deployment(&w, &pair(), &settings(), None);
        assert_eq!(d.metadata.name.as_deref(), Some("stripe-worker"));
        assert!(d.spec.replicas.is_none(), "the scaler owns replicas");
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(
            pod.containers[0].name, "handler",
            "the team's container untouched"
        );
        let sidecar = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
        let probe = sidecar
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap();
        assert_eq!(
            (probe.path.as_deref(), &probe.port),
            (Some("/healthz"), &IntOrString::Int(WORKER_METRICS_PORT))
        );
        let env: BTreeMap<_, _> = sidecar
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(env["HOOKLINE_QUEUE_URL"], "https://sqs/q.fifo");
        assert_eq!(env["HOOKLINE_HANDLER_URL"], "http://127.0.0.1:8080/stripe");
        assert_eq!(env["HOOKLINE_SIGNATURE_PRESET"], "stripe");
        assert_eq!(
            env["HOOKLINE_SIGNATURE_SECRET_FILES"],
            "/var/run/hookline/signature/a,/var/run/hookline/signature/b"
        );
        assert!(!env.contains_key("HOOKLINE_SIGNATURE_SECRET_DIR"));
        assert_eq!(env["HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS"], "3600");
        assert_eq!(env["HOOKLINE_MAX_RECEIVE_COUNT"], "5");
        assert!(!env.contains_key("AWS_ENDPOINT_URL"));
        assert_eq!(
            pod.termination_grace_period_seconds,
            Some(90),
            "handler timeout + 30 s"
        );
        assert_eq!(pod.service_account_name.as_deref(), Some("stripe-worker"));
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("stripe-webhook")
        );
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Webhook", Some(true))
        );
    }

    fn sidecar_signature(yaml: &str) -> (BTreeMap<String, String>, SecretVolumeSource) {
        let d = worker_deployment(&webhook(yaml), &pair(), &settings(), Some(PUBLIC_URL));
        let pod = d.spec.template.spec.unwrap();
        let sidecar = &pod.init_containers.as_ref().unwrap()[0];
        let env = sidecar
            .env
            .as_ref()
            .unwrap()
            .iter()
            .filter(|e| {
                e.name.starts_with("HOOKLINE_SIGNATURE_") || e.name == "HOOKLINE_PUBLIC_URL"
            })
            .map(|e| (e.name.clone(), e.value.clone().unwrap()))
            .collect();
        let volume = pod.volumes.unwrap().remove(0).secret.unwrap();
        (env, volume)
    }

    const PUBLIC_URL: &str = "https://hooks.example.com/payments/stripe";

    #[test]
    fn presets_that_sign_the_url_get_it_and_the_query() {
        for preset in ["Twilio", "Square", "HubSpot"] {
            let yaml = STRIPE.replace("preset: Stripe", &format!("preset: {preset}"));
            let (env, _) = sidecar_signature(&yaml);
            assert_eq!(
                env.get("HOOKLINE_PUBLIC_URL").map(String::as_str),
                Some(PUBLIC_URL),
                "{preset}"
            );
            assert!(route_template(&webhook(&yaml)).query, "{preset}");
        }
        // The others' pod templates and routes stay as they were.
        let (env, _) = sidecar_signature(STRIPE);
        assert!(!env.contains_key("HOOKLINE_PUBLIC_URL"));
        assert!(!route_template(&webhook(STRIPE)).query);
    }

    #[test]
    fn without_listed_keys_the_whole_secret_is_mounted() {
        let yaml = STRIPE.replace("keys: [a, b]}", "keys: []}, rotationWindowSeconds: 0");
        let (env, volume) = sidecar_signature(&yaml);
        assert_eq!(
            env.get("HOOKLINE_SIGNATURE_SECRET_DIR").map(String::as_str),
            Some("/var/run/hookline/signature")
        );
        assert!(!env.contains_key("HOOKLINE_SIGNATURE_SECRET_FILES"));
        assert_eq!(env["HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS"], "0");
        assert_eq!(volume.items, None, "every key, so added keys appear");

        let (env, volume) = sidecar_signature(STRIPE);
        assert!(!env.contains_key("HOOKLINE_SIGNATURE_SECRET_DIR"));
        let items: Vec<&str> = volume
            .items
            .as_ref()
            .unwrap()
            .iter()
            .map(|i| i.key.as_str())
            .collect();
        assert_eq!(items, ["a", "b"]);
    }

    #[test]
    fn keda_scales_the_worker_on_the_queue() {
        let mut w = webhook(STRIPE);
        w.spec.worker.scaling.target_backlog_per_replica = 50;
        w.spec.worker.scaling.max_replicas = 7;
        let so = keda_scaled_object(&w, &pair(), &settings());
        assert_eq!(so["spec"]["scaleTargetRef"]["name"], "stripe-worker");
        assert_eq!(so["spec"]["maxReplicaCount"], 7);
        let trigger = &so["spec"]["triggers"][0];
        assert_eq!(trigger["type"], "aws-sqs-queue");
        assert_eq!(trigger["metadata"]["queueURL"], "https://sqs/q.fifo");
        assert_eq!(trigger["metadata"]["queueLength"], "50");
        assert_eq!(trigger["metadata"]["scaleOnInFlight"], "true");
        assert_eq!(so["metadata"]["ownerReferences"][0]["kind"], "Webhook");
        assert_eq!(
            trigger["authenticationRef"]["name"], "stripe-worker",
            "the trigger reads the queue through the TriggerAuthentication"
        );
        assert!(trigger["metadata"].get("identityOwner").is_none());
    }

    fn gateway_with(identity: &str) -> WebhookGateway {
        serde_saphyr::from_str(&format!(
            "metadata: {{name: public}}\nspec: {{hostname: hooks.example.com, hostedZone: {{name: example.com}}, workerServiceAccountAnnotations: {{team: all}}, workerIdentity: {identity}}}"
        ))
        .unwrap()
    }

    #[test]
    fn keda_authenticates_with_the_identity_the_gateway_names() {
        let w = webhook(STRIPE);
        let cases = [
            (
                "{}",
                serde_json::json!({"provider": "aws", "identityOwner": "keda"}),
            ),
            (
                "{keda: Workload}",
                serde_json::json!({"provider": "aws", "identityOwner": "workload"}),
            ),
            (
                "{keda: Role, kedaRoleArn: 'arn:aws:iam::123456789012:role/keda'}",
                serde_json::json!({"provider": "aws", "roleArn": "arn:aws:iam::123456789012:role/keda"}),
            ),
        ];
        for (identity, want) in cases {
            let auth = keda_trigger_authentication(&w, &gateway_with(identity));
            assert_eq!(auth["kind"], "TriggerAuthentication");
            assert_eq!(auth["metadata"]["name"], "stripe-worker");
            assert_eq!(auth["spec"]["podIdentity"], want, "{identity}");
        }
    }

    #[test]
    fn a_shared_service_account_is_owned_by_each_webhook_without_a_controller() {
        let w = webhook(STRIPE);
        let own = worker_service_account(&w, &gateway_with("{}"), None);
        assert_eq!(own.metadata.name.as_deref(), Some("stripe-worker"));
        assert_eq!(
            own.metadata.owner_references.as_ref().unwrap()[0].controller,
            Some(true)
        );

        let gateway = gateway_with("{serviceAccount: PerNamespace, irsaRolePerNamespace: true}");
        let shared = worker_service_account(
            &w,
            &gateway,
            Some("arn:aws:iam::1:role/hookline/hl-ns-payments"),
        );
        assert_eq!(shared.metadata.name.as_deref(), Some("hookline-worker"));
        let owner = &shared.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-1", None));
        let annotations = shared.metadata.annotations.unwrap();
        assert_eq!(
            annotations[IRSA_ROLE_ANNOTATION],
            "arn:aws:iam::1:role/hookline/hl-ns-payments"
        );
        assert_eq!(annotations["team"], "all");
        assert!(
            !shared
                .metadata
                .labels
                .unwrap()
                .contains_key("hookline.dev/webhook"),
            "one Webhook's label on a shared account would be wrong for the others"
        );
        let d = with_service_account(
            worker_deployment(&w, &pair(), &settings(), None),
            &worker_service_account_name(&w, &gateway),
        );
        let pod = d.spec.template.spec.unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("hookline-worker"));
    }

    #[test]
    fn the_signing_secret_is_readable_by_the_worker_and_mounted_only_in_its_container() {
        let d = worker_deployment(&webhook(STRIPE), &pair(), &settings(), None);
        let pod = d.spec.template.spec.unwrap();
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "hookline-signature")
            .and_then(|v| v.secret.clone())
            .expect("the signature volume");
        // The worker is user 65532 and not in the files' group (root) on a kubelet.
        assert_eq!(volume.default_mode, Some(0o444));
        // Nothing pod-wide that would re-own the team's volumes.
        assert_eq!(
            pod.security_context.and_then(|c| c.fs_group),
            None,
            "no fsGroup set for the team"
        );
        let mounted: Vec<&str> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .filter(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == "hookline-signature")
            })
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(mounted, [WORKER_CONTAINER]);
    }

    #[test]
    fn queue_pair_follows_the_delivery_settings() {
        let w = webhook(STRIPE);
        let g: WebhookGateway = serde_saphyr::from_str(
            "metadata: {name: public}\nspec: {hostname: hooks.example.com, hostedZone: {name: example.com}, tags: {team: platform}}",
        )
        .unwrap();
        let spec = queue_pair(&w, &g, &settings());
        assert!(spec.name.starts_with("hl-payments-stripe-"));
        assert!(spec.content_based_deduplication);
        assert_eq!(
            (spec.max_receive_count, spec.visibility_timeout_seconds),
            (5, 60)
        );
        assert_eq!(spec.tags["team"], "platform", "gateway tags apply");
        assert_eq!(spec.owner.uid, "uid-1");
    }
}
