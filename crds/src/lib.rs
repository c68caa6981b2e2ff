//! Hookline's Kubernetes resources, in API group `hookline.dev/v1alpha1`.
//!
//! - [`WebhookGateway`] (cluster-scoped): a public hostname and the API Gateway REST API behind it.
//! - [`Webhook`] (namespaced): one endpoint on a gateway, its SQS FIFO queue pair and its worker.
//!
//! Validation lives in the schema wherever the API server can enforce it (OpenAPI
//! bounds and CEL rules, see the `x_kube(validation)` attributes), so bad input is
//! rejected at `kubectl apply` time. What needs a lookup (does the Secret exist? may
//! this namespace attach?) is the operator's validation step.
//!
//! # Layout
//! - `common`: references, throttling, deletion policy, tags.
//! - `gateway`, `webhook`: the two resources.
//! - [`conditions`], [`reasons`]: the status vocabulary the operator writes.
//! - `contract`: the signature settings as `hookline_contract` types.
//! - [`crds`] / [`render_crds`]: the CRDs as installed (`crdgen` writes them to `crds/*.yaml`).

#![forbid(unsafe_code)]

mod common;
mod contract;
mod gateway;
pub mod reference;
mod webhook;

pub use common::*;
pub use gateway::*;
pub use webhook::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Hookline resource.
pub const GROUP: &str = "hookline.dev";

/// DNS-1123 subdomain, the shape of most Kubernetes object names.
pub(crate) const DNS_SUBDOMAIN_RULE: &str =
    "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

/// A fully qualified, lowercase DNS name with at least two labels and no trailing dot.
pub(crate) const DNS_NAME_RULE: &str =
    "self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')";

/// An HTTP header name as API Gateway mapping templates can address it.
pub(crate) const HEADER_NAME_RULE: &str = "self.matches('^[A-Za-z0-9-]+$')";

/// A key of a Secret's data.
pub(crate) const SECRET_KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";
pub(crate) const SECRET_KEY_RULE: &str = "self.matches('^[-._a-zA-Z0-9]+$')";

pub(crate) fn default_true() -> bool {
    true
}

/// Condition types written to `status.conditions`.
pub mod conditions {
    /// The resource works end to end.
    pub const READY: &str = "Ready";
    /// Webhook: the FIFO queue pair exists and matches the spec.
    pub const QUEUE_READY: &str = "QueueReady";
    /// Webhook: the API Gateway route, its integration and auth are deployed.
    pub const ROUTE_READY: &str = "RouteReady";
    /// Webhook: the worker Deployment exists and has ready replicas (or is scaled to zero).
    pub const WORKER_READY: &str = "WorkerReady";
    /// Gateway: the ACM certificate is issued.
    pub const CERTIFICATE_READY: &str = "CertificateReady";
    /// Gateway: the alias and ownership records are in sync.
    pub const DNS_READY: &str = "DnsReady";
    /// Gateway: the REST API, stage and custom domain exist.
    pub const API_READY: &str = "ApiReady";
    /// Gateway: the stage writes access logs (or `accessLogs.enabled` is false).
    /// Informational: it does not gate `Ready`, since webhooks are served without it.
    pub const ACCESS_LOGS_READY: &str = "AccessLogsReady";
}

