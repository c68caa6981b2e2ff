//! API Gateway in memory: REST APIs with their resources, `POST` methods and
//! integrations, the resource policy, deployments and the stage, custom domains,
//! API keys with usage plans, and authorizers ([`crate::aws::RestApis`]).
//!
//! A route change is live once a deployment made after it is on the stage: every
//! change and every deployment takes the next number of one sequence, as the SDK
//! implementation's markers order them.

use serde_json::Value;
use std::collections::BTreeMap;

use super::{MemoryAws, State, not_found, owner_of};
use crate::aws::rest_apis::{Deletion, ResourceTree, route_deletion};
use crate::aws::templates::{
    Handshake, ROUTE_RESPONSES, handshake_template, request_template, sqs_integration_uri,
};
use crate::aws::{
    ApiKeys, ApiRef, ApiSpec, AuthorizerSpec, Authorizers, AwsError, Checks, DeletedAuthorizer,
    DomainSpec, DomainTarget, Domains, Owner, RouteAuth, RouteSpec, Routes, Service, StageSpec,
    Stages,
};

const APIGW: Service = Service::ApiGateway;

/// API Gateway's hosted zone for regional endpoints (the alias target's zone).
pub const REGIONAL_ZONE_ID: &str = "Z2FDTNDATAQYW2";

/// One REST API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryRestApi {
    /// Name (not unique).
    pub name: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Id of `/`.
    pub root_resource_id: String,
    /// Whether `GET /` (the health route) exists.
    pub health_route: bool,
    /// Resources by path (`/` included).
    pub resources: BTreeMap<String, MemoryResource>,
    /// The resource policy.
    pub policy: Option<Value>,
    /// Deployments by id.
    pub deployments: BTreeMap<String, MemoryDeployment>,
    /// Stages by name.
    pub stages: BTreeMap<String, MemoryStage>,
    /// Authorizers by id.
    pub authorizers: BTreeMap<String, MemoryAuthorizer>,
}

/// A resource (one path) of a REST API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryResource {
    /// Resource id.
    pub id: String,
    /// Its `POST` method, if any.
    pub post: Option<MemoryMethod>,
    /// The handshake its `GET` method answers, if it has one.
    pub get: Option<Handshake>,
}

/// A `POST` method with its SQS integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMethod {
    /// Caller authentication.
    pub auth: RouteAuth,
    /// The integration: the route as last put (queue, role, template, auth).
    pub integration: Option<RouteSpec>,
    /// The rendered request template of the integration.
    pub template: String,
    /// When the method last changed, in the API's sequence of changes and deployments.
    pub changed: u64,
}

impl MemoryMethod {
    /// Whether the integration sends to `spec`'s queue as its role with `template`.
    fn integrates(&self, spec: &RouteSpec, template: &str) -> bool {
        self.template == template
            && self
                .integration
                .as_ref()
                .is_some_and(|i| i.queue_arn == spec.queue_arn && i.role_arn == spec.role_arn)
    }
}

/// A deployment: a snapshot of what the API served when it was made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryDeployment {
    /// When it was made, in the sequence of changes and deployments.
    pub made: u64,
    /// The routes it serves by path.
    pub routes: BTreeMap<String, RouteSpec>,
    /// The resource policy it enforces.
    pub policy: Option<Value>,
}

/// A stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryStage {
    /// The deployment it serves.
    pub deployment_id: String,
    /// Stage-wide throttle (rate, burst), once set.
    pub throttle: Option<(f64, i32)>,
    /// Per-route throttles by resource path: (rate, burst).
    pub route_throttles: BTreeMap<String, (f64, i32)>,
    /// Access-log destination and format.
    pub access_log: Option<(String, String)>,
}

/// An authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryAuthorizer {
    /// Its name (`name~<id>` once set aside by a replacement).
    pub name: String,
    /// What it is.
    pub spec: AuthorizerSpec,
}

