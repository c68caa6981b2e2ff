//! `Webhook`: one endpoint owned by an app team. Becomes a route on its gateway
//! that writes each request into an SQS FIFO queue (with a FIFO dead-letter
//! queue), and a worker Deployment that drains the queue into the team's handler.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::common::{DeletionPolicy, SecretKeyRef, TAGS_MESSAGE, TAGS_RULE, Tags, Throttling};

/// A webhook endpoint: a public route that durably queues every request, and the
/// worker that delivers them, in order per message group, to the team's handler.
// The repeated `type_`/`priority` keys belong to different printcolumn(...) groups.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "hookline.dev",
    version = "v1alpha1",
    kind = "Webhook",
    plural = "webhooks",
    shortname = "wh",
    category = "hookline",
    namespaced,
    status = "WebhookStatus",
    derive = "PartialEq",
    doc = "A webhook endpoint: a public route that durably queues every request in SQS FIFO, and the worker that delivers them, in order per message group, to the team's handler.",
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
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Backlog",
        type_ = "integer",
        json_path = ".status.backlog.visible"
    ),
    printcolumn(
        name = "DLQ",
        type_ = "integer",
        json_path = ".status.backlog.deadLetter"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas.ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.gatewayRef) == has(oldSelf.gatewayRef)").message("gatewayRef cannot be added or removed after creation; create a new Webhook to move to another gateway"),
    validation = Rule::new("self.delivery.fifoThroughputLimit != 'PerMessageGroupId' || self.deduplication.scope == 'MessageGroup'").message("delivery.fifoThroughputLimit PerMessageGroupId requires deduplication.scope MessageGroup (an SQS rule)")
)]
pub struct WebhookSpec {
    /// The WebhookGateway to attach to. When omitted, the gateway marked `default: true`.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("gatewayRef is immutable; create a new Webhook to move to another gateway"))]
    pub gateway_ref: Option<GatewayRef>,

    /// Path on the gateway's hostname, e.g. `/payments/stripe`: segments of letters,
    /// digits, `-`, `.`, `_` and `~`, no `.` or `..` segment, no trailing slash.
    /// Immutable: providers are configured with the URL.
    #[x_kube(
        validation = Rule::new("self.matches('^(/[A-Za-z0-9._~-]+)+$')").message("path must start with '/' and consist of segments of letters, digits, '-', '.', '_' or '~' separated by single '/', without a trailing '/'"),
        validation = Rule::new("!self.matches('(^|/)[.][.]?(/|$)')").message("path must not contain '.' or '..' segments"),
        validation = Rule::new("self == oldSelf").message("path is immutable; create a new Webhook for a new URL")
    )]
    #[schemars(length(min = 2, max = 512))]
    pub path: String,

    /// Who may call the endpoint, checked by API Gateway before anything is queued.
    #[serde(default)]
    pub auth: Auth,

    /// Per-route throttling; when omitted the gateway's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttling: Option<Throttling>,

    /// How requests are grouped: messages of one group are delivered strictly in order,
    /// different groups in parallel.
    #[serde(default)]
    pub ordering: Ordering,

    /// How SQS recognises a redelivered request as a duplicate (within its 5-minute
    /// deduplication window).
    #[serde(default)]
    pub deduplication: Deduplication,

    /// Signature verification done by the worker before the handler sees a request.
    /// When omitted, requests are delivered unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,

    /// A provider's `GET` verification handshake, answered by the route itself (a
    /// `GET` method on the Webhook's path) without reaching the queue or the handler.
    /// When omitted, the path has no `GET` method. See docs/operations.md, "Provider
    /// handshakes", for the `POST` handshakes this cannot answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Handshake>,

    /// Retries, timeouts and retention of the queue pair.
    #[serde(default)]
    pub delivery: Delivery,

    /// The worker Deployment: the team's handler plus the Hookline worker sidecar.
    pub worker: Worker,

    /// Tags added to the queues of this Webhook, on top of the gateway's and Hookline's
    /// ownership tags. Keys starting with `aws:` or `hookline.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(TAGS_RULE).message(TAGS_MESSAGE))]
    #[schemars(extend("maxProperties" = 10))]
    pub tags: Tags,

    /// What happens to the queues and the route when this Webhook is deleted. A queue
    /// pair whose dead-letter queue still holds messages is kept unless the Webhook is
    /// annotated `hookline.dev/allow-dlq-loss: "true"`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A `GET` verification handshake the route answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Meta' ? has(self.verifyTokenSecretRef) : !has(self.verifyTokenSecretRef)").message("handshake.verifyTokenSecretRef must be set when handshake.type is Meta, and only then")
)]
pub struct Handshake {
    /// The provider's handshake: `Meta` or `Dropbox`.
    #[serde(rename = "type")]
    pub kind: HandshakeType,