/// Condition reasons, CamelCase as Kubernetes conventions ask.
pub mod reasons {
    /// Everything matches the spec.
    pub const RECONCILED: &str = "Reconciled";
    /// Work is under way (e.g. a certificate awaiting validation).
    pub const PROGRESSING: &str = "Progressing";
    /// The spec is valid for the schema but cannot be honoured (see the message).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The named gateway does not exist, or no single default gateway does.
    pub const GATEWAY_NOT_FOUND: &str = "GatewayNotFound";
    /// The gateway does not allow this namespace.
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    /// A referenced Secret or key does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The operator may not read a Secret the Webhook names (RBAC): in a cluster-wide
    /// install it reads Secrets only in namespaces that granted it access.
    pub const SECRET_FORBIDDEN: &str = "SecretForbidden";
    /// An older Webhook holds the same gateway and path.
    pub const PATH_CONFLICT: &str = "PathConflict";
    /// The hostname is owned by someone else (TXT ownership record).
    pub const HOSTNAME_CONFLICT: &str = "HostnameConflict";
    /// An AWS object with our name exists without our ownership tag.
    pub const NOT_OWNED: &str = "NotOwned";
    /// AWS refused or failed a call; the message has AWS's words.
    pub const AWS_ERROR: &str = "AwsError";
    /// Deletion waits: the dead-letter queue still holds messages.
    pub const DEAD_LETTER_NOT_EMPTY: &str = "DeadLetterQueueNotEmpty";
    /// Deleting: the route is gone and the worker is delivering what the queue
    /// still holds; the queues go once it is empty.
    pub const DRAINING: &str = "Draining";
    /// Deleting: the queue has not drained within the operator's drain bound; the
    /// worker may be failing or scaled away. Deletion keeps waiting.
    pub const DRAIN_STALLED: &str = "DrainStalled";
    /// The gateway exists but is not Ready yet; the route waits for it.
    pub const GATEWAY_NOT_READY: &str = "GatewayNotReady";
    /// Deletion waits: Webhooks are still attached to the gateway.
    pub const IN_USE: &str = "InUse";
    /// Deletion in progress.
    pub const DELETING: &str = "Deleting";
    /// The account has no CloudWatch Logs role for API Gateway
    /// (`aws apigateway update-account`), so the stage cannot log access.
    pub const CLOUDWATCH_ROLE_MISSING: &str = "CloudWatchRoleMissing";
    /// `accessLogs.enabled` is false.
    pub const DISABLED: &str = "Disabled";
    /// The gateway's `workerIdentity.irsaRolePerNamespace` is set, but the operator
    /// was started without `--irsa-oidc-provider-arn` (chart value
    /// `aws.irsaOidcProviderArn`).
    pub const IRSA_NOT_CONFIGURED: &str = "IrsaNotConfigured";
    /// `scaling.engine: Keda`, but KEDA's ScaledObject CRD is not installed.
    pub const KEDA_NOT_INSTALLED: &str = "KedaNotInstalled";
    /// The gateway's REST API would exceed API Gateway's resources per API (300 by
    /// default; every path segment is one); older Webhooks keep theirs.
    pub const RESOURCES_PER_API_QUOTA: &str = "ResourcesPerApiQuotaExceeded";
    /// The gateway's REST API would exceed API Gateway's authorizers per API (10 by
    /// default; one per Cognito or Lambda Webhook).
    pub const AUTHORIZERS_PER_API_QUOTA: &str = "AuthorizersPerApiQuotaExceeded";
    /// The gateway's resource policy (every `sourceIpAllowList`) would exceed API
    /// Gateway's 8,192 characters.
    pub const RESOURCE_POLICY_SIZE_QUOTA: &str = "ResourcePolicySizeQuotaExceeded";
    /// The account would exceed API Gateway's usage plans per account (300 by default;
    /// one per API-key Webhook).
    pub const USAGE_PLANS_QUOTA: &str = "UsagePlansQuotaExceeded";
}

/// The CRDs as the API server should receive them, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![WebhookGateway::crd(), Webhook::crd()]
}

/// The CRD reference, as committed in `docs/crd-reference.md`.
pub fn render_reference() -> String {
    reference::render(&crds())
}

/// Each CRD's file name (`<plural>.<group>.yaml`) and YAML text, as committed under `crds/`.
pub fn render_crds() -> anyhow::Result<Vec<(String, String)>> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let body = serde_saphyr::to_string(&crd)
                .map_err(|e| anyhow::anyhow!("rendering CRD {name} as YAML: {e}"))?;
            Ok((
                format!("{name}.yaml"),
                format!(
                    "# Generated by `cargo run -p hookline-crds --bin crdgen`; do not edit.\n{body}"
                ),
            ))
        })
        .collect()
}

/// The CRDs as Helm chart templates (`charts/hookline/templates/crds/`): installed
/// only with `crds.install`, kept on uninstall with `crds.keep`, otherwise exactly
/// [`render_crds`]. `cargo test` fails while the chart's copies differ.
pub fn render_chart_crds() -> anyhow::Result<Vec<(String, String)>> {
    render_crds()?
        .into_iter()
        .map(|(file, yaml)| {
            anyhow::ensure!(
                !yaml.contains("{{"),
                "{file} contains '{{{{', which Helm would read as a template action"
            );
            let body = yaml
                .lines()
                .filter(|line| !line.starts_with("# Generated by"))
                .collect::<Vec<_>>()
                .join("\n");
            let (head, rest) = body
                .split_once("\nmetadata:\n")
                .ok_or_else(|| anyhow::anyhow!("{file} has no metadata"))?;
            let metadata = concat!(
                "metadata:\n",
                "  labels:\n",
                "    app.kubernetes.io/name: {{ include \"hookline.name\" . }}\n",
                "    app.kubernetes.io/instance: {{ .Release.Name }}\n",
                "    app.kubernetes.io/managed-by: {{ .Release.Service }}\n",
                "    helm.sh/chart: {{ printf \"%s-%s\" .Chart.Name .Chart.Version | replace \"+\" \"_\" }}\n",
                "  {{- if .Values.crds.keep }}\n",
                "  annotations:\n",
                "    # Uninstalling must not delete every Webhook (and its queues) with the CRD.\n",
                "    helm.sh/resource-policy: keep\n",
                "  {{- end }}\n",
            );
            Ok((
                format!("charts/hookline/templates/crds/{file}"),
                format!(
                    "{{{{- if .Values.crds.install }}}}\n\
                     # Generated by `cargo run -p hookline-crds --bin crdgen` from crds/{file}; do not edit.\n\
                     {head}\n{metadata}{rest}\n{{{{- end }}}}\n"
                ),
            ))
        })
        .collect()
}