/// A custom domain name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryDomain {
    /// Regional certificate ARN.
    pub certificate_arn: String,
    /// `d-<id>.execute-api.<region>.amazonaws.com`.
    pub regional_domain_name: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Base path mappings: base path (`(none)` for the root) → (API id, stage).
    pub mappings: BTreeMap<String, (String, String)>,
}

/// An API key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryApiKey {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
    /// Enabled.
    pub enabled: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A usage plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsagePlan {
    /// Name.
    pub name: String,
    /// (API id, stage) pairs it covers.
    pub stages: Vec<(String, String)>,
    /// API key ids in it.
    pub keys: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl MemoryRestApi {
    /// The deployment `stage` serves.
    pub fn live(&self, stage: &str) -> Option<&MemoryDeployment> {
        self.deployments.get(&self.stages.get(stage)?.deployment_id)
    }

    fn resource_by_id(&mut self, id: &str) -> Option<&mut MemoryResource> {
        self.resources.values_mut().find(|r| r.id == id)
    }

    fn referenced(&self, authorizer_id: &str) -> bool {
        self.resources.values().any(|r| {
            r.post.as_ref().is_some_and(|m| match &m.auth {
                RouteAuth::Cognito {
                    authorizer_id: a, ..
                }
                | RouteAuth::Lambda { authorizer_id: a } => a == authorizer_id,
                RouteAuth::None | RouteAuth::ApiKey => false,
            })
        })
    }
}

impl MemoryAws {
    /// The REST API `id`, if it exists.
    pub fn rest_api(&self, id: &str) -> Option<MemoryRestApi> {
        self.read(|s| s.rest_apis.get(id).cloned())
    }

    /// The routes `stage` of API `id` serves now, by path.
    pub fn live_routes(&self, id: &str, stage: &str) -> BTreeMap<String, RouteSpec> {
        self.read(|s| {
            s.rest_apis
                .get(id)
                .and_then(|api| api.live(stage))
                .map(|d| d.routes.clone())
                .unwrap_or_default()
        })
    }

    /// The custom domain `hostname`, if it exists.
    pub fn domain(&self, hostname: &str) -> Option<MemoryDomain> {
        self.read(|s| s.domains.get(hostname).cloned())
    }

    /// Creates an untagged custom domain for `hostname`, as someone else would.
    pub fn create_foreign_domain(&self, hostname: &str, certificate_arn: &str) -> MemoryDomain {
        self.edit(|s| {
            let domain = new_domain(s, certificate_arn, BTreeMap::new());
            s.domains.insert(hostname.to_owned(), domain.clone());
            domain
        })
    }
}

fn new_domain(
    state: &mut State,
    certificate_arn: &str,
    tags: BTreeMap<String, String>,
) -> MemoryDomain {
    let id = state.new_id();
    MemoryDomain {
        certificate_arn: certificate_arn.to_owned(),
        regional_domain_name: format!("d-{id}.execute-api.{}.amazonaws.com", state.region),
        tags,
        mappings: BTreeMap::new(),
    }
}

fn api_mut<'a>(
    state: &'a mut State,
    id: &str,
    operation: &'static str,
) -> Result<&'a mut MemoryRestApi, AwsError> {
    state
        .rest_apis
        .get_mut(id)
        .ok_or_else(|| not_found(APIGW, operation, format!("REST API {id}")))
}

