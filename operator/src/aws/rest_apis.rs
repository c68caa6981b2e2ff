//! [`RestApis`]: a gateway's API Gateway REST API (v1), its stage, one route per
//! webhook (resource path, `POST` method, AWS integration to `sqs:SendMessage`), the
//! custom domain, and API keys.
//!
//! Every `ensure_*` reads first and writes only what differs. A route costs two reads
//! when nothing changed (`GetResources`, then `GetMethod`, which embeds the
//! integration and its responses).

use aws_sdk_apigateway::types::{
    AuthorizerType, EndpointConfiguration, EndpointType, IntegrationType, Op, PatchOperation,
    SecurityPolicy,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use super::error::gone_is_fine;
use super::templates::{
    ROUTE_RESPONSES, RouteTemplate, TemplateError, request_template, request_templates,
    sqs_integration_uri,
};
use super::{AwsError, Caller, OWNER_TAG, Owner, Service};

const APIGW: Service = Service::ApiGateway;

/// What the REST API should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    /// API name (not unique in API Gateway; ours is found by tag or id).
    pub name: String,
    /// Tags, owner tags added.
    pub tags: BTreeMap<String, String>,
    /// The owning gateway.
    pub owner: Owner,
}

/// A REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRef {
    /// API id.
    pub id: String,
    /// Id of its `/` resource.
    pub root_resource_id: String,
}

/// What the stage should be.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// Stage name.
    pub name: String,
    /// Stage-wide throttling: requests per second.
    pub rate_limit: f64,
    /// Stage-wide throttling: burst.
    pub burst_limit: i32,
    /// Per-route overrides: (resource path, rate, burst).
    pub route_throttling: Vec<(String, f64, i32)>,
    /// CloudWatch Logs group ARN for access logs, and the line format.
    pub access_log: Option<(String, String)>,
}

/// How a route authenticates callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// Anyone.
    None,
    /// `x-api-key`, checked against the usage plans.
    ApiKey,
    /// A Cognito user pool authorizer.
    Cognito {
        /// Authorizer id.
        authorizer_id: String,
        /// Required OAuth scopes.
        scopes: Vec<String>,
    },
    /// A Lambda authorizer.
    Lambda {
        /// Authorizer id.
        authorizer_id: String,
    },
}

/// One webhook route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Path, e.g. `/payments/stripe`.
    pub path: String,
    /// ARN of the FIFO queue it writes to.
    pub queue_arn: String,
    /// Role API Gateway assumes to send.
    pub role_arn: String,
    /// Group, dedup and forwarded headers.
    pub template: RouteTemplate,
    /// Caller authentication.
    pub auth: RouteAuth,
}

/// An authorizer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizerSpec {
    /// Accepts tokens of these Cognito user pools.
    Cognito {
        /// Authorizer name, unique in the API.
        name: String,
        /// User pool ARNs.
        user_pool_arns: Vec<String>,
    },
    /// Calls a Lambda function. API Gateway needs permission to invoke it (a
    /// `lambda:InvokeFunction` grant to `apigateway.amazonaws.com` on the function).
    Lambda {
        /// Authorizer name, unique in the API.
        name: String,
        /// Function ARN.
        function_arn: String,
        /// `TOKEN` or `REQUEST`.
        request: bool,
        /// Where the identity comes from, e.g. `method.request.header.Authorization`.
        identity_source: String,
        /// Seconds API Gateway caches the answer.
        ttl_seconds: i32,
    },
}

impl AuthorizerSpec {
    fn name(&self) -> &str {
        match self {
            Self::Cognito { name, .. } | Self::Lambda { name, .. } => name,
        }
    }
}

/// The invocation URI of a Lambda authorizer.
fn lambda_authorizer_uri(function_arn: &str) -> String {
    let part = |n| function_arn.split(':').nth(n).unwrap_or_default();
    let (partition, region) = (part(1), part(3));
    format!(
        "arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )
}

/// The resource policy that limits routes to source CIDRs: everything may be
/// invoked, except a listed route from outside its list. `None` without lists.
pub fn source_ip_policy(routes: &[(String, Vec<String>)]) -> Option<Value> {
    let mut statements = vec![json!({
        "Effect": "Allow",
        "Principal": "*",
        "Action": "execute-api:Invoke",
        "Resource": "execute-api:/*"
    })];
    let mut routes: Vec<_> = routes
        .iter()
        .filter(|(_, cidrs)| !cidrs.is_empty())
        .collect();
    if routes.is_empty() {
        return None;
    }
    routes.sort();
    for (path, cidrs) in routes {
        statements.push(json!({
            "Effect": "Deny",
            "Principal": "*",
            "Action": "execute-api:Invoke",
            "Resource": format!("execute-api:/*/POST{path}"),
            "Condition": {"NotIpAddress": {"aws:SourceIp": cidrs}}
        }));
    }
    Some(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// API Gateway returns the policy JSON-escaped (`{\"Version\":…}`); reads both forms.
fn decode_policy(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .or_else(|| {
            let unescaped: String = serde_json::from_str(&format!("\"{text}\"")).ok()?;
            serde_json::from_str(&unescaped).ok()
        })
}

/// What a route's `POST` method (its `operationName`) and a deployment (its
/// description) carry to tell, from AWS alone, whether the live deployment contains
/// the route's last change: `hookline <n>`, `n` the operator's clock in milliseconds
/// when the change or the deployment was made, strictly increasing within a process.
/// A route is live when the stage's deployment has a larger `n` than the route. An
/// operator stopped between a change and its deployment leaves a route whose `n` is
/// larger than the stage's, so the next one deploys it. (API Gateway keeps no change
/// time on methods; the deployment's `createdDate` is the service's clock, so
/// comparing it with our marker would depend on clock skew.)
const MARKER_PREFIX: &str = "hookline ";

/// A new change or deployment marker.
fn new_marker() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let previous = LAST
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |last| Some(now.max(last + 1)),
        )
        .unwrap_or(0);
    now.max(previous + 1)
}

fn marker_text(marker: u64) -> String {
    format!("{MARKER_PREFIX}{marker}")
}

/// The marker in an `operationName` or a deployment description.
fn read_marker(text: Option<&str>) -> Option<u64> {
    text?
        .strip_prefix(MARKER_PREFIX)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether a deployment marked `deployed` contains a route marked `changed` (either
/// missing: no, so the route is deployed, and marked, once more).
pub fn deployment_contains(deployed: Option<u64>, changed: Option<u64>) -> bool {
    matches!((deployed, changed), (Some(d), Some(c)) if d > c)
}

/// An authorizer deleted by [`Authorizers::delete_authorizers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAuthorizer {
    /// Its id.
    pub id: String,
    /// The Lambda function it called, if a Lambda authorizer.
    pub function_arn: Option<String>,
}

/// The name an authorizer being replaced is set aside under.
fn replaced_name(name: &str, id: &str) -> String {
    format!("{name}~{id}")
}

/// The function ARN inside a Lambda authorizer's invocation URI.
fn function_of_authorizer_uri(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("/functions/")?;
    Some(rest.strip_suffix("/invocations").unwrap_or(rest).to_owned())
}

/// What decides how an authorizer is brought to its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerShape {
    /// `COGNITO_USER_POOLS`, `TOKEN` or `REQUEST`.
    pub kind: AuthorizerType,
    /// User pool ARNs (Cognito), sorted.
    pub providers: Vec<String>,
    /// Invocation URI (Lambda).
    pub uri: Option<String>,
    /// Identity source.
    pub identity: String,
    /// Result cache TTL (Lambda; `None`: not managed).
    pub ttl: Option<i32>,
}

impl AuthorizerShape {
    fn of(spec: &AuthorizerSpec) -> Self {
        match spec {
            AuthorizerSpec::Cognito { user_pool_arns, .. } => {
                let mut providers = user_pool_arns.clone();
                providers.sort();
                Self {
                    kind: AuthorizerType::CognitoUserPools,
                    providers,
                    uri: None,
                    identity: "method.request.header.Authorization".to_owned(),
                    ttl: None,
                }
            }
            AuthorizerSpec::Lambda {
                function_arn,
                request,
                identity_source,
                ttl_seconds,
                ..
            } => Self {
                kind: if *request {
                    AuthorizerType::Request
                } else {
                    AuthorizerType::Token
                },
                providers: Vec::new(),
                uri: Some(lambda_authorizer_uri(function_arn)),
                identity: identity_source.clone(),
                ttl: Some(*ttl_seconds),
            },
        }
    }

    fn from_aws(current: &aws_sdk_apigateway::types::Authorizer) -> Self {
        let mut providers = current.provider_arns.clone().unwrap_or_default();
        providers.sort();
        Self {
            kind: current.r#type.clone().unwrap_or(AuthorizerType::Token),
            providers,
            uri: current.authorizer_uri.clone().filter(|u| !u.is_empty()),
            identity: current.identity_source.clone().unwrap_or_default(),
            ttl: current.authorizer_result_ttl_in_seconds,
        }
    }
}

/// How to bring an authorizer from `current` to `desired`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerChange {
    /// It is as it should be.
    None,
    /// `UpdateAuthorizer` with these operations.
    Patch(Vec<PatchOperation>),
    /// A new authorizer: its type, or its user pools, differ. API Gateway patches
    /// neither (`/providerARNs` is not a replaceable path), and the old one cannot
    /// be deleted while a method references it.
    Replace,
}