    /// Meta only: the Secret key holding the verify token configured in the Meta app.
    /// The token is written into the route's response template, so anyone allowed
    /// `apigateway:GET` on the REST API can read it: use a token for this and nothing
    /// else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token_secret_ref: Option<SecretKeyRef>,
}

/// The `GET` handshakes a route can answer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HandshakeType {
    // Meta (WhatsApp, Messenger, Instagram): `hub.mode=subscribe`, `hub.verify_token`
    // compared with the Secret's token, `hub.challenge` echoed; 403 otherwise.
    Meta,
    // Dropbox: the `challenge` query parameter echoed as text/plain.
    Dropbox,
}

/// Reference to a cluster-scoped WebhookGateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    /// Name of the WebhookGateway.
    #[x_kube(validation = Rule::new(crate::DNS_SUBDOMAIN_RULE).message("gatewayRef.name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Authentication at the gateway: exactly one mode, named by `type`, with its
/// settings in the field of the same name; plus an optional source-IP allow list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'ApiKey' ? has(self.apiKey) : !has(self.apiKey)").message("auth.apiKey must be set when auth.type is ApiKey, and only then"),
    validation = Rule::new("self.type == 'Cognito' ? has(self.cognito) : !has(self.cognito)").message("auth.cognito must be set when auth.type is Cognito, and only then"),
    validation = Rule::new("self.type == 'Lambda' ? has(self.lambda) : !has(self.lambda)").message("auth.lambda must be set when auth.type is Lambda, and only then")
)]
pub struct Auth {
    /// The auth mode: `None`, `ApiKey`, `Cognito` or `Lambda`.
    #[serde(default, rename = "type")]
    pub mode: AuthMode,

    /// Callers send `x-api-key`; the key is kept in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,

    /// Callers send a JWT issued by one of these Cognito user pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cognito: Option<CognitoAuth>,

    /// A Lambda authorizer decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaAuth>,

    /// Only these source CIDRs may call the endpoint (enforced by a resource policy),
    /// in addition to the mode above. Empty means any source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("sourceIpAllowList entries must be CIDRs such as 192.0.2.0/24 or 2001:db8::/32"))]
    #[schemars(length(max = 100), inner(length(max = 43)))]
    pub source_ip_allow_list: Vec<String>,
}

/// Authentication modes at the gateway.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AuthMode {
    // Anyone may call; rely on the worker's signature verification.
    #[default]
    None,
    // An API key in the `x-api-key` header.
    ApiKey,
    // A Cognito user pool JWT in the `Authorization` header.
    Cognito,
    // A Lambda authorizer.
    Lambda,
}

/// API key authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// Where the API key value lives. If the Secret exists, its value (at least 20
    /// characters) is the key; otherwise the operator generates one and creates it.
    pub secret_ref: SecretKeyRef,
}

