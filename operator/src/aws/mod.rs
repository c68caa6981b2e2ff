//! The operator's view of AWS: one narrow trait per service in domain terms, each
//! with one implementation on the official SDK. Reconcile code takes the traits.
//!
//! # Layout
//! - [`error`]: `SdkError` → [`AwsError`], the only place that looks at SDK errors.
//! - [`actions`]: the IAM actions every call needs (checked against the chart policy).
//! - [`account`]: API Gateway's account settings (the CloudWatch Logs role).
//! - [`limits`]: token buckets per service and operation, retries, call counters.
//! - [`queues`]: [`Queues`] on SQS.
//! - [`certificates`]: [`Certificates`] on ACM.
//! - [`dns`]: [`Dns`] on Route 53.
//! - [`roles`]: [`Roles`] on IAM.
//! - [`logs`]: [`LogGroups`] on CloudWatch Logs (stage access logs).
//! - [`functions`]: [`Functions`] on Lambda (API Gateway's permission to invoke a
//!   Lambda authorizer).
//! - [`rest_apis`]: [`RestApis`] on API Gateway; [`templates`]: the request mapping
//!   template (pure).
//!
//! Ownership: every object Hookline creates carries [`OWNER_TAG`] with the uid of the
//! Kubernetes resource it belongs to. An object with our name but without that tag
//! (or with another uid) is reported as [`AwsError::NotOwned`] and never changed or
//! deleted.

pub mod account;
pub mod actions;
pub mod certificates;
pub mod dns;
pub mod error;
pub mod functions;
pub mod limits;
pub mod logs;
pub mod memory;
pub mod queues;
pub mod rest_apis;
pub mod roles;
pub mod templates;

pub use account::{Account, ApiGatewayAccount};
pub use certificates::{AcmCertificates, Certificate, CertificateSpec, Certificates};
pub use dns::{Dns, Record, Route53Dns};
pub use error::{AwsError, Service};
pub use functions::{Functions, LambdaFunctions};
pub use limits::{CallCounts, Caller, RateLimits, RetryPolicy};
pub use logs::{CloudWatchLogGroups, LogGroups};
pub use queues::{Backlog, QueuePair, QueuePairSpec, QueueRef, Queues, SqsQueues};
pub use rest_apis::{
    ApiGatewayRestApis, ApiKeys, ApiRef, ApiSpec, AuthorizerSpec, Authorizers, Checks,
    DeletedAuthorizer, DomainSpec, DomainTarget, Domains, RestApis, RouteAuth, RouteSpec, Routes,
    StageSpec, Stages,
};
pub use roles::{IamRoles, NamespaceRoleSpec, RoleSpec, Roles};

/// Every AWS domain trait, for code that calls an SDK implementation directly
/// (`use hookline_operator::aws::prelude::*`); reconciles hold them as `Arc<dyn …>`.
pub mod prelude {
    pub use super::{
        Account, ApiKeys, Authorizers, Certificates, Checks, Dns, Domains, Functions, LogGroups,
        Queues, Roles, Routes, Stages,
    };
}

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use std::collections::BTreeMap;

/// Tag key holding the owning Kubernetes resource's uid.
pub const OWNER_TAG: &str = "hookline.dev/owner";
/// Tag key naming the owning resource (`Webhook payments/stripe`), for humans.
pub const RESOURCE_TAG: &str = "hookline.dev/resource";

/// Who owns an AWS object: the Kubernetes resource's uid, and its name for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `metadata.uid` of the resource.
    pub uid: String,
    /// `Kind namespace/name` (or `Kind name` when cluster-scoped).
    pub resource: String,
}

impl Owner {
    /// The ownership tags, to merge into an object's tags.
    pub fn tags(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (OWNER_TAG.to_owned(), self.uid.clone()),
            (RESOURCE_TAG.to_owned(), self.resource.clone()),
        ])
    }

    /// Checks an existing object's tags: ours, or a Conflict naming the object.
    pub fn check<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
        service: Service,
        operation: &'static str,
        what: &str,
        name: &str,
    ) -> Result<(), AwsError> {
        let owner = tags
            .into_iter()
            .find(|(k, _)| k.as_str() == OWNER_TAG)
            .map(|(_, v)| v.as_str());
        match owner {
            Some(uid) if uid == self.uid => Ok(()),
            other => Err(AwsError::not_owned(service, operation, what, name, other)),
        }
    }
}

/// The SDK clients, built from one `aws_config` (region, credentials chain, endpoint
/// override), with the SDK's retries off: [`Caller`] retries, under the rate limits.
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// API Gateway (v1).
    pub apigateway: aws_sdk_apigateway::Client,
    /// ACM.
    pub acm: aws_sdk_acm::Client,
    /// Route 53.
    pub route53: aws_sdk_route53::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Lambda (authorizer permissions).
    pub lambda: aws_sdk_lambda::Client,
    /// Rate limits, retries and call counts shared by all of them.
    pub caller: Caller,
}

impl AwsClients {
    /// Clients for `config` under `limits` and `retry`.
    pub fn new(config: &SdkConfig, limits: &RateLimits, retry: RetryPolicy) -> Self {
        let config = config
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::new(&config),
            apigateway: aws_sdk_apigateway::Client::new(&config),
            acm: aws_sdk_acm::Client::new(&config),
            route53: aws_sdk_route53::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            caller: Caller::new(limits, retry),
        }
    }
}
