//! `WebhookGateway`: a public hostname owned by the platform team, which
//! Webhooks attach routes to. Becomes one REST API + stage, an ACM certificate,
//! a custom domain, Route 53 records and the role API Gateway uses to reach SQS.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::common::{DeletionPolicy, TAGS_MESSAGE, TAGS_RULE, Tags, Throttling};

/// A public hostname for webhooks, and the API Gateway REST API behind it.
// The repeated `type_`/`priority` keys belong to different printcolumn(...) groups.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "hookline.dev",
    version = "v1alpha1",
    kind = "WebhookGateway",
    plural = "webhookgateways",
    shortname = "whgw",
    category = "hookline",
    status = "WebhookGatewayStatus",
    derive = "PartialEq",
    doc = "A public hostname for webhooks, and the API Gateway REST API behind it. Cluster-scoped: owned by the platform team, like an IngressClass.",
    printcolumn(name = "Hostname", type_ = "string", json_path = ".spec.hostname"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1
    ),
    printcolumn(
        name = "Default",
        type_ = "boolean",
        json_path = ".spec.default",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.hostedZone.name) || self.hostname == self.hostedZone.name || self.hostname.endsWith('.' + self.hostedZone.name)").message("hostname must be inside hostedZone.name"))]
pub struct WebhookGatewaySpec {
    /// Public DNS name webhooks are served on, e.g. `hooks.example.com`. Lowercase, no
    /// scheme, port, path or wildcard. Immutable: the certificate and custom domain are
    /// bound to it.
    #[x_kube(
        validation = Rule::new(crate::DNS_NAME_RULE).message("hostname must be a lowercase DNS name such as hooks.example.com, without scheme, port, path or wildcard"),
        validation = Rule::new("self == oldSelf").message("hostname is immutable; create a new WebhookGateway instead")
    )]
    #[schemars(length(min = 1, max = 253))]
    pub hostname: String,

    /// The Route 53 public hosted zone that holds `hostname`; the operator writes the
    /// certificate validation, alias and ownership records there. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("hostedZone is immutable"))]
    pub hosted_zone: HostedZone,

    /// API Gateway endpoint type. Only `Regional` is supported: the certificate lives in
    /// the operator's region. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("endpointType is immutable"))]
    pub endpoint_type: EndpointType,

    /// Name of the API Gateway stage that serves the webhooks. Immutable.
    #[serde(default = "default_stage_name")]
    #[x_kube(
        validation = Rule::new("self.matches('^[A-Za-z0-9_]+$')").message("stageName may contain only letters, digits and '_'"),
        validation = Rule::new("self == oldSelf").message("stageName is immutable")
    )]
    #[schemars(length(min = 1, max = 128))]
    pub stage_name: String,

    /// Default throttling for every route on this gateway. A Webhook may lower it for
    /// its own route.
    #[serde(default)]
    pub throttling: Throttling,

    /// Which namespaces may attach Webhooks to this gateway.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,

    /// Marks this gateway as the one used by Webhooks that name none. At most one
    /// gateway should be the default; with several, such Webhooks are not admitted
    /// and say why in their status.
    #[serde(default, rename = "default")]
    pub is_default: bool,

    /// Access logging of the stage to CloudWatch Logs.
    #[serde(default)]
    pub access_logs: AccessLogs,

    /// Annotations put on the ServiceAccount of every worker that attaches here, e.g.
    /// `eks.amazonaws.com/role-arn` for IRSA.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub worker_service_account_annotations: BTreeMap<String, String>,

    /// Which ServiceAccount the workers of this gateway's Webhooks run as, whether the
    /// operator creates their IRSA role, and how KEDA reads their queues.
    #[serde(default)]
    pub worker_identity: WorkerIdentity,

    /// Tags added to every AWS object of this gateway, on top of Hookline's ownership
    /// tags. At most 40; keys starting with `aws:` or `hookline.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(TAGS_RULE).message(TAGS_MESSAGE))]
    #[schemars(extend("maxProperties" = 40))]
    pub tags: Tags,

    /// What happens to the AWS objects when this gateway is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_stage_name() -> String {
    "live".to_owned()
}

/// A Route 53 hosted zone, by id or by name (exactly one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.id) != has(self.name)").message("set exactly one of hostedZone.id or hostedZone.name"))]
pub struct HostedZone {
    /// Hosted zone id, e.g. `Z0123456789ABCDEFGHIJ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^(/hostedzone/)?Z[A-Z0-9]+$')").message("hostedZone.id must look like Z0123456789ABCDEFGHIJ"))]
    #[schemars(length(min = 2, max = 64))]
    pub id: Option<String>,

    /// Hosted zone name, e.g. `example.com` (no trailing dot). Must be unambiguous in
    /// the account: a public zone of that name must exist exactly once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::DNS_NAME_RULE).message("hostedZone.name must be a lowercase DNS name without a trailing dot"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
}

/// API Gateway endpoint type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EndpointType {
    // A regional endpoint in the operator's region.
    #[default]
    Regional,
}

/// Which namespaces may attach Webhooks to a gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from == 'Selector' ? has(self.selector) : !has(self.selector)").message("allowedNamespaces.selector must be set when from is Selector, and only then"))]
pub struct AllowedNamespaces {
    /// `All` namespaces, or only those matching `selector`.
    #[serde(default)]
    pub from: NamespacesFrom,