/// Cognito user pool authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CognitoAuth {
    /// ARNs of the user pools whose tokens are accepted.
    #[x_kube(validation = Rule::new("self.all(a, a.startsWith('arn:aws') && a.contains(':cognito-idp:') && a.contains(':userpool/'))").message("cognito.userPoolArns must be Cognito user pool ARNs (arn:aws:cognito-idp:<region>:<account>:userpool/<id>)"))]
    #[schemars(length(min = 1, max = 10), inner(length(max = 256)))]
    pub user_pool_arns: Vec<String>,

    /// OAuth scopes required on the token; empty means an identity token is enough.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(min = 1, max = 256)))]
    pub scopes: Vec<String>,
}

/// Lambda authorizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LambdaAuth {
    /// ARN of the authorizer function.
    #[x_kube(validation = Rule::new("self.startsWith('arn:aws') && self.contains(':lambda:') && self.contains(':function:')").message("lambda.functionArn must be a Lambda function ARN (arn:aws:lambda:<region>:<account>:function:<name>)"))]
    #[schemars(length(min = 1, max = 256))]
    pub function_arn: String,

    /// `Token` passes one header value; `Request` passes headers and the source IP.
    #[serde(default, rename = "type")]
    pub kind: LambdaAuthorizerType,

    /// Where API Gateway reads the identity from.
    #[serde(default = "default_identity_source")]
    #[schemars(length(min = 1, max = 512))]
    pub identity_source: String,

    /// How long API Gateway caches the authorizer's answer; 0 disables caching.
    #[serde(default = "default_authorizer_ttl")]
    #[schemars(range(min = 0, max = 3600))]
    pub result_ttl_seconds: i32,
}

/// The kind of Lambda authorizer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LambdaAuthorizerType {
    // A TOKEN authorizer.
    #[default]
    Token,
    // A REQUEST authorizer.
    Request,
}

fn default_identity_source() -> String {
    "method.request.header.Authorization".to_owned()
}

fn default_authorizer_ttl() -> i32 {
    300
}

/// Message grouping: `Constant` (one group, total order), `Header` (a request header's
/// value) or `BodyField` (a field of the JSON body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'Header' ? has(self.header) : !has(self.header)").message("ordering.header must be set when ordering.type is Header, and only then"),
    validation = Rule::new("self.type == 'BodyField' ? has(self.bodyField) : !has(self.bodyField)").message("ordering.bodyField must be set when ordering.type is BodyField, and only then"),
    validation = Rule::new("self.type == 'Constant' || !has(self.constant)").message("ordering.constant may only be set when ordering.type is Constant")
)]
pub struct Ordering {
    /// Where the message group id comes from.
    #[serde(default, rename = "type")]
    pub source: GroupSource,

    /// The group id for `Constant` (default `default`): letters, digits and ASCII
    /// punctuation, up to 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[!-~]+$')").message("ordering.constant may contain only letters, digits and ASCII punctuation"))]
    #[schemars(length(min = 1, max = 128))]
    pub constant: Option<String>,

    /// Request header whose value is the group id, e.g. `X-Shopify-Shop-Domain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::HEADER_NAME_RULE).message("ordering.header must be an HTTP header name (letters, digits and '-')"))]
    #[schemars(length(min = 1, max = 128))]
    pub header: Option<String>,

    /// Dotted path into the JSON body whose value is the group id, e.g.
    /// `$.data.object.customer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[$]([.][A-Za-z_][A-Za-z0-9_-]*)+$')").message("ordering.bodyField must be a dotted JSON path such as $.data.object.customer"))]
    #[schemars(length(min = 2, max = 256))]
    pub body_field: Option<String>,
}

impl Default for Ordering {
    fn default() -> Self {
        Self {
            source: GroupSource::Constant,
            constant: None,
            header: None,
            body_field: None,
        }
    }
}

/// Where a message group id comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GroupSource {
    // One fixed group: a total order.
    #[default]
    Constant,
    // The value of a request header.
    Header,
    // A field of the JSON body.
    BodyField,
}