/// The path of a route as API Gateway keeps it: `/a/b`.
fn clean(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

fn authorizer_exists(api: &MemoryRestApi, auth: &RouteAuth) -> bool {
    match auth {
        RouteAuth::Cognito { authorizer_id, .. } | RouteAuth::Lambda { authorizer_id } => {
            api.authorizers.contains_key(authorizer_id)
        }
        RouteAuth::None | RouteAuth::ApiKey => true,
    }
}

/// The resources of each segment of `path` that are missing; whether any was.
fn put_resources(state: &mut State, api: &mut MemoryRestApi, path: &str) -> Result<bool, AwsError> {
    let mut created = false;
    let mut current = String::new();
    for segment in path.trim_start_matches('/').split('/') {
        current = format!("{current}/{segment}");
        if !api.resources.contains_key(&current) {
            state.call(APIGW, "CreateResource")?;
            let id = state.new_id();
            api.resources.insert(
                current.clone(),
                MemoryResource {
                    id,
                    post: None,
                    get: None,
                },
            );
            created = true;
        }
    }
    Ok(created)
}

/// `ensure_route` on one API: the path's resources, the method, the integration and
/// its responses, each written only where it differs.
fn put_route(
    state: &mut State,
    api: &mut MemoryRestApi,
    spec: &RouteSpec,
    template: String,
) -> Result<(String, bool), AwsError> {
    let path = clean(&spec.path);
    // The SDK implementation asks for the method only on a resource it did not
    // just create.
    let new_resource = !api.resources.contains_key(&path);
    let mut changed = put_resources(state, api, &path)?;
    if !new_resource {
        state.call(APIGW, "GetMethod")?;
    }
    if !authorizer_exists(api, &spec.auth) {
        return Err(AwsError::Invalid {
            service: APIGW,
            operation: "PutMethod",
            code: "BadRequestException".to_owned(),
            message: format!("Invalid authorizer ID specified for {path}"),
        });
    }
    let existing = api.resources.get(&path).and_then(|r| r.post.clone());
    let mut method = match existing {
        None => {
            state.call(APIGW, "PutMethod")?;
            for _ in ROUTE_RESPONSES {
                state.call(APIGW, "PutMethodResponse")?;
            }
            changed = true;
            MemoryMethod {
                auth: spec.auth.clone(),
                integration: None,
                template: String::new(),
                changed: 0,
            }
        }
        Some(method) if method.auth != spec.auth => {
            state.call(APIGW, "UpdateMethod")?;
            changed = true;
            MemoryMethod {
                auth: spec.auth.clone(),
                ..method
            }
        }
        Some(method) => method,
    };
    // What the calls so far made is kept even if a later one fails, as in AWS.
    if let Some(resource) = api.resources.get_mut(&path) {
        resource.post = Some(method.clone());
    }
    if !method.integrates(spec, &template) {
        state.call(APIGW, "PutIntegration")?;
        // PutIntegration replaces the integration and drops its responses.
        for _ in ROUTE_RESPONSES {
            state.call(APIGW, "PutIntegrationResponse")?;
        }
        method.template = template;
        changed = true;
    }
    method.integration = Some(spec.clone());
    let resource = api
        .resources
        .get_mut(&path)
        .ok_or_else(|| AwsError::unexpected(APIGW, "GetResources", format!("no {path}")))?;
    // The handshake GET, as the SDK implementation makes it: a GetMethod unless the
    // resource is new, then the method whole or only its integration response; and
    // without a handshake, a DeleteMethod only where the POST's marker names one.
    match (&spec.handshake, &resource.get) {
        (None, None) => {}
        (None, Some(_)) => {
            state.call(APIGW, "DeleteMethod")?;
            resource.get = None;
            changed = true;
        }
        (Some(desired), current) => {
            if !new_resource {
                state.call(APIGW, "GetMethod")?;
            }
            if current.as_ref() != Some(desired) {
                if current.is_none() {
                    for operation in ["PutMethod", "PutIntegration", "PutMethodResponse"] {
                        state.call(APIGW, operation)?;
                    }
                }
                state.call(APIGW, "PutIntegrationResponse")?;
                resource.get = Some(desired.clone());
                changed = true;
            }
        }
    }
    if changed {
        method.changed = state.next();
    }
    resource.post = Some(method);
    Ok((resource.id.clone(), changed))
}

#[async_trait::async_trait]
impl Routes for MemoryAws {
    async fn ensure_api(&self, spec: &ApiSpec, known_id: Option<&str>) -> Result<ApiRef, AwsError> {
        let mut state = self.lock();
        let mut found = None;
        if let Some(id) = known_id {
            state.call(APIGW, "GetRestApi")?;
            if let Some(api) = state.rest_apis.get(id) {
                spec.owner
                    .check(&api.tags, APIGW, "GetRestApi", "REST API", id)?;
                found = Some(id.to_owned());
            }
        }
        if found.is_none() {
            state.call(APIGW, "GetRestApis")?;
            found = state
                .rest_apis
                .iter()
                .find(|(_, api)| owner_of(&api.tags) == Some(spec.owner.uid.as_str()))
                .map(|(id, _)| id.clone());
        }
        let id = match found {
            Some(id) => id,
            None => {
                state.call(APIGW, "CreateRestApi")?;
                let id = state.new_id();
                let root = state.new_id();
                let mut tags = spec.tags.clone();
                tags.extend(spec.owner.tags());
                let api = MemoryRestApi {
                    name: spec.name.clone(),
                    tags,
                    root_resource_id: root.clone(),
                    resources: BTreeMap::from([(
                        "/".to_owned(),
                        MemoryResource {
                            id: root,
                            post: None,
                            get: None,
                        },
                    )]),
                    ..MemoryRestApi::default()
                };
                state.rest_apis.insert(id.clone(), api);
                id
            }
        };
        state.call(APIGW, "GetMethod")?;
        let api = api_mut(&mut state, &id, "GetMethod")?;
        let root_resource_id = api.root_resource_id.clone();
        if !api.health_route {
            api.health_route = true;
            for operation in [
                "PutMethod",
                "PutIntegration",
                "PutMethodResponse",
                "PutIntegrationResponse",
            ] {
                state.call(APIGW, operation)?;
            }
        }
        Ok(ApiRef {
            id,
            root_resource_id,
        })
    }

    async fn ensure_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
    ) -> Result<(String, bool), AwsError> {
        let template = request_template(&spec.template).map_err(|e| AwsError::Invalid {
            service: APIGW,
            operation: "PutIntegration",
            code: "HooklineTemplate".to_owned(),
            message: e.to_string(),
        })?;
        if let Some(handshake) = &spec.handshake {
            handshake_template(handshake).map_err(|e| AwsError::Invalid {
                service: APIGW,
                operation: "PutIntegrationResponse",
                code: "HooklineTemplate".to_owned(),
                message: e.to_string(),
            })?;
        }
        if sqs_integration_uri(&spec.queue_arn).is_none() {
            return Err(AwsError::unexpected(
                APIGW,
                "PutIntegration",
                format!("not an SQS queue ARN: {}", spec.queue_arn),
            ));
        }
        let mut state = self.lock();
        // The SDK implementation lists an API's resources once and remembers them.
        if state.resources_listed.insert(api.id.clone()) {
            state.call(APIGW, "GetResources")?;
        }
        // Worked on out of the map (the sequence and the counts are the state's), and
        // put back whatever happens.
        let mut rest_api = state
            .rest_apis
            .remove(&api.id)
            .ok_or_else(|| not_found(APIGW, "GetResources", format!("REST API {}", api.id)))?;
        let result = put_route(&mut state, &mut rest_api, spec, template);
        state.rest_apis.insert(api.id.clone(), rest_api);
        result
    }

    async fn ensure_policy(&self, api_id: &str, policy: Option<&Value>) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetRestApi")?;
        if api_mut(&mut state, api_id, "GetRestApi")?.policy.as_ref() == policy {
            return Ok(false);
        }
        state.call(APIGW, "UpdateRestApi")?;
        api_mut(&mut state, api_id, "UpdateRestApi")?.policy = policy.cloned();
        Ok(true)
    }

    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.resources_listed.remove(&api.id);
        state.call(APIGW, "GetResources")?;
        let Some(rest_api) = state.rest_apis.get(&api.id) else {
            return Ok(());
        };
        let tree: ResourceTree = rest_api
            .resources
            .iter()
            .map(|(p, r)| {
                (
                    p.clone(),
                    (
                        r.id.clone(),
                        r.post.is_some() || r.get.is_some() || (p == "/" && rest_api.health_route),
                    ),
                )
            })
            .collect();
        for step in route_deletion(&tree, path) {
            match step {
                Deletion::Method(id) => {
                    let handshake = api_mut(&mut state, &api.id, "DeleteMethod")?
                        .resource_by_id(&id)
                        .is_some_and(|r| r.get.is_some());
                    if handshake {
                        state.call(APIGW, "DeleteMethod")?;
                    }
                    state.call(APIGW, "DeleteMethod")?;
                    if let Some(resource) =
                        api_mut(&mut state, &api.id, "DeleteMethod")?.resource_by_id(&id)
                    {
                        resource.post = None;
                        resource.get = None;
                    }
                }
                Deletion::Resource(id) => {
                    state.call(APIGW, "DeleteResource")?;
                    let rest_api = api_mut(&mut state, &api.id, "DeleteResource")?;
                    let Some(gone) = rest_api
                        .resources
                        .iter()
                        .find(|(_, r)| r.id == id)
                        .map(|(p, _)| p.clone())
                    else {
                        continue;
                    };
                    // AWS deletes a resource's children with it.
                    let below = format!("{gone}/");
                    rest_api
                        .resources
                        .retain(|p, _| *p != gone && !p.starts_with(&below));
                }
            }
        }
        Ok(())
    }

    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.resources_listed.remove(api_id);
        state.call(APIGW, "GetRestApi")?;
        let Some(api) = state.rest_apis.get(api_id) else {
            return Ok(());
        };
        owner.check(&api.tags, APIGW, "GetRestApi", "REST API", api_id)?;
        state.call(APIGW, "DeleteRestApi")?;
        state.rest_apis.remove(api_id);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Stages for MemoryAws {
    async fn route_is_live(
        &self,
        api_id: &str,
        resource_id: &str,
        stage: &str,
    ) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetMethod")?;
        let api = api_mut(&mut state, api_id, "GetMethod")?;
        let Some(changed) = api
            .resource_by_id(resource_id)
            .and_then(|r| r.post.as_ref())
            .map(|m| m.changed)
        else {
            return Ok(false);
        };
        state.call(APIGW, "GetStage")?;
        let api = api_mut(&mut state, api_id, "GetStage")?;
        let deployed = api.live(stage).map(|d| d.made);
        if deployed.is_some() {
            state.call(APIGW, "GetDeployment")?;
        }
        Ok(deployed.is_some_and(|made| made > changed))
    }

    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "CreateDeployment")?;
        let made = state.next();
        let id = state.new_id();
        let api = api_mut(&mut state, api_id, "CreateDeployment")?;
        let routes = api
            .resources
            .iter()
            .filter_map(|(path, r)| Some((path.clone(), r.post.as_ref()?.integration.clone()?)))
            .collect();
        api.deployments.insert(
            id.clone(),
            MemoryDeployment {
                made,
                routes,
                policy: api.policy.clone(),
            },
        );
        api.stages
            .entry(stage.to_owned())
            .or_default()
            .deployment_id = id.clone();
        Ok(id)
    }

    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetStage")?;
        let api = api_mut(&mut state, api_id, "GetStage")?;
        let Some(stage) = api.stages.get(&spec.name) else {
            return Err(not_found(APIGW, "GetStage", format!("stage {}", spec.name)));
        };
        // The stage is the gateway's: route overrides it no longer lists go.
        let want = wanted_stage(stage, spec);
        if &want == stage {
            return Ok(false);
        }
        state.call(APIGW, "UpdateStage")?;
        api_mut(&mut state, api_id, "UpdateStage")?
            .stages
            .insert(spec.name.clone(), want);
        Ok(true)
    }
}

