//! [`RestApis`]: a gateway's API Gateway REST API (v1), its stage, one route per
//! webhook (resource path, `POST` method, AWS integration to `sqs:SendMessage`), the
//! custom domain, API keys and authorizers.
//!
//! Every `ensure_*` reads first and writes only what differs. A route costs one read
//! when nothing changed (`GetMethod`, which embeds the integration and its
//! responses): the API's resource tree is listed once per process and then kept
//! up to date by the process's own changes.
//!
//! # Layout
//! One file per concern, each holding its trait, its spec types and its part of
//! [`ApiGatewayRestApis`]; the decisions they make are pure functions apart from any
//! SDK call, table-tested where they live:
//! - [`routes`]: [`Routes`], the API, its routes and its resource policy.
//! - [`stages`]: [`Stages`], deployments and the stage's settings.
//! - [`domains`]: [`Domains`], the custom domain and its base path mapping.
//! - [`keys`]: [`ApiKeys`], API keys and their usage plans.
//! - [`authorizers`]: [`Authorizers`], Cognito and Lambda authorizers.
//! - [`checks`]: [`Checks`], one read each: is a route, the stage or the domain
//!   still what the last full pass left (the steady-state resync).
//! - [`diff`] (pure): what a method, an integration, the stage, an authorizer or a
//!   route's deletion needs to become its spec; whether a domain is ours.
//! - [`policy`] (pure): the source-IP resource policy and its comparison with what AWS
//!   stores.
//! - [`markers`] (pure): the change and deployment markers that tell whether a route
//!   is live.
//!
//! This file holds the SDK struct and what the concerns share: the mutation slot per
//! API, the resource listing (and the paths remembered from it) and `GetMethod`.

pub mod authorizers;
pub mod checks;
pub mod diff;
pub mod domains;
pub mod keys;
pub mod markers;
pub mod policy;
pub mod routes;
pub mod stages;

pub use authorizers::{AuthorizerSpec, Authorizers, DeletedAuthorizer};
pub use checks::Checks;
pub use diff::{
    AuthorizerChange, AuthorizerShape, Deletion, IntegrationSpec, ResourceTree, authorizer_change,
    domain_owned, integration_matches, integration_response_matches, method_patch_operations,
    route_deletion, scope_ops, stage_patch_operations,
};
pub use domains::{DomainSpec, DomainTarget, Domains};
pub use keys::ApiKeys;
pub use markers::deployment_contains;
pub use policy::{normalise_policy, policies_match, source_ip_policy};
pub use routes::{ApiRef, ApiSpec, RouteAuth, RouteSpec, Routes};
pub use stages::{StageSpec, Stages};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use super::{AwsError, Caller, Service};

const APIGW: Service = Service::ApiGateway;

/// A method as API Gateway's REST paths (and IAM resource ARNs) name it, for the log.
fn method_path(api_id: &str, resource_id: &str, method: &str) -> String {
    format!("/restapis/{api_id}/resources/{resource_id}/methods/{method}")
}

/// A gateway's REST API: every concern, as the SDK implementation provides them together
/// (they share one mutation slot per API). Functions that need one concern take that trait.
pub trait RestApis: Routes + Stages + Domains + ApiKeys + Authorizers + Checks {}

impl<T: Routes + Stages + Domains + ApiKeys + Authorizers + Checks + ?Sized> RestApis for T {}

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
    /// Each REST API's resources by path, as last listed and then changed by this
    /// process (see [`ApiGatewayRestApis::known_resources`]).
    resource_paths: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
}

impl ApiGatewayRestApis {
    /// Uses `apigateway` for calls and `caller` for limits, retries and counts.
    pub fn new(apigateway: aws_sdk_apigateway::Client, caller: Caller) -> Self {
        Self {
            apigateway,
            caller,
            mutations: Arc::default(),
            deployment_markers: Arc::default(),
            resource_paths: Arc::default(),
        }
    }

    /// The API's resources by path: remembered from this process's last listing
    /// (`GetResources`, 5 per 2 s per account, the tightest quota a new route
    /// meets) and its own `CreateResource`s since, else listed now; the bool says
    /// whether they were remembered. Only the holder of the API's mutation slot
    /// reads or changes them, so within the process they stay true; what another
    /// tool changes shows as NotFound (a remembered id deleted) or Conflict (a path
    /// created), after which the caller lists again ([`Self::forget_resources`]).
    async fn known_resources(
        &self,
        api_id: &str,
    ) -> Result<(HashMap<String, String>, bool), AwsError> {
        let known = self
            .resource_paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_id)
            .cloned();
        match known {
            Some(known) => Ok((known, true)),
            None => Ok((self.resources(api_id).await?, false)),
        }
    }

    /// Remembers the API's resources by path.
    fn remember_resources(&self, api_id: &str, by_path: HashMap<String, String>) {
        self.resource_paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(api_id.to_owned(), by_path);
    }

    /// Forgets the API's resources: the next route lists them again.
    fn forget_resources(&self, api_id: &str) {
        self.resource_paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(api_id);
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

    /// All resources of the API by path.
    async fn resources(&self, api_id: &str) -> Result<HashMap<String, String>, AwsError> {
        let mut by_path = HashMap::new();
        let mut position: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .caller
                .call(
                    APIGW,
                    "GetResources",
                    &format!("/restapis/{api_id}/resources"),
                    || {
                        self.apigateway
                            .get_resources()
                            .rest_api_id(api_id)
                            .set_position(position.clone())
                            .limit(500)
                            .send()
                    },
                )
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
    /// method (`embed=methods`); and the ids of those whose `GET` is a handshake of
    /// ours (the `POST`'s marker says so, see [`markers`]).
    async fn resource_tree(
        &self,
        api_id: &str,
    ) -> Result<(ResourceTree, HashSet<String>), AwsError> {
        let mut tree = ResourceTree::new();
        let mut handshakes = HashSet::new();
        let mut position: Option<String> = None;
        for _ in 0..100 {
            let page = self
                .caller
                .call(
                    APIGW,
                    "GetResources",
                    &format!("/restapis/{api_id}/resources"),
                    || {
                        self.apigateway
                            .get_resources()
                            .rest_api_id(api_id)
                            .embed("methods")
                            .set_position(position.clone())
                            .limit(500)
                            .send()
                    },
                )
                .await?;
            for resource in page.items.unwrap_or_default() {
                let has_methods = resource
                    .resource_methods
                    .as_ref()
                    .is_some_and(|m| !m.is_empty());
                let methods = resource.resource_methods.as_ref();
                let handshake = methods.is_some_and(|m| {
                    m.contains_key("GET")
                        && m.get("POST")
                            .is_some_and(|p| markers::has_handshake(p.operation_name.as_deref()))
                });
                if let (Some(path), Some(id)) = (resource.path, resource.id) {
                    if handshake {
                        handshakes.insert(id.clone());
                    }
                    tree.insert(path, (id, has_methods));
                }
            }
            position = page.position;
            if position.is_none() {
                break;
            }
        }
        Ok((tree, handshakes))
    }

    async fn get_method(
        &self,
        api_id: &str,
        resource_id: &str,
        method: &str,
    ) -> Result<Option<aws_sdk_apigateway::operation::get_method::GetMethodOutput>, AwsError> {
        match self
            .caller
            .call(
                APIGW,
                "GetMethod",
                &method_path(api_id, resource_id, method),
                || {
                    self.apigateway
                        .get_method()
                        .rest_api_id(api_id)
                        .resource_id(resource_id)
                        .http_method(method)
                        .send()
                },
            )
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