/// Deduplication of redelivered requests by SQS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'Header' ? has(self.header) : !has(self.header)").message("deduplication.header must be set when deduplication.type is Header, and only then"))]
pub struct Deduplication {
    /// `ContentBased` (a SHA-256 of the body) or `Header` (the provider's delivery id).
    #[serde(default, rename = "type")]
    pub source: DedupSource,

    /// Request header carrying a unique delivery id, e.g. `X-GitHub-Delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(crate::HEADER_NAME_RULE).message("deduplication.header must be an HTTP header name (letters, digits and '-')"))]
    #[schemars(length(min = 1, max = 128))]
    pub header: Option<String>,

    /// Whether duplicates are detected across the queue or per message group.
    #[serde(default)]
    pub scope: DedupScope,
}

/// Where the deduplication id comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DedupSource {
    // SHA-256 of the body.
    #[default]
    ContentBased,
    // A request header.
    Header,
}

/// SQS deduplication scope.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DedupScope {
    // Across the whole queue.
    #[default]
    Queue,
    // Within each message group.
    MessageGroup,
}

/// Signature verification by the worker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.preset == 'GenericHmac' ? has(self.genericHmac) : !has(self.genericHmac)").message("signature.genericHmac must be set when signature.preset is GenericHmac, and only then"))]
pub struct Signature {
    /// The provider's scheme: `Stripe`, `GitHub`, `Shopify`, `Slack`,
    /// `StandardWebhooks`, `Typeform`, `Bitbucket`, `Jira`, `Sentry`, `PagerDuty`,
    /// `Linear`, `Intercom`, `Vercel`, `Paddle`, `Calendly`, `Zoom`, `Twitch`,
    /// `GitLab`, `Discord`, `SendGrid`, `Twilio`, `Square`, `HubSpot` or
    /// `GenericHmac` (see docs/worker.md). `Twilio`, `Square` and `HubSpot` sign the
    /// Webhook's URL (status.url): configure the provider with exactly that URL.
    pub preset: SignaturePreset,

    /// The Secret (same namespace) holding the signing secret(s).
    pub secret_ref: SignatureSecretRef,

    /// For timestamped schemes (Stripe, Slack, Standard Webhooks, Paddle, Calendly,
    /// Zoom, Twitch, Discord, SendGrid, HubSpot): how far the signed
    /// timestamp may be from the moment SQS accepted the request (its SentTimestamp)
    /// before it is rejected as a replay. A backlog of any age still delivers.
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0, max = 86400))]
    pub tolerance_seconds: i32,

    /// After the signing secrets change (a Secret value replaced, a key removed),
    /// how long requests signed only with the previous secrets are still accepted,
    /// counted from when the worker saw the change to when SQS accepted the request.
    /// Whatever was queued before the change verifies with the previous secrets
    /// however late it is delivered, even with 0; set 0 when the old secret leaked.
    /// The worker keeps this in memory: a worker that restarts knows only the
    /// secrets mounted then.
    #[serde(default = "default_rotation_window")]
    #[schemars(range(min = 0, max = 1209600))]
    pub rotation_window_seconds: i32,

    /// Settings of the `GenericHmac` preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic_hmac: Option<GenericHmac>,
}

fn default_tolerance() -> i32 {
    300
}

fn default_rotation_window() -> i32 {
    3600
}

