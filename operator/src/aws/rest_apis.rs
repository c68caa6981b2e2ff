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
use std::future::Future;

use super::error::gone_is_fine;
use super::templates::{
    CONTENT_TYPES, RouteTemplate, TemplateError, request_template, sqs_integration_uri,
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
}

/// Where the alias record of a custom domain points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTarget {
    /// Regional domain name, e.g. `d-abc.execute-api.eu-west-1.amazonaws.com`.
    pub regional_domain_name: String,
    /// Its hosted zone id, for the Route 53 alias.
    pub regional_zone_id: String,
}

/// A gateway's REST API.
pub trait RestApis: Send + Sync {
    /// The API (found by `known_id`, else by owner tag, else created), with a `GET /`
    /// health route so it can be deployed before any webhook exists.
    fn ensure_api(
        &self,
        spec: &ApiSpec,
        known_id: Option<&str>,
    ) -> impl Future<Output = Result<ApiRef, AwsError>> + Send;
    /// A webhook's route; returns the path's resource id and whether anything
    /// changed (changes need a deployment to go live).
    fn ensure_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
    ) -> impl Future<Output = Result<(String, bool), AwsError>> + Send;
    /// Deploys the API's current state to `stage` (creating the stage).
    fn deploy(
        &self,
        api_id: &str,
        stage: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Throttling and access logs of an existing stage; true if anything changed.
    fn ensure_stage(
        &self,
        api_id: &str,
        spec: &StageSpec,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// The custom domain and its `(none)` base path mapping to the API's stage.
    fn ensure_domain(
        &self,
        spec: &DomainSpec,
    ) -> impl Future<Output = Result<DomainTarget, AwsError>> + Send;
    /// An API key with this value, enabled, in a usage plan for the API's stage.
    fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// A Cognito or Lambda authorizer, found by name; returns its id.
    fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Sets the API's resource policy (`None`: no policy); true if it changed.
    /// A changed policy takes effect with the next deployment.
    fn ensure_policy(
        &self,
        api_id: &str,
        policy: Option<&Value>,
    ) -> impl Future<Output = Result<bool, AwsError>> + Send;
    /// Deletes our API key of this name and the usage plans it is in (both outlive
    /// the API otherwise: they are account-level objects).
    fn delete_api_key(
        &self,
        name: &str,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes a route's resource (and so its method); already gone is fine.
    fn delete_route(
        &self,
        api: &ApiRef,
        path: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes the custom domain if it is ours.
    fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// Deletes the API if it is ours.
    fn delete_api(
        &self,
        api_id: &str,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// [`RestApis`] on the API Gateway SDK.
#[derive(Debug, Clone)]
pub struct ApiGatewayRestApis {
    apigateway: aws_sdk_apigateway::Client,
    caller: Caller,
}

impl ApiGatewayRestApis {
    /// Uses `apigateway` for calls and `caller` for limits, retries and counts.
    pub fn new(apigateway: aws_sdk_apigateway::Client, caller: Caller) -> Self {
        Self { apigateway, caller }
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
                // Another webhook's reconcile created this shared segment (e.g.
                // `/payments` of `/payments/a` and `/payments/b`) since we listed.
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

/// Method responses of a route, and the integration responses selecting them by the
/// SQS status: success → 200; a refused message (4xx) → 400; SQS failing (5xx) →
/// 503, so the provider retries.
const ROUTE_RESPONSES: [(&str, Option<&str>, &str); 3] = [
    ("200", None, r#"{"status":"accepted"}"#),
    (
        "400",
        Some("4\\d{2}"),
        r#"{"status":"rejected","message":"the request could not be queued"}"#,
    ),
    (
        "503",
        Some("5\\d{2}"),
        r#"{"status":"unavailable","message":"try again later"}"#,
    ),
];

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

fn replace(path: String, value: String) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

impl RestApis for ApiGatewayRestApis {
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
        self.ensure_health_route(&api).await?;
        Ok(api)
    }

    async fn ensure_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
    ) -> Result<(String, bool), AwsError> {
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
                            .send()
                    })
                    .await?;
                changed = true;
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
                if !ops.is_empty() {
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
                }
            }
        }

        let templates: HashMap<String, String> = CONTENT_TYPES
            .iter()
            .map(|t| ((*t).to_owned(), template.clone()))
            .collect();
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
        for (status, pattern, body) in ROUTE_RESPONSES {
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
        Ok((resource_id, changed))
    }

    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError> {
        let deployment = self
            .caller
            .call(APIGW, "CreateDeployment", || {
                self.apigateway
                    .create_deployment()
                    .rest_api_id(api_id)
                    .stage_name(stage)
                    .description("hookline")
                    .send()
            })
            .await?;
        deployment
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateDeployment", "no deployment id"))
    }

    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
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
        let settings = stage.method_settings.unwrap_or_default();
        let mut ops = Vec::new();
        let mut throttle = |key: String, rate: f64, burst: i32| {
            // AWS keys route settings as `~1a~1b/POST`; MiniStack decodes them to
            // `/a/b/POST`. Either spelling is the same setting.
            let current = settings
                .get(&key)
                .or_else(|| settings.get(&key.replace("~1", "/")));
            if current.is_none_or(|s| (s.throttling_rate_limit - rate).abs() > f64::EPSILON) {
                ops.push(replace(
                    format!("/{key}/throttling/rateLimit"),
                    rate.to_string(),
                ));
            }
            if current.is_none_or(|s| s.throttling_burst_limit != burst) {
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
        if let Some((destination, format)) = &spec.access_log {
            let current = stage.access_log_settings.as_ref();
            if current.and_then(|c| c.destination_arn.as_deref()) != Some(destination.as_str()) {
                ops.push(replace(
                    "/accessLogSettings/destinationArn".into(),
                    destination.clone(),
                ));
            }
            if current.and_then(|c| c.format.as_deref()) != Some(format.as_str()) {
                ops.push(replace("/accessLogSettings/format".into(), format.clone()));
            }
        }
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
                let tags = domain.tags.clone().unwrap_or_default();
                spec.owner
                    .check(&tags, APIGW, "GetDomainName", "custom domain", &spec.domain)?;
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
        Ok(DomainTarget {
            regional_domain_name: regional_domain_name.ok_or_else(|| {
                AwsError::unexpected(APIGW, "GetDomainName", "no regional domain name")
            })?,
            regional_zone_id: regional_zone_id.ok_or_else(|| {
                AwsError::unexpected(APIGW, "GetDomainName", "no regional zone id")
            })?,
        })
    }

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

    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError> {
        let existing = self
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
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.name.as_deref() == Some(spec.name()));
        let (kind, providers, uri, identity, ttl) = match spec {
            AuthorizerSpec::Cognito { user_pool_arns, .. } => (
                AuthorizerType::CognitoUserPools,
                user_pool_arns.clone(),
                None,
                "method.request.header.Authorization".to_owned(),
                None,
            ),
            AuthorizerSpec::Lambda {
                function_arn,
                request,
                identity_source,
                ttl_seconds,
                ..
            } => (
                if *request {
                    AuthorizerType::Request
                } else {
                    AuthorizerType::Token
                },
                Vec::new(),
                Some(lambda_authorizer_uri(function_arn)),
                identity_source.clone(),
                Some(*ttl_seconds),
            ),
        };
        if let Some(current) = existing {
            let id = current
                .id
                .clone()
                .ok_or_else(|| AwsError::unexpected(APIGW, "GetAuthorizers", "no authorizer id"))?;
            let same = current.r#type.as_ref() == Some(&kind)
                && current.provider_arns.clone().unwrap_or_default() == providers
                && current.authorizer_uri.clone().filter(|u| !u.is_empty()) == uri
                && current.identity_source.as_deref() == Some(identity.as_str())
                && (ttl.is_none() || current.authorizer_result_ttl_in_seconds == ttl);
            if same {
                return Ok(id);
            }
            // Its type cannot be patched; replace it (routes are re-pointed by the caller).
            self.caller
                .call(APIGW, "DeleteAuthorizer", || {
                    self.apigateway
                        .delete_authorizer()
                        .rest_api_id(api_id)
                        .authorizer_id(&id)
                        .send()
                })
                .await?;
        }
        let created = self
            .caller
            .call(APIGW, "CreateAuthorizer", || {
                self.apigateway
                    .create_authorizer()
                    .rest_api_id(api_id)
                    .name(spec.name())
                    .r#type(kind.clone())
                    .set_provider_arns((!providers.is_empty()).then(|| providers.clone()))
                    .set_authorizer_uri(uri.clone())
                    .identity_source(&identity)
                    .set_authorizer_result_ttl_in_seconds(ttl)
                    .send()
            })
            .await?;
        created
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateAuthorizer", "no authorizer id"))
    }

    async fn ensure_policy(&self, api_id: &str, policy: Option<&Value>) -> Result<bool, AwsError> {
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
        if current.as_ref() == policy {
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

    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError> {
        let resources = match self.resources(&api.id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        let Some(resource_id) = resources.get(path) else {
            return Ok(());
        };
        gone_is_fine(
            self.caller
                .call(APIGW, "DeleteResource", || {
                    self.apigateway
                        .delete_resource()
                        .rest_api_id(&api.id)
                        .resource_id(resource_id)
                        .send()
                })
                .await,
        )
    }

    async fn delete_domain(&self, domain: &str, owner: &Owner) -> Result<(), AwsError> {
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
        owner.check(
            &existing.tags.unwrap_or_default(),
            APIGW,
            "GetDomainName",
            "custom domain",
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

    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