    /// Label selector on Namespace objects; required when `from` is `Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Where attaching namespaces come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NamespacesFrom {
    // Every namespace may attach.
    #[default]
    All,
    // Only namespaces whose labels match the selector.
    Selector,
}

/// Access logging of the stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLogs {
    /// Write one JSON line per request to a CloudWatch Logs group named after the gateway.
    #[serde(default = "crate::default_true")]
    pub enabled: bool,

    /// Days CloudWatch keeps the access logs; one of the values CloudWatch accepts.
    #[serde(default = "default_retention_days")]
    #[x_kube(validation = Rule::new("self in [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]").message("retentionDays must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"))]
    pub retention_days: i32,
}

impl Default for AccessLogs {
    fn default() -> Self {
        Self {
            enabled: true,
            retention_days: default_retention_days(),
        }
    }
}

fn default_retention_days() -> i32 {
    30
}

/// How workers get their AWS identity (docs/operations.md, "One AWS identity per team").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!self.irsaRolePerNamespace || self.serviceAccount == 'PerNamespace'").message("workerIdentity.irsaRolePerNamespace needs serviceAccount PerNamespace: the role trusts exactly one ServiceAccount per namespace"),
    validation = Rule::new("(self.keda == 'Role') == has(self.kedaRoleArn)").message("workerIdentity.kedaRoleArn must be set when keda is Role, and only then")
)]
pub struct WorkerIdentity {
    /// `PerWebhook`: each Webhook's worker runs as its own ServiceAccount
    /// `<name>-worker`. `PerNamespace`: the workers of all Webhooks of a namespace on
    /// this gateway share `serviceAccountName`, so EKS Pod Identity needs one
    /// association per namespace, and one role serves every team through its
    /// `kubernetes-namespace` session tag.
    #[serde(default)]
    pub service_account: ServiceAccountScope,

    /// Name of the shared ServiceAccount with `serviceAccount: PerNamespace`. It belongs
    /// to every Webhook that uses it (one owner reference each) and goes with the last.
    #[serde(default = "default_shared_service_account")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("serviceAccountName must be a DNS label"))]
    #[schemars(length(min = 1, max = 63))]
    pub service_account_name: String,

    /// The operator creates one IAM role per namespace for IRSA (`<prefix>-ns-<namespace>`
    /// under `/hookline/`), trusted by that namespace's shared ServiceAccount only and
    /// allowed only that namespace's queues, puts its ARN in the ServiceAccount's
    /// `eks.amazonaws.com/role-arn`, and deletes it when the namespace's last Webhook
    /// goes. Needs the operator's `--irsa-oidc-provider-arn`.
    #[serde(default)]
    pub irsa_role_per_namespace: bool,

    /// Identity KEDA reads the queue attributes with (`scaling.engine: Keda`), through
    /// a TriggerAuthentication with the `aws` pod identity provider: `Keda` (KEDA's own
    /// role), `Workload` (the role in the worker ServiceAccount's
    /// `eks.amazonaws.com/role-arn`, which KEDA's role must be trusted to assume) or
    /// `Role` (`kedaRoleArn`).
    #[serde(default)]
    pub keda: KedaIdentity,

    /// Role KEDA assumes with `keda: Role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^arn:[a-z-]+:iam::[0-9]{12}:role/.+$')").message("kedaRoleArn must be an IAM role ARN"))]
    #[schemars(length(min = 20, max = 2048))]
    pub keda_role_arn: Option<String>,
}

impl Default for WorkerIdentity {
    fn default() -> Self {
        Self {
            service_account: ServiceAccountScope::default(),
            service_account_name: default_shared_service_account(),
            irsa_role_per_namespace: false,
            keda: KedaIdentity::default(),
            keda_role_arn: None,
        }
    }
}

fn default_shared_service_account() -> String {
    "hookline-worker".to_owned()
}

/// Whose ServiceAccount a worker runs as.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceAccountScope {
    // One ServiceAccount per Webhook, `<name>-worker`.
    #[default]
    PerWebhook,
    // One ServiceAccount per namespace, shared by its Webhooks.
    PerNamespace,
}

/// The identity of KEDA's TriggerAuthentication.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KedaIdentity {
    // KEDA's own role (`identityOwner: keda`).
    #[default]
    Keda,
    // The worker's role, from its ServiceAccount (`identityOwner: workload`).
    Workload,
    // A role KEDA assumes (`roleArn`).
    Role,
}

/// What the operator observed and created for a gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` plus one condition per part: `CertificateReady`, `DnsReady`, `ApiReady`,
    /// and `AccessLogsReady` (informational: it does not gate `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Base URL of the gateway, `https://<hostname>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// Resolved Route 53 hosted zone id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,

    /// API Gateway REST API id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_id: Option<String>,

    /// Id of the REST API's `/` resource, under which webhook routes are created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_resource_id: Option<String>,

    /// Stage the API is deployed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,

    /// ARN of the ACM certificate for `hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,

    /// Certificates of this gateway that were replaced (failed, expired or revoked)
    /// and are deleted once ACM no longer reports them in use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_certificate_arns: Vec<String>,

    /// Regional domain name the alias record points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regional_domain_name: Option<String>,

    /// ARN of the IAM role API Gateway assumes to send to SQS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,

    /// Number of Webhooks currently attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_webhooks: Option<i32>,
}