/// A domain read back is the gateway's by its owner tag, or (without one) by the
/// regional domain name the gateway recorded, as `rest_apis::domain_owned` decides.
fn domain_owned(
    owner: &Owner,
    domain: &MemoryDomain,
    created: Option<&str>,
    hostname: &str,
) -> Result<(), AwsError> {
    if owner_of(&domain.tags).is_none() && created == Some(domain.regional_domain_name.as_str()) {
        return Ok(());
    }
    owner.check(
        &domain.tags,
        APIGW,
        "GetDomainName",
        "custom domain",
        hostname,
    )
}

#[async_trait::async_trait]
impl Domains for MemoryAws {
    async fn ensure_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetDomainName")?;
        let regional_domain_name = match state.domains.get(&spec.domain).cloned() {
            Some(domain) => {
                domain_owned(&spec.owner, &domain, spec.created.as_deref(), &spec.domain)?;
                if domain.certificate_arn != spec.certificate_arn {
                    state.call(APIGW, "UpdateDomainName")?;
                    if let Some(d) = state.domains.get_mut(&spec.domain) {
                        d.certificate_arn.clone_from(&spec.certificate_arn);
                    }
                }
                domain.regional_domain_name
            }
            None => {
                state.call(APIGW, "CreateDomainName")?;
                // AWS refuses a certificate that is not issued (or does not exist).
                let usable = state
                    .certificates
                    .get(&spec.certificate_arn)
                    .is_some_and(|c| {
                        c.status == super::certificates::ISSUED && c.domain == spec.domain
                    });
                if !usable {
                    return Err(AwsError::Invalid {
                        service: APIGW,
                        operation: "CreateDomainName",
                        code: "BadRequestException".to_owned(),
                        message: format!(
                            "Certificate {} is not valid for {}",
                            spec.certificate_arn, spec.domain
                        ),
                    });
                }
                let domain = new_domain(&mut state, &spec.certificate_arn, spec.owner.tags());
                let name = domain.regional_domain_name.clone();
                state.domains.insert(spec.domain.clone(), domain);
                name
            }
        };
        Ok(DomainTarget {
            regional_domain_name,
            regional_zone_id: REGIONAL_ZONE_ID.to_owned(),
        })
    }

    async fn ensure_base_path_mapping(&self, spec: &DomainSpec) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetBasePathMappings")?;
        let domain = state
            .domains
            .get(&spec.domain)
            .ok_or_else(|| not_found(APIGW, "GetBasePathMappings", &spec.domain))?;
        let want = (spec.api_id.clone(), spec.stage.clone());
        match domain.mappings.get("(none)") {
            Some(have) if *have == want => Ok(()),
            Some((api, stage)) => Err(AwsError::Conflict {
                service: APIGW,
                operation: "GetBasePathMappings",
                message: format!(
                    "{} already maps its root to API {api} stage {stage}; left untouched",
                    spec.domain
                ),
            }),
            None => {
                state.call(APIGW, "CreateBasePathMapping")?;
                if !state.rest_apis.contains_key(&spec.api_id) {
                    return Err(not_found(APIGW, "CreateBasePathMapping", &spec.api_id));
                }
                if let Some(domain) = state.domains.get_mut(&spec.domain) {
                    domain.mappings.insert("(none)".to_owned(), want);
                }
                Ok(())
            }
        }
    }

    async fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
        created: Option<&str>,
    ) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetDomainName")?;
        let Some(existing) = state.domains.get(domain) else {
            return Ok(());
        };
        domain_owned(owner, existing, created, domain)?;
        state.call(APIGW, "DeleteDomainName")?;
        state.domains.remove(domain);
        Ok(())
    }
}

