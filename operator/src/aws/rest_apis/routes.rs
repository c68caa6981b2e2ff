//! [`Routes`]: the REST API itself, one route per webhook (resource path, `POST`
//! method, AWS integration to `sqs:SendMessage`, its responses; and a `MOCK` `GET`
//! answering the provider's verification when the route has a handshake), and the
//! API's resource policy. What each differs from its spec is decided in [`super::diff`]
//! and [`super::policy`].

use aws_sdk_apigateway::operation::get_method::GetMethodOutput;
use aws_sdk_apigateway::types::{
    EndpointConfiguration, EndpointType, Integration, IntegrationResponse, IntegrationType,
    MethodResponse,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

use super::diff::{
    Deletion, HandshakeChange, IntegrationSpec, SQS_CONTENT_TYPE, authorization,
    authorization_scopes, handshake_change, integration_matches, integration_response_matches,
    method_patch_operations, replace, route_deletion,
};
use super::markers::{has_handshake, new_marker, read_marker, route_marker_text};
use super::policy::{decode_policy, policies_match};
use super::{APIGW, ApiGatewayRestApis, method_path};
use crate::aws::error::gone_is_fine;
use crate::aws::templates::{
    HANDSHAKE_HEADERS, HANDSHAKE_REQUEST_TEMPLATE, Handshake, ROUTE_RESPONSES, RouteTemplate,
    TemplateError, handshake_template, request_template, request_templates, sqs_integration_uri,
};
use crate::aws::{AwsError, OWNER_TAG, Owner};

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
    /// The `GET` verification handshake the route answers itself, if any.
    pub handshake: Option<Handshake>,
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
    /// Deletes a route: its resource, or only its `POST` (and its handshake `GET`)
    /// when other resources hang below it (see [`route_deletion`]), then the parent
    /// segments left empty; already gone is fine.
    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError>;
    /// Deletes the API if it is ours.
    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError>;
}