/// The change from `current` to `desired` (see [`AuthorizerChange`]).
pub fn authorizer_change(current: &AuthorizerShape, desired: &AuthorizerShape) -> AuthorizerChange {
    if current.kind != desired.kind || current.providers != desired.providers {
        return AuthorizerChange::Replace;
    }
    let mut ops = Vec::new();
    if current.uri != desired.uri
        && let Some(uri) = &desired.uri
    {
        ops.push(replace("/authorizerUri".into(), uri.clone()));
    }
    if current.identity != desired.identity {
        ops.push(replace("/identitySource".into(), desired.identity.clone()));
    }
    if let Some(ttl) = desired.ttl
        && current.ttl != Some(ttl)
    {
        ops.push(replace(
            "/authorizerResultTtlInSeconds".into(),
            ttl.to_string(),
        ));
    }
    if ops.is_empty() {
        AuthorizerChange::None
    } else {
        AuthorizerChange::Patch(ops)
    }
}

/// The `UpdateMethod` operations that turn a method's OAuth scopes into `desired`:
/// API Gateway adds and removes scopes one at a time (`add`/`remove` on
/// `/authorizationScopes`; there is no `replace`).
pub fn scope_ops(current: &[String], desired: &[String]) -> Vec<PatchOperation> {
    let op = |op: Op, scope: &String| {
        PatchOperation::builder()
            .op(op)
            .path("/authorizationScopes")
            .value(scope.clone())
            .build()
    };
    let mut ops: Vec<PatchOperation> = current
        .iter()
        .filter(|s| !desired.contains(s))
        .map(|s| op(Op::Remove, s))
        .collect();
    ops.extend(
        desired
            .iter()
            .filter(|s| !current.contains(s))
            .map(|s| op(Op::Add, s)),
    );
    ops
}

/// An API's resources: path → (id, has any method).
pub type ResourceTree = BTreeMap<String, (String, bool)>;

/// One call of a route's deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// `DeleteMethod` POST (its integration goes with it) on this resource.
    Method(String),
    /// `DeleteResource` of this resource.
    Resource(String),
}