#[async_trait::async_trait]
impl ApiKeys for MemoryAws {
    async fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<String, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetApiKeys")?;
        let ours = state
            .api_keys
            .iter()
            .find(|(_, k)| k.name == name && owner_of(&k.tags) == Some(owner.uid.as_str()))
            .map(|(id, k)| (id.clone(), k.clone()));
        let key_id = match ours {
            Some((id, key)) if key.value == value && key.enabled => id,
            stale => {
                // A key's value cannot change: a rotated Secret means a new key.
                if let Some((old, _)) = stale {
                    state.call(APIGW, "DeleteApiKey")?;
                    state.api_keys.remove(&old);
                }
                state.call(APIGW, "CreateApiKey")?;
                let id = state.new_id();
                state.api_keys.insert(
                    id.clone(),
                    MemoryApiKey {
                        name: name.to_owned(),
                        value: value.to_owned(),
                        enabled: true,
                        tags: owner.tags(),
                    },
                );
                id
            }
        };
        state.call(APIGW, "GetUsagePlans")?;
        let in_plan = state.usage_plans.values().any(|p| {
            p.keys.contains(&key_id) && p.stages.iter().any(|(a, s)| a == api_id && s == stage)
        });
        if !in_plan {
            state.call(APIGW, "CreateUsagePlan")?;
            let plan = state.new_id();
            state.call(APIGW, "CreateUsagePlanKey")?;
            state.usage_plans.insert(
                plan,
                MemoryUsagePlan {
                    name: name.to_owned(),
                    stages: vec![(api_id.to_owned(), stage.to_owned())],
                    keys: vec![key_id.clone()],
                    tags: owner.tags(),
                },
            );
        }
        Ok(key_id)
    }

    async fn delete_api_key(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetApiKeys")?;
        let keys: Vec<String> = state
            .api_keys
            .iter()
            .filter(|(_, k)| k.name == name && owner_of(&k.tags) == Some(owner.uid.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for key in keys {
            state.call(APIGW, "GetUsagePlans")?;
            let plans: Vec<(String, bool)> = state
                .usage_plans
                .iter()
                .filter(|(_, p)| {
                    p.keys.contains(&key) && owner_of(&p.tags) == Some(owner.uid.as_str())
                })
                .map(|(id, p)| (id.clone(), !p.stages.is_empty()))
                .collect();
            for (plan, attached) in plans {
                // A plan still attached to a stage cannot be deleted: detach it first.
                if attached {
                    state.call(APIGW, "UpdateUsagePlan")?;
                }
                state.call(APIGW, "DeleteUsagePlan")?;
                state.usage_plans.remove(&plan);
            }
            state.call(APIGW, "DeleteApiKey")?;
            state.api_keys.remove(&key);
        }
        Ok(())
    }
}

/// Whether going from `current` to `desired` needs a new authorizer: API Gateway
/// patches neither the type nor the user pools.
fn needs_replacement(current: &AuthorizerSpec, desired: &AuthorizerSpec) -> bool {
    match (current, desired) {
        (
            AuthorizerSpec::Cognito {
                user_pool_arns: a, ..
            },
            AuthorizerSpec::Cognito {
                user_pool_arns: b, ..
            },
        ) => {
            let (mut a, mut b) = (a.clone(), b.clone());
            a.sort();
            b.sort();
            a != b
        }
        (AuthorizerSpec::Lambda { request: a, .. }, AuthorizerSpec::Lambda { request: b, .. }) => {
            a != b
        }
        _ => true,
    }
}

fn name_of(spec: &AuthorizerSpec) -> &str {
    match spec {
        AuthorizerSpec::Cognito { name, .. } | AuthorizerSpec::Lambda { name, .. } => name,
    }
}

#[async_trait::async_trait]
impl Authorizers for MemoryAws {
    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError> {
        let name = name_of(spec);
        let mut state = self.lock();
        state.call(APIGW, "GetAuthorizers")?;
        let existing = api_mut(&mut state, api_id, "GetAuthorizers")?
            .authorizers
            .iter()
            .find(|(_, a)| a.name == name)
            .map(|(id, a)| (id.clone(), a.clone()));
        if let Some((id, current)) = existing {
            if !needs_replacement(&current.spec, spec) {
                if current.spec != *spec {
                    state.call(APIGW, "UpdateAuthorizer")?;
                    if let Some(a) = api_mut(&mut state, api_id, "UpdateAuthorizer")?
                        .authorizers
                        .get_mut(&id)
                    {
                        a.spec = spec.clone();
                    }
                }
                return Ok(id);
            }
            // A method still points at it: it steps aside under another name.
            state.call(APIGW, "UpdateAuthorizer")?;
            if let Some(a) = api_mut(&mut state, api_id, "UpdateAuthorizer")?
                .authorizers
                .get_mut(&id)
            {
                a.name = format!("{name}~{id}");
            }
        }
        state.call(APIGW, "CreateAuthorizer")?;
        let id = state.new_id();
        api_mut(&mut state, api_id, "CreateAuthorizer")?
            .authorizers
            .insert(
                id.clone(),
                MemoryAuthorizer {
                    name: name.to_owned(),
                    spec: spec.clone(),
                },
            );
        Ok(id)
    }

    async fn delete_authorizers(
        &self,
        api_id: &str,
        name: &str,
        keep: Option<&str>,
    ) -> Result<Vec<DeletedAuthorizer>, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetAuthorizers")?;
        let Some(api) = state.rest_apis.get(api_id) else {
            return Ok(Vec::new());
        };
        let candidates: Vec<(String, MemoryAuthorizer, bool)> = api
            .authorizers
            .iter()
            .filter(|(id, a)| {
                (a.name == name || a.name.starts_with(&format!("{name}~")))
                    && keep != Some(id.as_str())
            })
            .map(|(id, a)| (id.clone(), a.clone(), api.referenced(id)))
            .collect();
        let mut deleted = Vec::new();
        for (id, authorizer, referenced) in candidates {
            state.call(APIGW, "DeleteAuthorizer")?;
            if referenced {
                if keep.is_some() {
                    continue;
                }
                return Err(AwsError::Conflict {
                    service: APIGW,
                    operation: "DeleteAuthorizer",
                    message: format!(
                        "Cannot delete authorizer '{}', is referenced in a method",
                        authorizer.name
                    ),
                });
            }
            api_mut(&mut state, api_id, "DeleteAuthorizer")?
                .authorizers
                .remove(&id);
            deleted.push(DeletedAuthorizer {
                id,
                function_arn: match authorizer.spec {
                    AuthorizerSpec::Lambda { function_arn, .. } => Some(function_arn),
                    AuthorizerSpec::Cognito { .. } => None,
                },
            });
        }
        Ok(deleted)
    }
}