/// Supported signature schemes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SignaturePreset {
    // `Stripe-Signature: t=…,v1=…`.
    Stripe,
    // `X-Hub-Signature-256: sha256=…`.
    GitHub,
    // `X-Shopify-Hmac-Sha256`, base64.
    Shopify,
    // `X-Slack-Signature: v0=…` with `X-Slack-Request-Timestamp`.
    Slack,
    // `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    StandardWebhooks,
    // HMAC-SHA256 of the body in a header of your choice.
    GenericHmac,
    // `Typeform-Signature: sha256=…`, base64.
    Typeform,
    // Bitbucket Cloud's `X-Hub-Signature: sha256=…`.
    Bitbucket,
    // Jira Cloud's `X-Hub-Signature: sha256=…`.
    Jira,
    // `Sentry-Hook-Signature`, hex.
    Sentry,
    // `X-PagerDuty-Signature: v1=…[,v1=…]`.
    PagerDuty,
    // `Linear-Signature`, hex.
    Linear,
    // Intercom's `X-Hub-Signature: sha1=…` (HMAC-SHA1).
    Intercom,
    // `x-vercel-signature`, hex HMAC-SHA1.
    Vercel,
    // Paddle Billing's `Paddle-Signature: ts=…;h1=…`.
    Paddle,
    // `Calendly-Webhook-Signature: t=…,v1=…`.
    Calendly,
    // `x-zm-signature: v0=…` with `x-zm-request-timestamp`.
    Zoom,
    // Twitch EventSub's `Twitch-Eventsub-Message-Signature: sha256=…`.
    Twitch,
    // `X-Gitlab-Token`, the secret itself.
    GitLab,
    // Discord's `X-Signature-Ed25519`; the Secret holds the public key, hex.
    Discord,
    // SendGrid's ECDSA signature; the Secret holds the verification key, base64.
    SendGrid,
    // `X-Twilio-Signature` over the URL (and form fields); the Secret holds the auth token.
    Twilio,
    // `x-square-hmacsha256-signature` over the notification URL and the body.
    Square,
    // `X-HubSpot-Signature-v3` with `X-HubSpot-Request-Timestamp`; the Secret holds the app's client secret.
    HubSpot,
}

/// The Secret holding signing secrets; several keys verify at once, for rotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureSecretRef {
    /// Name of the Secret, in the same namespace as the Webhook.
    #[x_kube(validation = Rule::new(crate::DNS_SUBDOMAIN_RULE).message("signature.secretRef.name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Keys in the Secret whose values are accepted signing secrets; a signature valid
    /// for any of them passes. `[]` accepts every key of the Secret, and a key added
    /// to it later verifies without a restart; with keys listed, changing the list
    /// rolls the worker. A changed value is picked up without a restart either way.
    #[serde(default = "default_secret_keys")]
    #[x_kube(validation = Rule::new(format!("self.all(k, k.matches('{}'))", crate::SECRET_KEY_PATTERN)).message("signature.secretRef.keys must be Secret keys: letters, digits, '-', '_' or '.'"))]
    #[schemars(length(max = 5), inner(length(min = 1, max = 253)))]
    pub keys: Vec<String>,
}

fn default_secret_keys() -> Vec<String> {
    vec!["secret".to_owned()]
}

/// HMAC-SHA256 over the raw body, in a header of your choice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenericHmac {
    /// Header carrying the signature.
    #[x_kube(validation = Rule::new(crate::HEADER_NAME_RULE).message("genericHmac.header must be an HTTP header name (letters, digits and '-')"))]
    #[schemars(length(min = 1, max = 128))]
    pub header: String,

    /// How the digest is written: `Hex` or `Base64`.
    #[serde(default)]
    pub encoding: DigestEncoding,

    /// Text before the digest in the header, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub prefix: Option<String>,
}

/// Encoding of a digest in a header.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DigestEncoding {
    // Lowercase or uppercase hexadecimal.
    #[default]
    Hex,
    // Standard base64.
    Base64,
}

/// Retries, timeouts and retention of the queue pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.deadLetterRetentionSeconds >= self.messageRetentionSeconds").message("delivery.deadLetterRetentionSeconds must be at least messageRetentionSeconds: a FIFO message keeps its original enqueue time in the dead-letter queue"))]
pub struct Delivery {
    /// Deliveries of one message before SQS moves it to the dead-letter queue.
    #[serde(default = "default_max_receive_count")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_receive_count: i32,