impl ApiGatewayRestApis {
    async fn get_api(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_apigateway::operation::get_rest_api::GetRestApiOutput>, AwsError>
    {
        match self
            .caller
            .call(APIGW, "GetRestApi", &format!("/restapis/{id}"), || {
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
                .call(APIGW, "GetRestApis", "/restapis", || {
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

    /// Creates the missing segments of `path`; returns the leaf's id, and whether
    /// this call created the leaf (then it has no method yet).
    async fn ensure_path(
        &self,
        api: &ApiRef,
        path: &str,
        existing: &mut HashMap<String, String>,
    ) -> Result<(String, bool), AwsError> {
        let mut parent = api.root_resource_id.clone();
        let mut current = String::new();
        let mut created_leaf = false;
        for segment in path.trim_matches('/').split('/') {
            current = format!("{current}/{segment}");
            created_leaf = false;
            if let Some(id) = existing.get(&current) {
                parent = id.clone();
                continue;
            }
            let created = self
                .caller
                .call(
                    APIGW,
                    "CreateResource",
                    &format!("/restapis/{}/resources {current}", api.id),
                    || {
                        self.apigateway
                            .create_resource()
                            .rest_api_id(&api.id)
                            .parent_id(&parent)
                            .path_part(segment)
                            .send()
                    },
                )
                .await;
            let id = match created {
                Ok(created) => {
                    created_leaf = true;
                    created.id
                }
                // The segment exists although it was not listed (or remembered):
                // another tool (or another operator replica) created it since. A
                // concurrent modification is not this: it is Throttled and retried
                // by the caller.
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
        Ok((parent, created_leaf))
    }

    /// Records that the route on `resource_id` changed (see [`super::markers`]).
    async fn mark_changed(
        &self,
        api_id: &str,
        resource_id: &str,
        marker: &str,
    ) -> Result<(), AwsError> {
        self.caller
            .call(
                APIGW,
                "UpdateMethod",
                &method_path(api_id, resource_id, "POST"),
                || {
                    self.apigateway
                        .update_method()
                        .rest_api_id(api_id)
                        .resource_id(resource_id)
                        .http_method("POST")
                        .patch_operations(replace("/operationName".into(), marker.to_owned()))
                        .send()
                },
            )
            .await?;
        Ok(())
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
            .call(APIGW, "PutMethod", &method_path(id, root, "GET"), || {
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
            .call(
                APIGW,
                "PutIntegration",
                &method_path(id, root, "GET"),
                || {
                    self.apigateway
                        .put_integration()
                        .rest_api_id(id)
                        .resource_id(root)
                        .http_method("GET")
                        .r#type(IntegrationType::Mock)
                        .request_templates("application/json", r#"{"statusCode": 200}"#)
                        .send()
                },
            )
            .await?;
        self.caller
            .call(
                APIGW,
                "PutMethodResponse",
                &method_path(id, root, "GET"),
                || {
                    self.apigateway
                        .put_method_response()
                        .rest_api_id(id)
                        .resource_id(root)
                        .http_method("GET")
                        .status_code("200")
                        .send()
                },
            )
            .await?;
        self.caller
            .call(
                APIGW,
                "PutIntegrationResponse",
                &method_path(id, root, "GET"),
                || {
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
                },
            )
            .await?;
        Ok(())
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
                    .call(APIGW, "CreateRestApi", &spec.name, || {
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
        let marker = route_marker_text(new_marker(), spec.handshake.is_some());
        let integration = integration_spec(spec)?;
        let (resources, remembered) = self.known_resources(&api.id).await?;
        match self
            .put_route(api, spec, &integration, &marker, resources)
            .await
        {
            // A remembered resource that is gone (deleted by hand, or by another
            // tool): list the API again and start over, once.
            Err(e) if remembered && e.is_not_found() => {
                tracing::debug!(api = %api.id, path = %spec.path, %e, "remembered resources are stale; listing again");
                let resources = self.resources(&api.id).await?;
                self.put_route(api, spec, &integration, &marker, resources)
                    .await
            }
            done => done,
        }
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
            .call(
                APIGW,
                "UpdateRestApi",
                &format!("/restapis/{api_id} policy"),
                || {
                    self.apigateway
                        .update_rest_api()
                        .rest_api_id(api_id)
                        .patch_operations(replace("/policy".into(), value.clone()))
                        .send()
                },
            )
            .await?;
        Ok(true)
    }

    async fn delete_route(&self, api: &ApiRef, path: &str) -> Result<(), AwsError> {
        let _mutation = self.mutating(&api.id).await;
        // Resources go (DeleteResource takes the children along); the next route
        // lists them again.
        self.forget_resources(&api.id);
        let (tree, handshakes) = match self.resource_tree(&api.id).await {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        for step in route_deletion(&tree, path) {
            match step {
                Deletion::Method(resource_id) => {
                    // The handshake first: the POST's marker is what says the GET is ours.
                    if handshakes.contains(&resource_id) {
                        self.delete_method(&api.id, &resource_id, "GET").await?;
                    }
                    self.delete_method(&api.id, &resource_id, "POST").await?;
                }
                Deletion::Resource(resource_id) => gone_is_fine(
                    self.caller
                        .call(
                            APIGW,
                            "DeleteResource",
                            &format!("/restapis/{}/resources/{resource_id}", api.id),
                            || {
                                self.apigateway
                                    .delete_resource()
                                    .rest_api_id(&api.id)
                                    .resource_id(&resource_id)
                                    .send()
                            },
                        )
                        .await,
                )?,
            }
        }
        Ok(())
    }

    async fn delete_api(&self, api_id: &str, owner: &Owner) -> Result<(), AwsError> {
        let _mutation = self.mutating(api_id).await;
        self.forget_resources(api_id);
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
                .call(
                    APIGW,
                    "DeleteRestApi",
                    &format!("/restapis/{api_id}"),
                    || self.apigateway.delete_rest_api().rest_api_id(api_id).send(),
                )
                .await,
        )
    }
}

/// The `POST` method of a route's resource.
struct MethodAt<'a> {
    api_id: &'a str,
    resource_id: &'a str,
    /// The route's path, for the log (AWS names the method by ids only).
    path: &'a str,
}

impl MethodAt<'_> {
    /// The method as the log names it.
    fn object(&self) -> String {
        format!(
            "{} ({})",
            method_path(self.api_id, self.resource_id, "POST"),
            self.path
        )
    }
}

/// The integration a route should have, from its spec.
pub(super) fn integration_spec(spec: &RouteSpec) -> Result<IntegrationSpec, AwsError> {
    let template = request_template(&spec.template).map_err(template_error)?;
    let uri = sqs_integration_uri(&spec.queue_arn).ok_or_else(|| {
        AwsError::unexpected(
            APIGW,
            "PutIntegration",
            format!("not an SQS queue ARN: {}", spec.queue_arn),
        )
    })?;
    Ok(IntegrationSpec {
        uri,
        role_arn: spec.role_arn.clone(),
        templates: request_templates(&template),
    })
}

/// The steps of [`Routes::ensure_route`], each writing only what differs and
/// answering whether it wrote.
impl ApiGatewayRestApis {
    /// The route on `resources` (the API's, by path): its path, method, integration
    /// and responses. What `resources` comes to is remembered, and forgotten on any
    /// error, since it may then be stale.
    async fn put_route(
        &self,
        api: &ApiRef,
        spec: &RouteSpec,
        integration: &IntegrationSpec,
        marker: &str,
        mut resources: HashMap<String, String>,
    ) -> Result<(String, bool), AwsError> {
        let before = resources.len();
        let path = self.ensure_path(api, &spec.path, &mut resources).await;
        let created = resources.len() != before;
        let result = match path {
            Ok((resource_id, created_leaf)) => {
                self.remember_resources(&api.id, resources);
                let at = MethodAt {
                    api_id: &api.id,
                    resource_id: &resource_id,
                    path: &spec.path,
                };
                self.put_method(&at, spec, integration, marker, created_leaf)
                    .await
                    .map(|changed| (resource_id.clone(), created || changed))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.forget_resources(&api.id);
        }
        result
    }

    /// The `POST` method on the route's resource and everything it holds; true if
    /// anything changed. A resource this call created has no method yet, so
    /// asking (`GetMethod`, NotFound) is skipped.
    async fn put_method(
        &self,
        at: &MethodAt<'_>,
        spec: &RouteSpec,
        integration: &IntegrationSpec,
        marker: &str,
        new_resource: bool,
    ) -> Result<bool, AwsError> {
        let method = if new_resource {
            None
        } else {
            self.get_method(at.api_id, at.resource_id, "POST").await?
        };
        let marked = self
            .ensure_method(at, method.as_ref(), &spec.auth, marker)
            .await?;
        let current = method.as_ref().and_then(|m| m.method_integration.as_ref());
        let integrated = self.ensure_integration(at, current, integration).await?;
        let method_responses = method
            .as_ref()
            .and_then(|m| m.method_responses.clone())
            .unwrap_or_default();
        // PutIntegration replaces the integration and drops its responses.
        let integration_responses = match current {
            Some(current) if !integrated => current.integration_responses.clone(),
            _ => None,
        }
        .unwrap_or_default();
        let responded = self
            .ensure_responses(at, &method_responses, &integration_responses)
            .await?;
        let handshaken = self
            .ensure_handshake(at, spec.handshake.as_ref(), method.as_ref(), new_resource)
            .await?;
        // A marker that says otherwise than the route is (an operator stopped between
        // the GET and the marker) is rewritten too.
        let flagged = method
            .as_ref()
            .is_some_and(|m| has_handshake(m.operation_name.as_deref()));
        let changed =
            marked || integrated || responded || handshaken || flagged != spec.handshake.is_some();
        if changed && !marked {
            self.mark_changed(at.api_id, at.resource_id, marker).await?;
        }
        Ok(changed)
    }

    /// The `POST` method with the route's authorization: created, or patched; either
    /// write carries `marker` (true: it was written).
    async fn ensure_method(
        &self,
        at: &MethodAt<'_>,
        current: Option<&GetMethodOutput>,
        auth: &RouteAuth,
        marker: &str,
    ) -> Result<bool, AwsError> {
        let MethodAt {
            api_id,
            resource_id,
            ..
        } = *at;
        let Some(current) = current else {
            let (authorization_type, authorizer_id, api_key_required) = authorization(auth);
            let scopes = authorization_scopes(auth);
            self.caller
                .call(APIGW, "PutMethod", &at.object(), || {
                    self.apigateway
                        .put_method()
                        .rest_api_id(api_id)
                        .resource_id(resource_id)
                        .http_method("POST")
                        .authorization_type(authorization_type)
                        .set_authorizer_id(authorizer_id.map(str::to_owned))
                        .api_key_required(api_key_required)
                        .set_authorization_scopes((!scopes.is_empty()).then(|| scopes.clone()))
                        .operation_name(marker)
                        .send()
                })
                .await?;
            return Ok(true);
        };
        let mut ops = method_patch_operations(current, auth);
        // A route from before markers existed gets one (and so one deployment).
        if ops.is_empty() && read_marker(current.operation_name.as_deref()).is_some() {
            return Ok(false);
        }
        ops.push(replace("/operationName".into(), marker.to_owned()));
        self.caller
            .call(APIGW, "UpdateMethod", &at.object(), || {
                self.apigateway
                    .update_method()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method("POST")
                    .set_patch_operations(Some(ops.clone()))
                    .send()
            })
            .await?;
        Ok(true)
    }

    /// The SQS integration, put whole when any part of it differs.
    async fn ensure_integration(
        &self,
        at: &MethodAt<'_>,
        current: Option<&Integration>,
        desired: &IntegrationSpec,
    ) -> Result<bool, AwsError> {
        if integration_matches(current, desired) {
            return Ok(false);
        }
        let (content_type, form) = SQS_CONTENT_TYPE;
        self.caller
            .call(APIGW, "PutIntegration", &at.object(), || {
                self.apigateway
                    .put_integration()
                    .rest_api_id(at.api_id)
                    .resource_id(at.resource_id)
                    .http_method("POST")
                    .r#type(IntegrationType::Aws)
                    .integration_http_method("POST")
                    .uri(&desired.uri)
                    .credentials(&desired.role_arn)
                    .passthrough_behavior("NEVER")
                    .request_parameters(content_type, form)
                    .set_request_templates(Some(desired.templates.clone()))
                    .send()
            })
            .await?;
        Ok(true)
    }

    /// `DeleteMethod`; already gone is fine.
    async fn delete_method(
        &self,
        api_id: &str,
        resource_id: &str,
        http_method: &str,
    ) -> Result<(), AwsError> {
        gone_is_fine(
            self.caller
                .call(
                    APIGW,
                    "DeleteMethod",
                    &method_path(api_id, resource_id, http_method),
                    || {
                        self.apigateway
                            .delete_method()
                            .rest_api_id(api_id)
                            .resource_id(resource_id)
                            .http_method(http_method)
                            .send()
                    },
                )
                .await,
        )
    }

    /// The handshake `GET` on the route's resource: made or fixed when the route has
    /// one, deleted when it has none and the `POST`'s marker (`post`) says the `GET`
    /// is ours; true if anything changed. A route without a handshake, and none
    /// before, makes no call.
    async fn ensure_handshake(
        &self,
        at: &MethodAt<'_>,
        desired: Option<&Handshake>,
        post: Option<&GetMethodOutput>,
        new_resource: bool,
    ) -> Result<bool, AwsError> {
        let Some(desired) = desired else {
            if !post.is_some_and(|m| has_handshake(m.operation_name.as_deref())) {
                return Ok(false);
            }
            self.delete_method(at.api_id, at.resource_id, "GET").await?;
            return Ok(true);
        };
        let template = handshake_template(desired).map_err(template_error)?;
        let current = if new_resource {
            None
        } else {
            self.get_method(at.api_id, at.resource_id, "GET").await?
        };
        match handshake_change(current.as_ref(), &template) {
            HandshakeChange::None => return Ok(false),
            HandshakeChange::Response => {}
            HandshakeChange::Rebuild => {
                if current.is_some() {
                    self.delete_method(at.api_id, at.resource_id, "GET").await?;
                }
                self.put_handshake_method(at).await?;
            }
        }
        let object = format!(
            "{} handshake",
            method_path(at.api_id, at.resource_id, "GET")
        );
        self.caller
            .call(APIGW, "PutIntegrationResponse", &object, || {
                self.apigateway
                    .put_integration_response()
                    .rest_api_id(at.api_id)
                    .resource_id(at.resource_id)
                    .http_method("GET")
                    .status_code("200")
                    .response_templates("application/json", template.clone())
                    .set_response_parameters(Some(
                        HANDSHAKE_HEADERS
                            .iter()
                            .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
                            .collect(),
                    ))
                    .send()
            })
            .await?;
        Ok(true)
    }

    /// The handshake's open `GET` with its `MOCK` integration and 200 method response
    /// (the integration response is the caller's).
    async fn put_handshake_method(&self, at: &MethodAt<'_>) -> Result<(), AwsError> {
        let (api_id, resource_id) = (at.api_id, at.resource_id);
        let object = format!("{} handshake", method_path(api_id, resource_id, "GET"));
        self.caller
            .call(APIGW, "PutMethod", &object, || {
                self.apigateway
                    .put_method()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method("GET")
                    .authorization_type("NONE")
                    .send()
            })
            .await?;
        self.caller
            .call(APIGW, "PutIntegration", &object, || {
                self.apigateway
                    .put_integration()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method("GET")
                    .r#type(IntegrationType::Mock)
                    .request_templates("application/json", HANDSHAKE_REQUEST_TEMPLATE)
                    .send()
            })
            .await?;
        self.caller
            .call(APIGW, "PutMethodResponse", &object, || {
                self.apigateway
                    .put_method_response()
                    .rest_api_id(api_id)
                    .resource_id(resource_id)
                    .http_method("GET")
                    .status_code("200")
                    .set_response_parameters(Some(
                        HANDSHAKE_HEADERS
                            .iter()
                            .map(|(h, _)| ((*h).to_owned(), false))
                            .collect(),
                    ))
                    .send()
            })
            .await?;
        Ok(())
    }

    /// The method and integration responses of [`ROUTE_RESPONSES`].
    async fn ensure_responses(
        &self,
        at: &MethodAt<'_>,
        method_responses: &HashMap<String, MethodResponse>,
        integration_responses: &HashMap<String, IntegrationResponse>,
    ) -> Result<bool, AwsError> {
        let mut changed = false;
        for response in &ROUTE_RESPONSES {
            let status = response.status;
            if !method_responses.contains_key(status) {
                self.caller
                    .call(
                        APIGW,
                        "PutMethodResponse",
                        &format!("{} response {status}", at.object()),
                        || {
                            self.apigateway
                                .put_method_response()
                                .rest_api_id(at.api_id)
                                .resource_id(at.resource_id)
                                .http_method("POST")
                                .status_code(status)
                                .send()
                        },
                    )
                    .await?;
                changed = true;
            }
            if integration_response_matches(integration_responses.get(status), response) {
                continue;
            }
            self.caller
                .call(
                    APIGW,
                    "PutIntegrationResponse",
                    &format!("{} integration response {status}", at.object()),
                    || {
                        self.apigateway
                            .put_integration_response()
                            .rest_api_id(at.api_id)
                            .resource_id(at.resource_id)
                            .http_method("POST")
                            .status_code(status)
                            .set_selection_pattern(response.selection_pattern.map(str::to_owned))
                            .response_templates("application/json", response.template)
                            .send()
                    },
                )
                .await?;
            changed = true;
        }
        Ok(changed)
    }
}