/// The stage `spec` asks for, from the stage as it is (what `ensure_stage` would write).
fn wanted_stage(stage: &MemoryStage, spec: &StageSpec) -> MemoryStage {
    let mut want = stage.clone();
    want.throttle = Some((spec.rate_limit, spec.burst_limit));
    want.route_throttles = spec
        .route_throttling
        .iter()
        .map(|(path, rate, burst)| (path.clone(), (*rate, *burst)))
        .collect();
    if let Some(access_log) = &spec.access_log {
        want.access_log = Some(access_log.clone());
    }
    want
}

#[async_trait::async_trait]
impl Checks for MemoryAws {
    async fn route_matches(
        &self,
        api_id: &str,
        resource_id: &str,
        spec: &RouteSpec,
    ) -> Result<bool, AwsError> {
        let Ok(template) = request_template(&spec.template) else {
            return Ok(false);
        };
        let mut state = self.lock();
        state.call(APIGW, "GetMethod")?;
        let Some(api) = state.rest_apis.get_mut(api_id) else {
            return Ok(false);
        };
        let Some(resource) = api.resource_by_id(resource_id) else {
            return Ok(false);
        };
        let Some(method) = resource.post.as_ref() else {
            return Ok(false);
        };
        if !(method.auth == spec.auth && method.integrates(spec, &template))
            || resource.get.is_some() != spec.handshake.is_some()
        {
            return Ok(false);
        }
        let get = resource.get.clone();
        if spec.handshake.is_some() {
            state.call(APIGW, "GetMethod")?;
        }
        Ok(get == spec.handshake)
    }

    async fn stage_matches(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetStage")?;
        let Some(api) = state.rest_apis.get(api_id) else {
            return Ok(false);
        };
        Ok(api.stages.get(&spec.name).is_some_and(|stage| {
            api.deployments.contains_key(&stage.deployment_id)
                && &wanted_stage(stage, spec) == stage
        }))
    }

    async fn domain_matches(&self, spec: &DomainSpec) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetDomainName")?;
        let Some(domain) = state.domains.get(&spec.domain) else {
            return Ok(false);
        };
        Ok(
            domain_owned(&spec.owner, domain, spec.created.as_deref(), &spec.domain).is_ok()
                && domain.certificate_arn == spec.certificate_arn
                && spec.created.as_deref() == Some(domain.regional_domain_name.as_str()),
        )
    }
}