/// The calls that delete the route at `path` and nothing else. `DeleteResource`
/// deletes a resource's children too (AWS), so a route with resources under it (the
/// route of another webhook at `path/b`, or the segments leading there) loses only
/// its `POST`. Otherwise the resource goes, and then each parent segment that is
/// left with no method and no other child (it counts against the resources-per-API
/// quota), deepest first, never `/`. A route already gone still prunes the empty
/// segments a deletion cut short left behind.
pub fn route_deletion(tree: &ResourceTree, path: &str) -> Vec<Deletion> {
    let path = format!("/{}", path.trim_matches('/'));
    let under = |prefix: &str| {
        let prefix = format!("{prefix}/");
        tree.keys()
            .filter(move |p| p.starts_with(&prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut steps = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    match tree.get(&path) {
        Some((id, has_methods)) if !under(&path).is_empty() => {
            if *has_methods {
                steps.push(Deletion::Method(id.clone()));
            }
            return steps;
        }
        Some((id, _)) => {
            steps.push(Deletion::Resource(id.clone()));
            removed.push(path.clone());
        }
        None => removed.push(path.clone()),
    }
    let mut current = path;
    while let Some((parent, _)) = current.rsplit_once('/') {
        if parent.is_empty() {
            break;
        }
        let Some((id, has_methods)) = tree.get(parent) else {
            current = parent.to_owned();
            continue;
        };
        let others = under(parent).into_iter().any(|p| {
            !removed
                .iter()
                .any(|r| p == *r || p.starts_with(&format!("{r}/")))
        });
        if *has_methods || others {
            break;
        }
        steps.push(Deletion::Resource(id.clone()));
        removed.push(parent.to_owned());
        current = parent.to_owned();
    }
    steps
}

/// Whether the policy API Gateway stores for `api_id` (`stored`, as decoded) is
/// `desired`. AWS does not keep a resource policy as written: it expands the
/// `execute-api:/…` shorthand to `arn:PARTITION:execute-api:REGION:ACCOUNT:API/…`,
/// writes a one-element array as a single value, and may reorder keys; compared as
/// written, the two never match and every resync would update the policy and
/// redeploy. Both sides are normalised first (see [`normalise_policy`]).
pub fn policies_match(desired: Option<&Value>, stored: Option<&Value>, api_id: &str) -> bool {
    match (desired, stored) {
        (None, None) => true,
        (Some(desired), Some(stored)) => {
            normalise_policy(desired, api_id) == normalise_policy(stored, api_id)
        }
        _ => false,
    }
}

/// A policy in one canonical form: `Statement` always an array, sorted; in every
/// statement `Action`/`NotAction`/`Resource`/`NotResource` and every principal and
/// condition value a sorted array of strings; this API's expanded ARNs written back
/// as the `execute-api:/` shorthand; `{"AWS": "*"}` as `"*"`.
pub fn normalise_policy(policy: &Value, api_id: &str) -> Value {
    let Some(object) = policy.as_object() else {
        return policy.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        if key == "Statement" {
            let mut statements: Vec<Value> = as_list(value)
                .iter()
                .map(|s| normalise_statement(s, api_id))
                .collect();
            statements.sort_by_key(Value::to_string);
            out.insert(key.clone(), Value::Array(statements));
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// A sorted, de-duplicated array of strings (numbers and booleans as AWS prints them).
fn string_set(value: &Value, rewrite: impl Fn(&str) -> String) -> Value {
    let mut items: Vec<String> = as_list(value)
        .iter()
        .map(|v| match v {
            Value::String(s) => rewrite(s),
            other => rewrite(&other.to_string()),
        })
        .collect();
    items.sort();
    items.dedup();
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn normalise_statement(statement: &Value, api_id: &str) -> Value {
    let Some(object) = statement.as_object() else {
        return statement.clone();
    };
    let shorthand = |resource: &str| execute_api_shorthand(resource, api_id);
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let normalised = match key.as_str() {
            "Action" | "NotAction" => string_set(value, str::to_owned),
            "Resource" | "NotResource" => string_set(value, shorthand),
            "Principal" | "NotPrincipal" => match value {
                Value::Object(principals) => {
                    let anyone = principals.len() == 1
                        && principals
                            .get("AWS")
                            .is_some_and(|aws| string_set(aws, str::to_owned) == json!(["*"]));
                    if anyone {
                        json!("*")
                    } else {
                        Value::Object(
                            principals
                                .iter()
                                .map(|(k, v)| (k.clone(), string_set(v, str::to_owned)))
                                .collect(),
                        )
                    }
                }
                other => other.clone(),
            },
            "Condition" => match value {
                Value::Object(operators) => Value::Object(
                    operators
                        .iter()
                        .map(|(operator, keys)| {
                            let keys = match keys {
                                Value::Object(keys) => Value::Object(
                                    keys.iter()
                                        .map(|(k, v)| (k.clone(), string_set(v, str::to_owned)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (operator.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), normalised);
    }
    Value::Object(out)
}

/// `arn:PARTITION:execute-api:REGION:ACCOUNT:API_ID/rest` → `execute-api:/rest` for
/// this API; any other text unchanged.
fn execute_api_shorthand(resource: &str, api_id: &str) -> String {
    let parts: Vec<&str> = resource.splitn(6, ':').collect();
    if let [arn, _partition, "execute-api", _region, _account, tail] = parts.as_slice()
        && *arn == "arn"
        && let Some(rest) = tail.strip_prefix(api_id)
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return format!("execute-api:{}", if rest.is_empty() { "/" } else { rest });
    }
    resource.to_owned()
}

/// A custom domain for the gateway's hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The hostname.
    pub domain: String,
    /// Regional ACM certificate ARN.
    pub certificate_arn: String,
    /// API and stage served at its root.
    pub api_id: String,
    /// Stage name.
    pub stage: String,
    /// The owning gateway.
    pub owner: Owner,
    /// The regional domain name the gateway's status holds for the domain it created
    /// (or proved its own before): the proof of ownership where the domain's owner
    /// tag cannot be read (see [`domain_owned`]).
    pub created: Option<String>,
}

/// Whether a custom domain read back from API Gateway is the gateway's own.
///
/// The owner tag decides when it is there: ours, or another owner's and never
/// touched, whatever else is known. Without an owner tag, the domain is ours only if
/// the gateway recorded it: `created` is the regional domain name that
/// `CreateDomainName` answered, written to the gateway's status right after the call,
/// and the domain read must carry that same name. API Gateway returns the name
/// (`d-<id>.execute-api…`) when it creates the domain, so a domain we never created
/// matches nothing, and one someone else created under the hostname (say, after ours
/// was deleted by hand) would have to come back untagged with our id (AWS documents
/// no reuse of it; LocalStack derives it from the name). This keeps our domain ours
/// where its tags are not readable (AWS's tagging is eventually consistent;
/// LocalStack drops a domain's tags) and refuses everything else.
pub fn domain_owned(
    owner: &Owner,
    tags: &HashMap<String, String>,
    regional_domain_name: Option<&str>,
    created: Option<&str>,
    operation: &'static str,
    domain: &str,
) -> Result<(), AwsError> {
    if tags.contains_key(OWNER_TAG) {
        return owner.check(tags, APIGW, operation, "custom domain", domain);
    }
    match (regional_domain_name, created) {
        (Some(read), Some(recorded)) if !read.is_empty() && read == recorded => Ok(()),
        _ => owner.check(tags, APIGW, operation, "custom domain", domain),
    }
}

/// Where the alias record of a custom domain points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTarget {
    /// Regional domain name, e.g. `d-abc.execute-api.eu-west-1.amazonaws.com`.
    pub regional_domain_name: String,
    /// Its hosted zone id, for the Route 53 alias.
    pub regional_zone_id: String,
}

/// The REST API itself, its routes (resources and methods) and its resource policy.
#[async_trait::async_trait]
pub trait Routes: Send + Sync {
    /// The API (found by `known_id`, else by owner tag, else created), with a `GET /`
    /// health route so it can be deployed before any webhook exists.
    async fn ensure_api(&self, spec: &ApiSpec, known_id: Option<&str>) -> Result<ApiRef, AwsError>;
    /// A webhook's route; returns the path's resource id and whether anything
    /// changed (changes need a deployment to go live).
    async fn ensure_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
    ) -> Result<(String, bool), AwsError>;
    /// Sets the API's resource policy (`None`: no policy); true if it changed.
    /// A changed policy takes effect with the next deployment.
    async fn ensure_policy(&self, api_id: &str, policy: Option<&Value>) -> Result<bool, AwsError>;
    /// Deletes a route: its resource, or only its `POST` when other resources hang
    /// below it (see [`route_deletion`]), then the parent segments left empty;
    /// already gone is fine.
    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError>;
    /// Deletes the API if it is ours.
    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// Deployments and the stage: what is live, throttles, access logs.
#[async_trait::async_trait]
pub trait Stages: Send + Sync {
    /// Whether `stage` serves a deployment made after the last change of the route
    /// on `resource_id` (false when the stage does not exist yet). Read from AWS, so
    /// that a change whose deployment never happened (the operator stopped in
    /// between) is still found after a restart.
    async fn route_is_live(
        &self,
        api_id: &str,
        resource_id: &str,
        stage: &str,
    ) -> Result<bool, AwsError>;
    /// Deploys the API's current state to `stage` (creating the stage).
    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError>;
    /// Throttling and access logs of an existing stage; true if anything changed.
    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError>;
}

/// The gateway's custom domain and its base path mapping.
#[async_trait::async_trait]
pub trait Domains: Send + Sync {
    /// The custom domain (found, or created with the gateway's certificate), with
    /// that certificate. The caller records the returned regional domain name in the
    /// gateway's status before anything else ([`DomainSpec::created`]).
    async fn ensure_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError>;
    /// The domain's `(none)` base path mapping to the API's stage; a root mapped to
    /// anything else is a conflict, left untouched.
    async fn ensure_base_path_mapping(&self, spec: &DomainSpec) -> Result<(), AwsError>;
    /// Deletes the custom domain if it is ours (by its tag, or by `created`, the
    /// regional domain name the gateway recorded: see [`domain_owned`]).
    async fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
        created: Option<&str>,
    ) -> Result<(), AwsError>;
}

/// API keys and the usage plans that bind them to a stage.
#[async_trait::async_trait]
pub trait ApiKeys: Send + Sync {
    /// An API key with this value, enabled, in a usage plan for the API's stage.
    async fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<String, AwsError>;
    /// Deletes our API key of this name and the usage plans it is in (both outlive
    /// the API otherwise: they are account-level objects).
    async fn delete_api_key(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// Cognito and Lambda authorizers.
#[async_trait::async_trait]
pub trait Authorizers: Send + Sync {
    /// A Cognito or Lambda authorizer, found by name; returns its id. Settings that
    /// API Gateway can patch (TTL, identity source, function) are patched in place; a
    /// new type or new user pools make a new authorizer under the name, with the old
    /// one set aside until [`Authorizers::delete_authorizers`] (a method still uses it).
    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError>;
    /// Deletes the authorizers named `name`, and those a replacement set aside
    /// (`name~<id>`), except `keep`. With `keep`, one still referenced by a method is
    /// left for a later pass; without, that is an error. Returns what was deleted.
    async fn delete_authorizers(
        &self,
        api_id: &str,
        name: &str,
        keep: Option<&str>,
    ) -> Result<Vec<DeletedAuthorizer>, AwsError>;
}

/// A gateway's REST API: every concern, as the SDK implementation provides them together
/// (they share one mutation slot per API). Functions that need one concern take that trait.
pub trait RestApis: Routes + Stages + Domains + ApiKeys + Authorizers {}

impl<T: Routes + Stages + Domains + ApiKeys + Authorizers + ?Sized> RestApis for T {}

/// Deployment markers by (API id, deployment id); `None`: not made by Hookline.
type DeploymentMarkers = HashMap<(String, String), Option<u64>>;

/// [`RestApis`] on the API Gateway SDK.
#[derive(Debug, Clone)]
pub struct ApiGatewayRestApis {
    apigateway: aws_sdk_apigateway::Client,
    caller: Caller,
    mutations: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Markers of deployments by (API, deployment id): a deployment never changes
    /// (Hookline never updates one), so one read each is enough.
    deployment_markers: Arc<Mutex<DeploymentMarkers>>,
}

impl ApiGatewayRestApis {
    /// Uses `apigateway` for calls and `caller` for limits, retries and counts.
    pub fn new(apigateway: aws_sdk_apigateway::Client, caller: Caller) -> Self {
        Self {
            apigateway,
            caller,
            mutations: Arc::default(),
            deployment_markers: Arc::default(),
        }
    }

    /// Holds the REST API's mutation slot. API Gateway refuses parallel changes of
    /// one REST API ("ConflictException: Unable to complete operation due to
    /// concurrent modification"), and two reconciles creating the same path segment
    /// race; so every `ensure_*`/`delete_*`/`deploy` that writes to an API runs alone
    /// on it (reads included, so that what it read stays true while it writes).
    async fn mutating(&self, api_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let slot = self
            .mutations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(api_id.to_owned())
            .or_default()
            .clone();
        slot.lock_owned().await
    }

    async fn get_api(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_apigateway::operation::get_rest_api::GetRestApiOutput>, AwsError>
    {
        match self
            .caller
            .call(APIGW, "GetRestApi", || {
                self.apigateway.get_rest_api().rest_api_id(id).send()
            })
            .await
        {
            Ok(api) => Ok(Some(api)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_api(&self, owner: &Owner) -> Result<Option<(String, Option<String>)>, AwsError> {
        let mut position: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .caller
                .call(APIGW, "GetRestApis", || {
                    self.apigateway
                        .get_rest_apis()
                        .set_position(position.clone())
                        .limit(500)
                        .send()
                })
                .await?;
            for api in page.items.unwrap_or_default() {
                let ours = api.tags.as_ref().and_then(|t| t.get(OWNER_TAG)) == Some(&owner.uid);
                if let (true, Some(id)) = (ours, api.id) {
                    return Ok(Some((id, api.root_resource_id)));
                }
            }
            position = page.position;
            if position.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// All resources of the API by path.
    async fn resources(&self, api_id: &str) -> Result<HashMap<String, String>, AwsError> {
        let mut by_path = HashMap::new();
        let mut position: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .caller
                .call(APIGW, "GetResources", || {
                    self.apigateway
                        .get_resources()
                        .rest_api_id(api_id)
                        .set_position(position.clone())
                        .limit(500)
                        .send()
                })
                .await?;
            for resource in page.items.unwrap_or_default() {
                if let (Some(path), Some(id)) = (resource.path, resource.id) {
                    by_path.insert(path, id);
                }
            }
            position = page.position;
            if position.is_none() {
                break;
            }
        }
        Ok(by_path)
    }

    /// All resources of the API by path, with their id and whether they have any
    /// method (`embed=methods`).
    async fn resource_tree(&self, api_id: &str) -> Result<ResourceTree, AwsError> {
        let mut tree = ResourceTree::new();
        let mut position: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .caller
                .call(APIGW, "GetResources", || {
                    self.apigateway
                        .get_resources()
                        .rest_api_id(api_id)
                        .embed("methods")
                        .set_position(position.clone())
                        .limit(500)
                        .send()
                })
                .await?;
            for resource in page.items.unwrap_or_default() {
                let has_methods = resource
                    .resource_methods
                    .as_ref()
                    .is_some_and(|m| !m.is_empty());
                if let (Some(path), Some(id)) = (resource.path, resource.id) {
                    tree.insert(path, (id, has_methods));
                }
            }
            position = page.position;
            if position.is_none() {
                break;
            }
        }
        Ok(tree)
    }

    /// Creates the missing segments of `path`; returns the leaf's id.
    async fn ensure_path(
        &self,
        api: &ApiRef,
        path: &str,
        existing: &mut HashMap<String, String>,
    ) -> Result<String, AwsError> {
        let mut parent = api.root_resource_id.clone();
        let mut current = String::new();
        for segment in path.trim_matches('/').split('/') {
            current = format!("{current}/{segment}");
            if let Some(id) = existing.get(&current) {
                parent = id.clone();
                continue;
            }
            let created = self
                .caller
                .call(APIGW, "CreateResource", || {
                    self.apigateway
                        .create_resource()
                        .rest_api_id(&api.id)
                        .parent_id(&parent)
                        .path_part(segment)
                        .send()
                })
                .await;
            let id = match created {
                Ok(created) => created.id,
                // The segment exists although it was not listed: another tool (or
                // another operator replica) created it since. A concurrent
                // modification is not this: it is Throttled and retried by the caller.
                Err(AwsError::Conflict { .. }) => {
                    *existing = self.resources(&api.id).await?;
                    existing.get(&current).cloned()
                }
                Err(e) => return Err(e),
            };
            let id = id.ok_or_else(|| {
                AwsError::unexpected(APIGW, "CreateResource", format!("no id for {current}"))
            })?;
            existing.insert(current.clone(), id.clone());
            parent = id;
        }
        Ok(parent)
    }

    async fn get_method(
        &self,
        api_id: &str,
        resource_id: &str,
        method: &str,
    ) -> Result<Option<aws_sdk_apigateway::operation::get_method::GetMethodOutput>, AwsError> {
        match self
            .caller
            .call(APIGW, "GetMethod", || {
                self.apigateway
                    .get_method()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method(method)
                    .send()
            })
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The usage plans an API key belongs to.
    async fn usage_plans_of(
        &self,
        key_id: &str,
    ) -> Result<Vec<aws_sdk_apigateway::types::UsagePlan>, AwsError> {
        Ok(self
            .caller
            .call(APIGW, "GetUsagePlans", || {
                self.apigateway
                    .get_usage_plans()
                    .key_id(key_id)
                    .limit(500)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default())
    }

    async fn authorizers(
        &self,
        api_id: &str,
    ) -> Result<Vec<aws_sdk_apigateway::types::Authorizer>, AwsError> {
        Ok(self
            .caller
            .call(APIGW, "GetAuthorizers", || {
                self.apigateway
                    .get_authorizers()
                    .rest_api_id(api_id)
                    .limit(500)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default())
    }

    /// Records that the route on `resource_id` changed (see [`MARKER_PREFIX`]).
    async fn mark_changed(
        &self,
        api_id: &str,
        resource_id: &str,
        marker: &str,
    ) -> Result<(), AwsError> {
        self.caller
            .call(APIGW, "UpdateMethod", || {
                self.apigateway
                    .update_method()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method("POST")
                    .patch_operations(replace("/operationName".into(), marker.to_owned()))
                    .send()
            })
            .await?;
        Ok(())
    }

    /// The marker of a deployment (`None`: not made by Hookline).
    async fn deployment_marker(
        &self,
        api_id: &str,
        deployment_id: &str,
    ) -> Result<Option<u64>, AwsError> {
        let key = (api_id.to_owned(), deployment_id.to_owned());
        if let Some(known) = self
            .deployment_markers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(*known);
        }
        let deployment = self
            .caller
            .call(APIGW, "GetDeployment", || {
                self.apigateway
                    .get_deployment()
                    .rest_api_id(api_id)
                    .deployment_id(deployment_id)
                    .send()
            })
            .await?;
        let marker = read_marker(deployment.description.as_deref());
        self.deployment_markers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, marker);
        Ok(marker)
    }

    async fn ensure_health_route(&self, api: &ApiRef) -> Result<(), AwsError> {
        if self
            .get_method(&api.id, &api.root_resource_id, "GET")
            .await?
            .is_some()
        {
            return Ok(());
        }
        let (id, root) = (&api.id, &api.root_resource_id);
        self.caller
            .call(APIGW, "PutMethod", || {
                self.apigateway
                    .put_method()
                    .rest_api_id(id)
                    .resource_id(root)
                    .http_method("GET")
                    .authorization_type("NONE")
                    .send()
            })
            .await?;
        self.caller
            .call(APIGW, "PutIntegration", || {
                self.apigateway
                    .put_integration()
                    .rest_api_id(id)
                    .resource_id(root)
                    .http_method("GET")
                    .r#type(IntegrationType::Mock)
                    .request_templates("application/json", r#"{"statusCode": 200}"#)
                    .send()
            })
            .await?;
        self.caller
            .call(APIGW, "PutMethodResponse", || {
                self.apigateway
                    .put_method_response()
                    .rest_api_id(id)
                    .resource_id(root)
                    .http_method("GET")
                    .status_code("200")
                    .send()
            })
            .await?;
        self.caller
            .call(APIGW, "PutIntegrationResponse", || {
                self.apigateway
                    .put_integration_response()
                    .rest_api_id(id)
                    .resource_id(root)
                    .http_method("GET")
                    .status_code("200")
                    .response_templates(
                        "application/json",
                        r#"{"service":"hookline","status":"ok"}"#,
                    )
                    .send()
            })
            .await?;
        Ok(())
    }
}

fn authorization(auth: &RouteAuth) -> (&'static str, Option<&str>, bool) {
    match auth {
        RouteAuth::None => ("NONE", None, false),
        RouteAuth::ApiKey => ("NONE", None, true),
        RouteAuth::Cognito { authorizer_id, .. } => {
            ("COGNITO_USER_POOLS", Some(authorizer_id.as_str()), false)
        }
        RouteAuth::Lambda { authorizer_id } => ("CUSTOM", Some(authorizer_id.as_str()), false),
    }
}

fn template_error(e: TemplateError) -> AwsError {
    AwsError::Invalid {
        service: APIGW,
        operation: "PutIntegration",
        code: "HooklineTemplate".to_owned(),
        message: e.to_string(),
    }
}

/// A stage's method-settings key for a resource path: `/` becomes `~1`.
fn settings_key(path: &str, method: &str) -> String {
    format!("{}/{method}", path.replace('/', "~1"))
}

/// The `UpdateStage` operations that make a stage's settings `spec`: the stage-wide
/// throttle (`*/*`), one override per listed route, the access log; and the removal
/// of every `POST` route override `spec` no longer lists, since the stage is the
/// gateway's and only the operator writes route settings on it (a Webhook that drops
/// its `throttling`, or is deleted, leaves none behind).
pub fn stage_patch_operations(
    settings: &HashMap<String, aws_sdk_apigateway::types::MethodSetting>,
    access_log: Option<&aws_sdk_apigateway::types::AccessLogSettings>,
    spec: &StageSpec,
) -> Vec<PatchOperation> {
    // AWS keys route settings as `~1a~1b/POST`; MiniStack decodes them to
    // `/a/b/POST`. Either spelling is the same setting.
    let current = |key: &str| {
        settings
            .get(key)
            .or_else(|| settings.get(&key.replace("~1", "/")))
    };
    let mut ops = Vec::new();
    let mut throttle = |key: String, rate: f64, burst: i32| {
        let setting = current(&key);
        if setting.is_none_or(|s| (s.throttling_rate_limit - rate).abs() > f64::EPSILON) {
            ops.push(replace(
                format!("/{key}/throttling/rateLimit"),
                rate.to_string(),
            ));
        }
        if setting.is_none_or(|s| s.throttling_burst_limit != burst) {
            ops.push(replace(
                format!("/{key}/throttling/burstLimit"),
                burst.to_string(),
            ));
        }
    };
    throttle("*/*".to_owned(), spec.rate_limit, spec.burst_limit);
    for (path, rate, burst) in &spec.route_throttling {
        throttle(settings_key(path, "POST"), *rate, *burst);
    }
    let mut stale: Vec<String> = settings
        .keys()
        .filter_map(|key| {
            let decoded = key.replace("~1", "/");
            let (path, method) = decoded.rsplit_once('/')?;
            (method == "POST" && path.starts_with('/')).then(|| path.to_owned())
        })
        .filter(|path| !spec.route_throttling.iter().any(|(p, _, _)| p == path))
        .collect();
    stale.sort_unstable();
    stale.dedup();
    for path in stale {
        // Removing `/{resourcePath}/{httpMethod}` drops the whole override, as
        // Terraform's aws_api_gateway_method_settings does on delete.
        ops.push(
            PatchOperation::builder()
                .op(Op::Remove)
                .path(format!("/{}", settings_key(&path, "POST")))
                .build(),
        );
    }
    if let Some((destination, format)) = &spec.access_log {
        if access_log.and_then(|c| c.destination_arn.as_deref()) != Some(destination.as_str()) {
            ops.push(replace(
                "/accessLogSettings/destinationArn".into(),
                destination.clone(),
            ));
        }
        if access_log.and_then(|c| c.format.as_deref()) != Some(format.as_str()) {
            ops.push(replace("/accessLogSettings/format".into(), format.clone()));
        }
    }
    ops
}

fn replace(path: String, value: String) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

#[async_trait::async_trait]
impl Routes for ApiGatewayRestApis {
    async fn ensure_api(&self, spec: &ApiSpec, known_id: Option<&str>) -> Result<ApiRef, AwsError> {
        let found = match known_id {
            Some(id) => match self.get_api(id).await? {
                Some(api) => {
                    let tags = api.tags.clone().unwrap_or_default();
                    spec.owner
                        .check(&tags, APIGW, "GetRestApi", "REST API", id)?;
                    Some((id.to_owned(), api.root_resource_id))
                }
                None => self.find_api(&spec.owner).await?,
            },
            None => self.find_api(&spec.owner).await?,
        };
        let (id, root) = match found {
            Some(found) => found,
            None => {
                let mut tags = spec.tags.clone();
                tags.extend(spec.owner.tags());
                let api = self
                    .caller
                    .call(APIGW, "CreateRestApi", || {
                        self.apigateway
                            .create_rest_api()
                            .name(&spec.name)
                            .description(format!("Hookline webhooks of {}", spec.owner.resource))
                            .endpoint_configuration(
                                EndpointConfiguration::builder()
                                    .types(EndpointType::Regional)
                                    .build(),
                            )
                            .set_tags(Some(tags.clone().into_iter().collect()))
                            .send()
                    })
                    .await?;
                tracing::info!(api = ?api.id, name = %spec.name, "created REST API");
                let id = api
                    .id
                    .ok_or_else(|| AwsError::unexpected(APIGW, "CreateRestApi", "no API id"))?;
                (id, api.root_resource_id)
            }
        };
        let root_resource_id = match root {
            Some(root) => root,
            None => self.resources(&id).await?.remove("/").ok_or_else(|| {
                AwsError::unexpected(APIGW, "GetResources", format!("API {id} has no / resource"))
            })?,
        };
        let api = ApiRef {
            id,
            root_resource_id,
        };
        let _mutation = self.mutating(&api.id).await;
        self.ensure_health_route(&api).await?;
        Ok(api)
    }

    async fn ensure_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
    ) -> Result<(String, bool), AwsError> {
        let _mutation = self.mutating(&api.id).await;
        // Taken before any change: the mutation slot keeps deployments out until this
        // route's changes are all made, so a later deployment has a larger marker.
        let marker = marker_text(new_marker());
        let mut marked = false;
        let template = request_template(&spec.template).map_err(template_error)?;
        let uri = sqs_integration_uri(&spec.queue_arn).ok_or_else(|| {
            AwsError::unexpected(
                APIGW,
                "PutIntegration",
                format!("not an SQS queue ARN: {}", spec.queue_arn),
            )
        })?;
        let mut resources = self.resources(&api.id).await?;
        let before = resources.len();
        let resource_id = self.ensure_path(api, &spec.path, &mut resources).await?;
        let mut changed = resources.len() != before;
        let (id, rid) = (&api.id, &resource_id);
        let (authorization_type, authorizer_id, api_key_required) = authorization(&spec.auth);
        let scopes = match &spec.auth {
            RouteAuth::Cognito { scopes, .. } => scopes.clone(),
            _ => Vec::new(),
        };

        let method = self.get_method(id, rid, "POST").await?;
        match &method {
            None => {
                self.caller
                    .call(APIGW, "PutMethod", || {
                        self.apigateway
                            .put_method()
                            .rest_api_id(id)
                            .resource_id(rid)
                            .http_method("POST")
                            .authorization_type(authorization_type)
                            .set_authorizer_id(authorizer_id.map(str::to_owned))
                            .api_key_required(api_key_required)
                            .set_authorization_scopes((!scopes.is_empty()).then(|| scopes.clone()))
                            .operation_name(&marker)
                            .send()
                    })
                    .await?;
                changed = true;
                marked = true;
            }
            Some(m) => {
                let mut ops = Vec::new();
                if m.authorization_type.as_deref() != Some(authorization_type) {
                    ops.push(replace(
                        "/authorizationType".into(),
                        authorization_type.into(),
                    ));
                }
                if m.authorizer_id.as_deref() != authorizer_id {
                    ops.push(replace(
                        "/authorizerId".into(),
                        authorizer_id.unwrap_or_default().into(),
                    ));
                }
                if m.api_key_required.unwrap_or(false) != api_key_required {
                    ops.push(replace(
                        "/apiKeyRequired".into(),
                        api_key_required.to_string(),
                    ));
                }
                ops.extend(scope_ops(
                    m.authorization_scopes.as_deref().unwrap_or_default(),
                    &scopes,
                ));
                // A route from before markers existed gets one (and so one deployment).
                if !ops.is_empty() || read_marker(m.operation_name.as_deref()).is_none() {
                    ops.push(replace("/operationName".into(), marker.clone()));
                    self.caller
                        .call(APIGW, "UpdateMethod", || {
                            self.apigateway
                                .update_method()
                                .rest_api_id(id)
                                .resource_id(rid)
                                .http_method("POST")
                                .set_patch_operations(Some(ops.clone()))
                                .send()
                        })
                        .await?;
                    changed = true;
                    marked = true;
                }
            }
        }

        let templates = request_templates(&template);
        let content_type = "'application/x-www-form-urlencoded'".to_owned();
        let integration = method.as_ref().and_then(|m| m.method_integration.clone());
        let integration_matches = integration.as_ref().is_some_and(|i| {
            i.r#type == Some(IntegrationType::Aws)
                && i.http_method.as_deref() == Some("POST")
                && i.uri.as_deref() == Some(uri.as_str())
                && i.credentials.as_deref() == Some(spec.role_arn.as_str())
                && i.passthrough_behavior.as_deref() == Some("NEVER")
                && i.request_templates.as_ref() == Some(&templates)
                && i.request_parameters
                    .as_ref()
                    .and_then(|p| p.get("integration.request.header.Content-Type"))
                    == Some(&content_type)
        });
        if !integration_matches {
            self.caller
                .call(APIGW, "PutIntegration", || {
                    self.apigateway
                        .put_integration()
                        .rest_api_id(id)
                        .resource_id(rid)
                        .http_method("POST")
                        .r#type(IntegrationType::Aws)
                        .integration_http_method("POST")
                        .uri(&uri)
                        .credentials(&spec.role_arn)
                        .passthrough_behavior("NEVER")
                        .request_parameters(
                            "integration.request.header.Content-Type",
                            &content_type,
                        )
                        .set_request_templates(Some(templates.clone()))
                        .send()
                })
                .await?;
            changed = true;
        }

        let method_responses = method
            .as_ref()
            .and_then(|m| m.method_responses.clone())
            .unwrap_or_default();
        // PutIntegration replaces the integration and drops its responses.
        let integration_responses = if integration_matches {
            integration
                .and_then(|i| i.integration_responses)
                .unwrap_or_default()
        } else {
            HashMap::new()
        };
        for response in ROUTE_RESPONSES {
            let (status, pattern, body) = (
                response.status,
                response.selection_pattern,
                response.template,
            );
            if !method_responses.contains_key(status) {
                self.caller
                    .call(APIGW, "PutMethodResponse", || {
                        self.apigateway
                            .put_method_response()
                            .rest_api_id(id)
                            .resource_id(rid)
                            .http_method("POST")
                            .status_code(status)
                            .send()
                    })
                    .await?;
                changed = true;
            }
            let current = integration_responses.get(status);
            // A default response has no pattern; MiniStack spells that "".
            let same = current.is_some_and(|r| {
                r.selection_pattern.as_deref().filter(|p| !p.is_empty()) == pattern
                    && r.response_templates
                        .as_ref()
                        .and_then(|t| t.get("application/json"))
                        .map(String::as_str)
                        == Some(body)
            });
            if !same {
                self.caller
                    .call(APIGW, "PutIntegrationResponse", || {
                        self.apigateway
                            .put_integration_response()
                            .rest_api_id(id)
                            .resource_id(rid)
                            .http_method("POST")
                            .status_code(status)
                            .set_selection_pattern(pattern.map(str::to_owned))
                            .response_templates("application/json", body)
                            .send()
                    })
                    .await?;
                changed = true;
            }
        }
        if changed && !marked {
            self.mark_changed(id, rid, &marker).await?;
        }
        Ok((resource_id, changed))
    }

    async fn ensure_policy(&self, api_id: &str, policy: Option<&Value>) -> Result<bool, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let current = self
            .get_api(api_id)
            .await?
            .ok_or_else(|| AwsError::NotFound {
                service: APIGW,
                operation: "GetRestApi",
                message: format!("REST API {api_id}"),
            })?
            .policy
            .filter(|p| !p.is_empty())
            .and_then(|p| decode_policy(&p));
        if policies_match(policy, current.as_ref(), api_id) {
            return Ok(false);
        }
        let value = policy.map(Value::to_string).unwrap_or_default();
        self.caller
            .call(APIGW, "UpdateRestApi", || {
                self.apigateway
                    .update_rest_api()
                    .rest_api_id(api_id)
                    .patch_operations(replace("/policy".into(), value.clone()))
                    .send()
            })
            .await?;
        Ok(true)
    }

    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError> {
        let _mutation = self.mutating(&api.id).await;
        let tree = match self.resource_tree(&api.id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        for step in route_deletion(&tree, path) {
            match step {
                Deletion::Method(resource_id) => gone_is_fine(
                    self.caller
                        .call(APIGW, "DeleteMethod", || {
                            self.apigateway
                                .delete_method()
                                .rest_api_id(&api.id)
                                .resource_id(&resource_id)
                                .http_method("POST")
                                .send()
                        })
                        .await,
                )?,
                Deletion::Resource(resource_id) => gone_is_fine(
                    self.caller
                        .call(APIGW, "DeleteResource", || {
                            self.apigateway
                                .delete_resource()
                                .rest_api_id(&api.id)
                                .resource_id(&resource_id)
                                .send()
                        })
                        .await,
                )?,
            }
        }
        Ok(())
    }

    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError> {
        let _mutation = self.mutating(api_id).await;
        let Some(api) = self.get_api(api_id).await? else {
            return Ok(());
        };
        owner.check(
            &api.tags.unwrap_or_default(),
            APIGW,
            "GetRestApi",
            "REST API",
            api_id,
        )?;
        gone_is_fine(
            self.caller
                .call(APIGW, "DeleteRestApi", || {
                    self.apigateway.delete_rest_api().rest_api_id(api_id).send()
                })
                .await,
        )
    }
}

#[async_trait::async_trait]
impl Stages for ApiGatewayRestApis {
    async fn route_is_live(
        &self,
        api_id: &str,
        resource_id: &str,
        stage: &str,
    ) -> Result<bool, AwsError> {
        let Some(method) = self.get_method(api_id, resource_id, "POST").await? else {
            return Ok(false);
        };
        let changed = read_marker(method.operation_name.as_deref());
        let deployment = match self
            .caller
            .call(APIGW, "GetStage", || {
                self.apigateway
                    .get_stage()
                    .rest_api_id(api_id)
                    .stage_name(stage)
                    .send()
            })
            .await
        {
            Ok(stage) => stage.deployment_id,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let Some(deployment) = deployment else {
            return Ok(false);
        };
        let deployed = self.deployment_marker(api_id, &deployment).await?;
        Ok(deployment_contains(deployed, changed))
    }

    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let marker = new_marker();
        let deployment = self
            .caller
            .call(APIGW, "CreateDeployment", || {
                self.apigateway
                    .create_deployment()
                    .rest_api_id(api_id)
                    .stage_name(stage)
                    .description(marker_text(marker))
                    .send()
            })
            .await?;
        if let Some(id) = &deployment.id {
            self.deployment_markers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((api_id.to_owned(), id.clone()), Some(marker));
        }
        deployment
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateDeployment", "no deployment id"))
    }

    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let stage = self
            .caller
            .call(APIGW, "GetStage", || {
                self.apigateway
                    .get_stage()
                    .rest_api_id(api_id)
                    .stage_name(&spec.name)
                    .send()
            })
            .await?;
        let ops = stage_patch_operations(
            &stage.method_settings.unwrap_or_default(),
            stage.access_log_settings.as_ref(),
            spec,
        );
        if ops.is_empty() {
            return Ok(false);
        }
        self.caller
            .call(APIGW, "UpdateStage", || {
                self.apigateway
                    .update_stage()
                    .rest_api_id(api_id)
                    .stage_name(&spec.name)
                    .set_patch_operations(Some(ops.clone()))
                    .send()
            })
            .await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl Domains for ApiGatewayRestApis {
    async fn ensure_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError> {
        let existing = match self
            .caller
            .call(APIGW, "GetDomainName", || {
                self.apigateway
                    .get_domain_name()
                    .domain_name(&spec.domain)
                    .send()
            })
            .await
        {
            Ok(d) => Some(d),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let (regional_domain_name, regional_zone_id) = match existing {
            Some(domain) => {
                domain_owned(
                    &spec.owner,
                    &domain.tags.clone().unwrap_or_default(),
                    domain.regional_domain_name.as_deref(),
                    spec.created.as_deref(),
                    "GetDomainName",
                    &spec.domain,
                )?;
                if domain.regional_certificate_arn.as_deref() != Some(spec.certificate_arn.as_str())
                {
                    self.caller
                        .call(APIGW, "UpdateDomainName", || {
                            self.apigateway
                                .update_domain_name()
                                .domain_name(&spec.domain)
                                .patch_operations(replace(
                                    "/regionalCertificateArn".into(),
                                    spec.certificate_arn.clone(),
                                ))
                                .send()
                        })
                        .await?;
                }
                (domain.regional_domain_name, domain.regional_hosted_zone_id)
            }
            None => {
                let created = self
                    .caller
                    .call(APIGW, "CreateDomainName", || {
                        self.apigateway
                            .create_domain_name()
                            .domain_name(&spec.domain)
                            .regional_certificate_arn(&spec.certificate_arn)
                            .endpoint_configuration(
                                EndpointConfiguration::builder()
                                    .types(EndpointType::Regional)
                                    .build(),
                            )
                            .security_policy(SecurityPolicy::Tls12)
                            .set_tags(Some(spec.owner.tags().into_iter().collect()))
                            .send()
                    })
                    .await?;
                tracing::info!(domain = %spec.domain, "created custom domain");
                (
                    created.regional_domain_name,
                    created.regional_hosted_zone_id,
                )
            }
        };
        Ok(DomainTarget {
            regional_domain_name: regional_domain_name.ok_or_else(|| {
                AwsError::unexpected(APIGW, "GetDomainName", "no regional domain name")
            })?,
            regional_zone_id: regional_zone_id.ok_or_else(|| {
                AwsError::unexpected(APIGW, "GetDomainName", "no regional zone id")
            })?,
        })
    }

    async fn ensure_base_path_mapping(&self, spec: &DomainSpec) -> Result<(), AwsError> {
        let mappings = self
            .caller
            .call(APIGW, "GetBasePathMappings", || {
                self.apigateway
                    .get_base_path_mappings()
                    .domain_name(&spec.domain)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default();
        let root = mappings
            .iter()
            .find(|m| matches!(m.base_path.as_deref(), Some("(none)" | "") | None));
        match root {
            Some(m)
                if m.rest_api_id.as_deref() == Some(spec.api_id.as_str())
                    && m.stage.as_deref() == Some(spec.stage.as_str()) => {}
            Some(m) => {
                return Err(AwsError::Conflict {
                    service: APIGW,
                    operation: "GetBasePathMappings",
                    message: format!(
                        "{} already maps its root to API {} stage {}; left untouched",
                        spec.domain,
                        m.rest_api_id.as_deref().unwrap_or("?"),
                        m.stage.as_deref().unwrap_or("?")
                    ),
                });
            }
            None => {
                self.caller
                    .call(APIGW, "CreateBasePathMapping", || {
                        self.apigateway
                            .create_base_path_mapping()
                            .domain_name(&spec.domain)
                            .rest_api_id(&spec.api_id)
                            .stage(&spec.stage)
                            .send()
                    })
                    .await?;
            }
        }
        Ok(())
    }

    async fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
        created: Option<&str>,
    ) -> Result<(), AwsError> {
        let existing = match self
            .caller
            .call(APIGW, "GetDomainName", || {
                self.apigateway.get_domain_name().domain_name(domain).send()
            })
            .await
        {
            Ok(d) => d,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        domain_owned(
            owner,
            &existing.tags.unwrap_or_default(),
            existing.regional_domain_name.as_deref(),
            created,
            "GetDomainName",
            domain,
        )?;
        gone_is_fine(
            self.caller
                .call(APIGW, "DeleteDomainName", || {
                    self.apigateway
                        .delete_domain_name()
                        .domain_name(domain)
                        .send()
                })
                .await,
        )
    }
}

#[async_trait::async_trait]
impl ApiKeys for ApiGatewayRestApis {
    async fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<String, AwsError> {
        let keys = self
            .caller
            .call(APIGW, "GetApiKeys", || {
                self.apigateway
                    .get_api_keys()
                    .name_query(name)
                    .include_values(true)
                    .limit(500)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default();
        let ours = keys.into_iter().find(|k| {
            k.name.as_deref() == Some(name)
                && k.tags.as_ref().and_then(|t| t.get(OWNER_TAG)) == Some(&owner.uid)
        });
        let key_id = match ours {
            Some(key) if key.value.as_deref() == Some(value) && key.enabled => key
                .id
                .ok_or_else(|| AwsError::unexpected(APIGW, "GetApiKeys", "no key id"))?,
            stale => {
                // A key's value cannot change: a rotated Secret means a new key.
                if let Some(old) = stale.and_then(|k| k.id) {
                    self.caller
                        .call(APIGW, "DeleteApiKey", || {
                            self.apigateway.delete_api_key().api_key(&old).send()
                        })
                        .await?;
                }
                self.caller
                    .call(APIGW, "CreateApiKey", || {
                        self.apigateway
                            .create_api_key()
                            .name(name)
                            .value(value)
                            .enabled(true)
                            .set_tags(Some(owner.tags().into_iter().collect()))
                            .send()
                    })
                    .await?
                    .id
                    .ok_or_else(|| AwsError::unexpected(APIGW, "CreateApiKey", "no key id"))?
            }
        };

        let plans = self.usage_plans_of(&key_id).await?;
        let in_plan = plans.iter().any(|p| {
            p.api_stages.as_ref().is_some_and(|stages| {
                stages.iter().any(|s| {
                    s.api_id.as_deref() == Some(api_id) && s.stage.as_deref() == Some(stage)
                })
            })
        });
        if !in_plan {
            let plan = self
                .caller
                .call(APIGW, "CreateUsagePlan", || {
                    self.apigateway
                        .create_usage_plan()
                        .name(name)
                        .api_stages(
                            aws_sdk_apigateway::types::ApiStage::builder()
                                .api_id(api_id)
                                .stage(stage)
                                .build(),
                        )
                        .set_tags(Some(owner.tags().into_iter().collect()))
                        .send()
                })
                .await?
                .id
                .ok_or_else(|| AwsError::unexpected(APIGW, "CreateUsagePlan", "no plan id"))?;
            self.caller
                .call(APIGW, "CreateUsagePlanKey", || {
                    self.apigateway
                        .create_usage_plan_key()
                        .usage_plan_id(&plan)
                        .key_id(&key_id)
                        .key_type("API_KEY")
                        .send()
                })
                .await?;
        }
        Ok(key_id)
    }

    async fn delete_api_key(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let keys = self
            .caller
            .call(APIGW, "GetApiKeys", || {
                self.apigateway
                    .get_api_keys()
                    .name_query(name)
                    .limit(500)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default();
        for key in keys {
            let ours = key.name.as_deref() == Some(name)
                && key.tags.as_ref().and_then(|t| t.get(OWNER_TAG)) == Some(&owner.uid);
            let (true, Some(key_id)) = (ours, key.id) else {
                continue;
            };
            let plans = self.usage_plans_of(&key_id).await?;
            for plan in plans {
                let ours = plan.tags.as_ref().and_then(|t| t.get(OWNER_TAG)) == Some(&owner.uid);
                let (true, Some(plan_id)) = (ours, plan.id) else {
                    continue;
                };
                // A plan still attached to a stage cannot be deleted: detach it first.
                let detach: Vec<PatchOperation> = plan
                    .api_stages
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| Some(format!("{}:{}", s.api_id?, s.stage?)))
                    .map(|stage| {
                        PatchOperation::builder()
                            .op(Op::Remove)
                            .path("/apiStages")
                            .value(stage)
                            .build()
                    })
                    .collect();
                if !detach.is_empty() {
                    match self
                        .caller
                        .call(APIGW, "UpdateUsagePlan", || {
                            self.apigateway
                                .update_usage_plan()
                                .usage_plan_id(&plan_id)
                                .set_patch_operations(Some(detach.clone()))
                                .send()
                        })
                        .await
                    {
                        Err(e) if !e.is_not_found() => return Err(e),
                        _ => {}
                    }
                }
                match self
                    .caller
                    .call(APIGW, "DeleteUsagePlan", || {
                        self.apigateway
                            .delete_usage_plan()
                            .usage_plan_id(&plan_id)
                            .send()
                    })
                    .await
                {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                }
            }
            match self
                .caller
                .call(APIGW, "DeleteApiKey", || {
                    self.apigateway.delete_api_key().api_key(&key_id).send()
                })
                .await
            {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Authorizers for ApiGatewayRestApis {
    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let existing = self
            .authorizers(api_id)
            .await?
            .into_iter()
            .find(|a| a.name.as_deref() == Some(spec.name()));
        let desired = AuthorizerShape::of(spec);
        if let Some(current) = existing {
            let id = current
                .id
                .clone()
                .ok_or_else(|| AwsError::unexpected(APIGW, "GetAuthorizers", "no authorizer id"))?;
            match authorizer_change(&AuthorizerShape::from_aws(&current), &desired) {
                AuthorizerChange::None => return Ok(id),
                AuthorizerChange::Patch(ops) => {
                    self.caller
                        .call(APIGW, "UpdateAuthorizer", || {
                            self.apigateway
                                .update_authorizer()
                                .rest_api_id(api_id)
                                .authorizer_id(&id)
                                .set_patch_operations(Some(ops.clone()))
                                .send()
                        })
                        .await?;
                    return Ok(id);
                }
                AuthorizerChange::Replace => {
                    // A method still points at it, so it cannot be deleted yet (409):
                    // it steps aside under another name, the new one takes the name,
                    // the route is re-pointed, and then `delete_authorizers` removes it.
                    let aside = replaced_name(spec.name(), &id);
                    self.caller
                        .call(APIGW, "UpdateAuthorizer", || {
                            self.apigateway
                                .update_authorizer()
                                .rest_api_id(api_id)
                                .authorizer_id(&id)
                                .patch_operations(replace("/name".into(), aside.clone()))
                                .send()
                        })
                        .await?;
                }
            }
        }
        let created = self
            .caller
            .call(APIGW, "CreateAuthorizer", || {
                self.apigateway
                    .create_authorizer()
                    .rest_api_id(api_id)
                    .name(spec.name())
                    .r#type(desired.kind.clone())
                    .set_provider_arns(
                        (!desired.providers.is_empty()).then(|| desired.providers.clone()),
                    )
                    .set_authorizer_uri(desired.uri.clone())
                    .identity_source(&desired.identity)
                    .set_authorizer_result_ttl_in_seconds(desired.ttl)
                    .send()
            })
            .await?;
        created
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateAuthorizer", "no authorizer id"))
    }

    async fn delete_authorizers(
        &self,
        api_id: &str,
        name: &str,
        keep: Option<&str>,
    ) -> Result<Vec<DeletedAuthorizer>, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let authorizers = match self.authorizers(api_id).await {
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            other => other?,
        };
        let mut deleted = Vec::new();
        for authorizer in authorizers {
            let (Some(id), Some(this)) = (authorizer.id.clone(), authorizer.name.as_deref()) else {
                continue;
            };
            let ours = this == name || this.starts_with(&replaced_name(name, ""));
            if !ours || keep == Some(id.as_str()) {
                continue;
            }
            let result = self
                .caller
                .call(APIGW, "DeleteAuthorizer", || {
                    self.apigateway
                        .delete_authorizer()
                        .rest_api_id(api_id)
                        .authorizer_id(&id)
                        .send()
                })
                .await;
            match result {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                // Still referenced by a method: the route is re-pointed first.
                Err(AwsError::Conflict { .. }) if keep.is_some() => continue,
                Err(e) => return Err(e),
            }
            deleted.push(DeletedAuthorizer {
                id,
                function_arn: authorizer
                    .authorizer_uri
                    .as_deref()
                    .and_then(function_of_authorizer_uri),
            });
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_is_ours_by_its_tag_or_by_the_recorded_name_never_otherwise() {
        let owner = Owner {
            uid: "uid-ours".into(),
            resource: "WebhookGateway public".into(),
        };
        let tagged = |uid: &str| HashMap::from([(OWNER_TAG.to_owned(), uid.to_owned())]);
        let untagged = HashMap::new();
        let other_tags = HashMap::from([("team".to_owned(), "payments".to_owned())]);
        let ours = Some("d-ours.execute-api.us-east-1.amazonaws.com");
        let theirs = Some("d-theirs.execute-api.us-east-1.amazonaws.com");
        // (tags, regional name read, name recorded in status, ours?)
        let cases = [
            (tagged("uid-ours"), ours, None, true),
            (tagged("uid-ours"), theirs, ours, true),
            // Another owner's tag is never overridden by what status says.
            (tagged("uid-other"), ours, ours, false),
            (tagged("uid-other"), ours, None, false),
            (tagged(""), ours, ours, false),
            // No owner tag: only the domain the gateway recorded.
            (untagged.clone(), ours, ours, true),
            (other_tags.clone(), ours, ours, true),
            (untagged.clone(), theirs, ours, false),
            (untagged.clone(), ours, None, false),
            (other_tags, theirs, None, false),
            (untagged.clone(), None, ours, false),
            (untagged, Some(""), Some(""), false),
        ];
        for (tags, read, recorded, expected) in cases {
            let result = domain_owned(&owner, &tags, read, recorded, "GetDomainName", "hooks.x");
            assert_eq!(
                result.is_ok(),
                expected,
                "tags {tags:?}, read {read:?}, recorded {recorded:?}: {result:?}"
            );
            if let Err(e) = result {
                assert!(matches!(e, AwsError::NotOwned { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn source_ip_policy_denies_listed_routes_from_elsewhere() {
        assert_eq!(source_ip_policy(&[("/a".into(), vec![])]), None);
        let policy = source_ip_policy(&[
            ("/stripe".into(), vec!["3.18.12.63/32".into()]),
            ("/open".into(), vec![]),
        ])
        .unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[1]["Resource"], "execute-api:/*/POST/stripe");
        assert_eq!(
            statements[1]["Condition"]["NotIpAddress"]["aws:SourceIp"][0],
            "3.18.12.63/32"
        );
    }

    #[test]
    fn policies_read_back_in_either_form() {
        let policy = json!({"Version": "2012-10-17", "Statement": []});
        assert_eq!(decode_policy(&policy.to_string()), Some(policy.clone()));
        let escaped = policy.to_string().replace('"', "\\\"");
        assert_eq!(decode_policy(&escaped), Some(policy));
    }

    /// The policy Hookline writes against the forms AWS stores it in (shapes from
    /// GetRestApi outputs: expanded ARNs, single values for one-element arrays).
    #[test]
    fn policies_match_what_aws_stores() {
        let desired = source_ip_policy(&[
            ("/stripe".into(), vec!["3.18.12.63/32".into()]),
            (
                "/github".into(),
                vec!["192.30.252.0/22".into(), "185.199.108.0/22".into()],
            ),
        ]);
        let arn = "arn:aws:execute-api:us-west-2:767553057089:u1hp5d8r0b";
        let stored = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "execute-api:Invoke",
                    "Resource": format!("{arn}/*")
                },
                {
                    "Condition": {"NotIpAddress": {"aws:SourceIp": ["185.199.108.0/22", "192.30.252.0/22"]}},
                    "Resource": format!("{arn}/*/POST/github"),
                    "Action": "execute-api:Invoke",
                    "Principal": {"AWS": "*"},
                    "Effect": "Deny"
                },
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["execute-api:Invoke"],
                    "Resource": [format!("{arn}/*/POST/stripe")],
                    "Condition": {"NotIpAddress": {"aws:SourceIp": "3.18.12.63/32"}}
                }
            ]
        });
        let cases: [(&str, Option<Value>, Option<Value>, bool); 7] = [
            (
                "as AWS stores it",
                desired.clone(),
                Some(stored.clone()),
                true,
            ),
            ("as written", desired.clone(), desired.clone(), true),
            ("no policy either side", None, None, true),
            ("policy to remove", None, Some(stored.clone()), false),
            ("policy to add", desired.clone(), None, false),
            (
                "another API's ARN",
                desired.clone(),
                Some(json!(
                    stored.to_string().replace("u1hp5d8r0b", "zzzzzzzzzz")
                ))
                .and_then(|v| v.as_str().and_then(|t| serde_json::from_str(t).ok())),
                false,
            ),
            (
                "a CIDR changed",
                desired.clone(),
                Some(json!(
                    stored.to_string().replace("3.18.12.63/32", "3.18.12.64/32")
                ))
                .and_then(|v| v.as_str().and_then(|t| serde_json::from_str(t).ok())),
                false,
            ),
        ];
        for (name, desired, stored, expected) in cases {
            assert_eq!(
                policies_match(desired.as_ref(), stored.as_ref(), "u1hp5d8r0b"),
                expected,
                "{name}"
            );
        }
        assert_eq!(
            execute_api_shorthand(
                "arn:aws-cn:execute-api:cn-north-1:1:u1hp5d8r0b",
                "u1hp5d8r0b"
            ),
            "execute-api:/"
        );
        assert_eq!(
            execute_api_shorthand("arn:aws:execute-api:r:1:u1hp5d8r0bX/*", "u1hp5d8r0b"),
            "arn:aws:execute-api:r:1:u1hp5d8r0bX/*",
            "a longer id is another API"
        );
    }

    #[test]
    fn route_deletion_keeps_other_routes_and_prunes_empty_segments() {
        let tree = |entries: &[(&str, bool)]| -> ResourceTree {
            entries
                .iter()
                .map(|(path, methods)| ((*path).to_owned(), (format!("id{path}"), *methods)))
                .collect()
        };
        let method = |p: &str| Deletion::Method(format!("id{p}"));
        let resource = |p: &str| Deletion::Resource(format!("id{p}"));
        let cases: Vec<(&str, ResourceTree, &str, Vec<Deletion>)> = vec![
            (
                "a parent route keeps its resource for the child route",
                tree(&[("/", true), ("/a", true), ("/a/b", true)]),
                "/a",
                vec![method("/a")],
            ),
            (
                "a leaf route goes with its now empty segments",
                tree(&[("/", true), ("/crash-a", false), ("/crash-a/x", true)]),
                "/crash-a/x",
                vec![resource("/crash-a/x"), resource("/crash-a")],
            ),
            (
                "pruning stops at a segment that is a route",
                tree(&[("/", true), ("/p", true), ("/p/q", false), ("/p/q/r", true)]),
                "/p/q/r",
                vec![resource("/p/q/r"), resource("/p/q")],
            ),
            (
                "pruning stops at a segment shared with another route",
                tree(&[
                    ("/", true),
                    ("/pay", false),
                    ("/pay/stripe", true),
                    ("/pay/adyen", true),
                ]),
                "/pay/stripe",
                vec![resource("/pay/stripe")],
            ),
            (
                "a child route: the parent route stays",
                tree(&[("/", true), ("/a", true), ("/a/b", true)]),
                "/a/b",
                vec![resource("/a/b")],
            ),
            (
                "already gone: the empty segments left behind go",
                tree(&[("/", true), ("/x", false), ("/x/y", false)]),
                "/x/y/z",
                vec![resource("/x/y"), resource("/x")],
            ),
            (
                "a parent with children and no POST left: nothing to do",
                tree(&[("/", true), ("/a", false), ("/a/b", true)]),
                "/a",
                vec![],
            ),
        ];
        for (name, tree, path, expected) in cases {
            assert_eq!(route_deletion(&tree, path), expected, "{name}");
        }
    }

    #[test]
    fn authorizer_changes_patch_what_aws_patches_and_replace_the_rest() {
        let lambda = |request: bool, function: &str, identity: &str, ttl: i32| {
            AuthorizerShape::of(&AuthorizerSpec::Lambda {
                name: "n".into(),
                function_arn: format!("arn:aws:lambda:eu-west-1:1:function:{function}"),
                request,
                identity_source: identity.into(),
                ttl_seconds: ttl,
            })
        };
        let cognito = |pools: &[&str]| {
            AuthorizerShape::of(&AuthorizerSpec::Cognito {
                name: "n".into(),
                user_pool_arns: pools.iter().map(|p| (*p).to_owned()).collect(),
            })
        };
        let patch = |ops: &[(&str, &str)]| {
            AuthorizerChange::Patch(
                ops.iter()
                    .map(|(path, value)| replace((*path).into(), (*value).into()))
                    .collect(),
            )
        };
        let header = "method.request.header.Authorization";
        let base = lambda(false, "a", header, 300);
        let cases = [
            ("same", base.clone(), AuthorizerChange::None),
            (
                "ttl",
                lambda(false, "a", header, 60),
                patch(&[("/authorizerResultTtlInSeconds", "60")]),
            ),
            (
                "identity source",
                lambda(false, "a", "method.request.header.X-Token", 300),
                patch(&[("/identitySource", "method.request.header.X-Token")]),
            ),
            (
                "function",
                lambda(false, "b", header, 300),
                patch(&[(
                    "/authorizerUri",
                    "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:b/invocations",
                )]),
            ),
            (
                "TOKEN to REQUEST",
                lambda(true, "a", header, 300),
                AuthorizerChange::Replace,
            ),
            (
                "Lambda to Cognito",
                cognito(&["p1"]),
                AuthorizerChange::Replace,
            ),
        ];
        for (name, desired, expected) in cases {
            assert_eq!(authorizer_change(&base, &desired), expected, "{name}");
        }
        assert_eq!(
            authorizer_change(&cognito(&["p1", "p2"]), &cognito(&["p2", "p1"])),
            AuthorizerChange::None,
            "user pools in another order"
        );
        assert_eq!(
            authorizer_change(&cognito(&["p1"]), &cognito(&["p1", "p2"])),
            AuthorizerChange::Replace,
            "a new user pool"
        );
    }

    #[test]
    fn scope_changes_add_and_remove_one_scope_each() {
        let scopes = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let ops = scope_ops(
            &scopes(&["orders/read", "orders/write"]),
            &scopes(&["orders/write", "admin"]),
        );
        let seen: Vec<(String, String)> = ops
            .iter()
            .map(|o| {
                (
                    format!("{:?}", o.op()),
                    format!(
                        "{}={}",
                        o.path().unwrap_or_default(),
                        o.value().unwrap_or_default()
                    ),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "Some(Remove)".to_owned(),
                    "/authorizationScopes=orders/read".to_owned()
                ),
                (
                    "Some(Add)".to_owned(),
                    "/authorizationScopes=admin".to_owned()
                ),
            ]
        );
        assert!(scope_ops(&scopes(&["a"]), &scopes(&["a"])).is_empty());
    }

    #[test]
    fn a_deployment_contains_a_route_only_when_made_after_its_change() {
        assert!(deployment_contains(Some(20), Some(10)));
        assert!(!deployment_contains(Some(10), Some(20)), "changed since");
        assert!(!deployment_contains(Some(10), Some(10)));
        assert!(
            !deployment_contains(None, Some(10)),
            "not Hookline's deployment"
        );
        assert!(
            !deployment_contains(Some(10), None),
            "a route from before markers"
        );
        assert_eq!(
            read_marker(Some("hookline 1764582000123")),
            Some(1_764_582_000_123)
        );
        assert_eq!(read_marker(Some("hookline")), None, "the old description");
        assert_eq!(read_marker(Some(&marker_text(42))), Some(42));
        let (a, b) = (new_marker(), new_marker());
        assert!(b > a, "markers increase strictly within a process");
    }

    #[test]
    fn lambda_authorizer_uri_uses_the_function_region() {
        assert_eq!(
            lambda_authorizer_uri("arn:aws:lambda:eu-west-1:123456789012:function:auth"),
            "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:auth/invocations"
        );
        assert_eq!(
            lambda_authorizer_uri("arn:aws-us-gov:lambda:us-gov-west-1:1:function:auth"),
            "arn:aws-us-gov:apigateway:us-gov-west-1:lambda:path/2015-03-31/functions/arn:aws-us-gov:lambda:us-gov-west-1:1:function:auth/invocations"
        );
    }

    #[test]
    fn stage_patches_set_listed_overrides_and_remove_the_rest() {
        use aws_sdk_apigateway::types::MethodSetting;
        let setting = |rate: f64, burst: i32| {
            MethodSetting::builder()
                .throttling_rate_limit(rate)
                .throttling_burst_limit(burst)
                .build()
        };
        let spec = |routes: Vec<(&str, f64, i32)>| StageSpec {
            name: "live".to_owned(),
            rate_limit: 100.0,
            burst_limit: 200,
            route_throttling: routes
                .into_iter()
                .map(|(p, r, b)| (p.to_owned(), r, b))
                .collect(),
            access_log: None,
        };
        let ops = |current: Vec<(&str, MethodSetting)>, spec: &StageSpec| {
            let current: HashMap<String, MethodSetting> = current
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            stage_patch_operations(&current, None, spec)
                .into_iter()
                .map(|op| {
                    format!(
                        "{} {} {}",
                        op.op().map_or("?", Op::as_str),
                        op.path().unwrap_or_default(),
                        op.value().unwrap_or_default()
                    )
                    .trim_end()
                    .to_owned()
                })
                .collect::<Vec<_>>()
        };
        type Case = (
            &'static str,
            Vec<(&'static str, MethodSetting)>,
            StageSpec,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing differs",
                vec![("*/*", setting(100.0, 200)), ("~1a/POST", setting(5.0, 10))],
                spec(vec![("/a", 5.0, 10)]),
                vec![],
            ),
            (
                "a new override, and the stage-wide one set",
                vec![],
                spec(vec![("/a/b", 5.0, 10)]),
                vec![
                    "replace /*/*/throttling/rateLimit 100",
                    "replace /*/*/throttling/burstLimit 200",
                    "replace /~1a~1b/POST/throttling/rateLimit 5",
                    "replace /~1a~1b/POST/throttling/burstLimit 10",
                ],
            ),
            (
                "an override no Webhook asks for goes, in either spelling",
                vec![
                    ("*/*", setting(100.0, 200)),
                    ("~1a/POST", setting(5.0, 10)),
                    ("/b/c/POST", setting(1.0, 1)),
                ],
                spec(vec![]),
                vec!["remove /~1a/POST", "remove /~1b~1c/POST"],
            ),
            (
                "MiniStack's decoded key is the same setting",
                vec![("*/*", setting(100.0, 200)), ("/a/POST", setting(5.0, 10))],
                spec(vec![("/a", 5.0, 10)]),
                vec![],
            ),
        ];
        for (name, current, spec, expected) in cases {
            assert_eq!(ops(current, &spec), expected, "{name}");
        }
    }

    #[test]
    fn stage_setting_keys_escape_slashes() {
        assert_eq!(
            settings_key("/payments/stripe", "POST"),
            "~1payments~1stripe/POST"
        );
    }

    #[test]
    fn authorization_per_mode() {
        assert_eq!(authorization(&RouteAuth::None), ("NONE", None, false));
        assert_eq!(authorization(&RouteAuth::ApiKey), ("NONE", None, true));
        assert_eq!(
            authorization(&RouteAuth::Lambda {
                authorizer_id: "a1".into()
            }),
            ("CUSTOM", Some("a1"), false)
        );
    }
}