    /// How long a received message stays hidden from other workers (the worker sends it
    /// with every receive and extends it while a slow handler runs).
    #[serde(default = "default_visibility_timeout")]
    #[schemars(range(min = 0, max = 43200))]
    pub visibility_timeout_seconds: i32,

    /// How long SQS keeps an undelivered message (60 s to 14 days).
    #[serde(default = "default_message_retention")]
    #[schemars(range(min = 60, max = 1_209_600))]
    pub message_retention_seconds: i32,

    /// How long the dead-letter queue keeps a message (60 s to 14 days).
    #[serde(default = "default_dead_letter_retention")]
    #[schemars(range(min = 60, max = 1_209_600))]
    pub dead_letter_retention_seconds: i32,

    /// Backoff between failed deliveries of a message.
    #[serde(default)]
    pub retry_backoff: RetryBackoff,

    /// SQS FIFO throughput mode: `PerQueue`, or `PerMessageGroupId` (high throughput;
    /// needs `deduplication.scope: MessageGroup`).
    #[serde(default)]
    pub fifo_throughput_limit: FifoThroughputLimit,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            max_receive_count: default_max_receive_count(),
            visibility_timeout_seconds: default_visibility_timeout(),
            message_retention_seconds: default_message_retention(),
            dead_letter_retention_seconds: default_dead_letter_retention(),
            retry_backoff: RetryBackoff::default(),
            fifo_throughput_limit: FifoThroughputLimit::default(),
        }
    }
}

fn default_max_receive_count() -> i32 {
    5
}

fn default_visibility_timeout() -> i32 {
    60
}

fn default_message_retention() -> i32 {
    4 * 24 * 3600
}

fn default_dead_letter_retention() -> i32 {
    14 * 24 * 3600
}

/// Exponential backoff between failed deliveries, doubling from `initialSeconds` up to
/// `maxSeconds` (SQS caps a message's hidden time at 12 hours).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.initialSeconds <= self.maxSeconds").message("retryBackoff.initialSeconds must not exceed retryBackoff.maxSeconds"))]
pub struct RetryBackoff {
    /// Delay before the second delivery.
    #[serde(default = "default_backoff_initial")]
    #[schemars(range(min = 0, max = 43200))]
    pub initial_seconds: i32,

    /// Longest delay between deliveries.
    #[serde(default = "default_backoff_max")]
    #[schemars(range(min = 0, max = 43200))]
    pub max_seconds: i32,
}

impl Default for RetryBackoff {
    fn default() -> Self {
        Self {
            initial_seconds: default_backoff_initial(),
            max_seconds: default_backoff_max(),
        }
    }
}

fn default_backoff_initial() -> i32 {
    5
}

fn default_backoff_max() -> i32 {
    900
}

/// SQS FIFO throughput limit.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FifoThroughputLimit {
    // The classic FIFO limit, shared by the queue.
    #[default]
    PerQueue,
    // High-throughput FIFO: the limit applies per message group.
    PerMessageGroupId,
}

/// The worker Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.template.spec) && size(self.template.spec.containers) > 0").message("worker.template.spec.containers must contain the handler container"))]
pub struct Worker {
    /// Pod template with the team's handler container. The operator adds the Hookline
    /// worker as a native sidecar and the settings it needs.
    #[schemars(schema_with = "pod_template_schema")]
    pub template: PodTemplateSpec,

    /// How the worker reaches the handler inside the pod.
    #[serde(default)]
    pub handler: HandlerEndpoint,

    /// Message groups one pod processes in parallel (each group strictly in order).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: i32,

    /// Replica bounds and the backlog each replica should carry.
    #[serde(default)]
    pub scaling: Scaling,
}

/// The full PodTemplateSpec schema, so the API server validates the team's pod
/// template, but without Kubernetes' own field descriptions: they are two thirds of
/// the CRD's size and would push it past what client-side `kubectl apply` can store
/// in its last-applied annotation.
fn pod_template_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut value = serde_json::Value::from(PodTemplateSpec::json_schema(generator));
    let description = value.get("description").cloned();
    strip_descriptions(&mut value);
    if let (Some(description), Some(map)) = (description, value.as_object_mut()) {
        map.insert("description".to_owned(), description);
    }
    // Only an object or a bool converts to a schema, and the value came from one.
    Schema::try_from(value).unwrap_or_default()
}

fn strip_descriptions(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            // Only string descriptions: under `properties`, a field that is itself
            // called "description" maps to a schema object, and must stay.
            if map
                .get("description")
                .is_some_and(serde_json::Value::is_string)
            {
                map.remove("description");
            }
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

fn default_concurrency() -> i32 {
    10
}

/// Where the handler listens inside the pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandlerEndpoint {
    /// Port the handler listens on, on 127.0.0.1.
    #[serde(default = "default_handler_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Path the worker POSTs each message to.
    #[serde(default = "default_handler_path")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("worker.handler.path must start with '/'"))]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,

    /// How long one handler call may take before it counts as failed.
    #[serde(default = "default_handler_timeout")]
    #[schemars(range(min = 1, max = 43200))]
    pub timeout_seconds: i32,
}

impl Default for HandlerEndpoint {
    fn default() -> Self {
        Self {
            port: default_handler_port(),
            path: default_handler_path(),
            timeout_seconds: default_handler_timeout(),
        }
    }
}

fn default_handler_port() -> i32 {
    8080
}

fn default_handler_path() -> String {
    "/".to_owned()
}

fn default_handler_timeout() -> i32 {
    30
}

/// Backlog-based scaling of the worker Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("worker.scaling.minReplicas must not exceed maxReplicas"))]
pub struct Scaling {
    /// `Builtin` (the operator scales on backlog) or `Keda` (a KEDA ScaledObject).
    #[serde(default)]
    pub engine: ScalingEngine,

    /// Fewest replicas; 0 lets an idle Webhook cost nothing.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,

    /// Most replicas.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Messages (visible plus in flight) one replica should carry.
    #[serde(default = "default_target_backlog")]
    #[schemars(range(min = 1, max = 100_000))]
    pub target_backlog_per_replica: i32,

    /// How long demand must stay lower before replicas are removed.
    #[serde(default = "default_scale_down_delay")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_delay_seconds: i32,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            engine: ScalingEngine::default(),
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_backlog_per_replica: default_target_backlog(),
            scale_down_delay_seconds: default_scale_down_delay(),
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}

fn default_max_replicas() -> i32 {
    10
}

fn default_target_backlog() -> i32 {
    20
}

fn default_scale_down_delay() -> i32 {
    300
}

/// Which engine scales the worker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ScalingEngine {
    // The operator's own scaler.
    #[default]
    Builtin,
    // A KEDA ScaledObject with an aws-sqs-queue trigger.
    Keda,
}

/// What the operator observed and created for a Webhook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` plus one condition per part: `QueueReady`, `RouteReady`, `WorkerReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The gateway this Webhook is attached to (resolved when `gatewayRef` is omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,

    /// Public URL providers send to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// The FIFO queue requests are written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueRef>,

    /// The FIFO dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<QueueRef>,

    /// The API Gateway resource serving `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteRef>,

    /// Queue depths at the last poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,

    /// Worker replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,

    /// When the scaler last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
}

/// An SQS queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueRef {
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
}

/// An API Gateway route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRef {
    /// REST API id.
    pub rest_api_id: String,
    /// Resource id of the path.
    pub resource_id: String,
}

/// Queue depths, from SQS's approximate counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// Messages waiting to be received.
    pub visible: i64,
    /// Messages received and not yet deleted.
    pub in_flight: i64,
    /// Messages in the dead-letter queue.
    pub dead_letter: i64,
}

/// Replica counts of the worker Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// Replicas the scaler asked for.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
}
