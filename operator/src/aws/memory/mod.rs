//! An in-memory AWS: every domain trait of [`crate::aws`] on state kept in this
//! process, for scenario tests of the reconcile decisions (see docs/testing.md).
//!
//! It keeps state the way AWS does, as far as the reconcilers can tell: ids, owner
//! tags and the [`AwsError::NotOwned`] refusal of an object with our name that is not
//! ours, idempotent `ensure_*`, "already gone" on delete, a route change that is live
//! only once a deployment made after it is on the stage, a custom domain that needs an
//! issued certificate, a certificate that becomes ISSUED once its validation CNAME is
//! in a hosted zone, an authorizer that cannot be deleted while a method uses it.
//! Each trait method makes the AWS operations its SDK implementation makes (by the
//! same names, e.g. `CreateQueue`, `PutIntegration`), and each operation is counted
//! and can be told to fail with a given [`AwsError`] ([`MemoryAws::fail`]).
//!
//! It is no emulator: no request reaches it over HTTP, no mapping template is
//! rendered, no message is queued (queue depths are set by the test). What it cannot
//! show (IAM, the data plane, AWS's own validation of documents) is what the bench
//! tests on MiniStack and LocalStack are for.
//!
//! # Layout
//! - this file: [`MemoryAws`], its [`State`], call counts and injected failures.
//! - [`queues`]: the `Queues` trait.
//! - [`rest_apis`]: `Routes`, `Stages`, `Domains`, `ApiKeys`, `Authorizers`.
//! - [`certificates`]: the `Certificates` trait (issued through [`dns`]'s records).
//! - [`dns`]: the `Dns` trait.
//! - [`iam`]: the `Roles` trait.
//! - [`others`]: [`crate::aws::LogGroups`], [`crate::aws::Functions`],
//!   [`crate::aws::Account`].

pub mod certificates;
pub mod dns;
pub mod iam;
pub mod others;
pub mod queues;
pub mod rest_apis;

pub use certificates::MemoryCertificate;
pub use dns::MemoryZone;
pub use iam::MemoryRole;
pub use others::{MemoryFunction, MemoryLogGroup};
pub use queues::MemoryQueue;
pub use rest_apis::{
    MemoryApiKey, MemoryAuthorizer, MemoryDeployment, MemoryDomain, MemoryMethod, MemoryResource,
    MemoryRestApi, MemoryStage, MemoryUsagePlan,
};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{AwsError, OWNER_TAG, Service};
use crate::controller::context::AwsServices;

/// The account the in-memory objects live in.
pub const ACCOUNT: &str = "123456789012";

/// Everything the in-memory AWS holds. Public so that a test can read any of it
/// ([`MemoryAws::read`]) and change it behind the operator's back, as a person with
/// the console would ([`MemoryAws::edit`]).
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Region of every object.
    pub region: String,
    /// SQS queues by name.
    pub queues: BTreeMap<String, MemoryQueue>,
    /// REST APIs by id.
    pub rest_apis: BTreeMap<String, MemoryRestApi>,
    /// Custom domain names by hostname.
    pub domains: BTreeMap<String, MemoryDomain>,
    /// API keys by id.
    pub api_keys: BTreeMap<String, MemoryApiKey>,
    /// Usage plans by id.
    pub usage_plans: BTreeMap<String, MemoryUsagePlan>,
    /// ACM certificates by ARN.
    pub certificates: BTreeMap<String, MemoryCertificate>,
    /// ACM issues a pending certificate once its validation record is in a zone;
    /// false holds every certificate at PENDING_VALIDATION.
    pub auto_validate: bool,
    /// Route 53 hosted zones by id.
    pub zones: BTreeMap<String, MemoryZone>,
    /// IAM roles by name.
    pub roles: BTreeMap<String, MemoryRole>,
    /// CloudWatch Logs groups by name.
    pub log_groups: BTreeMap<String, MemoryLogGroup>,
    /// Lambda functions by ARN (only those a test created exist).
    pub functions: BTreeMap<String, MemoryFunction>,
    /// API Gateway's account setting `cloudwatchRoleArn`.
    pub cloudwatch_role_arn: Option<String>,
    /// Calls per (service, operation).
    pub calls: BTreeMap<(Service, &'static str), u64>,
    /// REST APIs whose resources the operator has listed and remembers (not AWS's
    /// state: the SDK implementation's, so that the calls counted here are its).
    pub resources_listed: std::collections::BTreeSet<String>,
    failures: Vec<Failure>,
    sequence: u64,
}

/// An operation told to fail.
#[derive(Debug, Clone)]
struct Failure {
    operation: &'static str,
    error: AwsError,
    /// How many more calls fail; `None`: every call until healed.
    remaining: Option<u32>,
}

impl State {
    /// Counts one call of `operation`, and fails it if it was told to.
    pub(crate) fn call(
        &mut self,
        service: Service,
        operation: &'static str,
    ) -> Result<(), AwsError> {
        *self.calls.entry((service, operation)).or_default() += 1;
        let Some(index) = self.failures.iter().position(|f| f.operation == operation) else {
            return Ok(());
        };
        let failure = &mut self.failures[index];
        let error = failure.error.clone();
        match &mut failure.remaining {
            Some(1) => {
                self.failures.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Err(error)
    }

    /// A new number, increasing: ids, and the order of route changes and deployments.
    pub(crate) fn next(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// A new id of AWS's shape: ten lowercase letters and digits.
    pub(crate) fn new_id(&mut self) -> String {
        format!("m{:09x}", self.next())
    }
}

/// The owner recorded in `tags`, if any.
pub(crate) fn owner_of(tags: &BTreeMap<String, String>) -> Option<&str> {
    tags.get(OWNER_TAG).map(String::as_str)
}

/// A NotFound answer, as the SDK implementations classify AWS's.
pub(crate) fn not_found(
    service: Service,
    operation: &'static str,
    what: impl std::fmt::Display,
) -> AwsError {
    AwsError::NotFound {
        service,
        operation,
        message: format!("{what} does not exist"),
    }
}

/// The in-memory AWS. Cheap to clone (the state is shared); [`MemoryAws::services`]
/// hands it to a reconcile context as every trait at once.
#[derive(Debug, Clone)]
pub struct MemoryAws {
    state: Arc<Mutex<State>>,
}

impl MemoryAws {
    /// An empty account in `region`, with API Gateway's CloudWatch Logs role set and
    /// certificates validated through DNS.
    pub fn new(region: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                region: region.to_owned(),
                auto_validate: true,
                cloudwatch_role_arn: Some(format!(
                    "arn:aws:iam::{ACCOUNT}:role/apigateway-cloudwatch-logs"
                )),
                ..State::default()
            })),
        }
    }

    /// Every trait on this one state, for `Context::with_services`.
    pub fn services(&self) -> AwsServices {
        let this = Arc::new(self.clone());
        AwsServices {
            queues: this.clone(),
            apis: this.clone(),
            certificates: this.clone(),
            dns: this.clone(),
            roles: this.clone(),
            logs: this.clone(),
            functions: this.clone(),
            account: this,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state.
    pub fn read<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.lock())
    }

    /// Changes the state directly, as someone outside the operator would (no call is
    /// counted): drift, foreign objects, a queue's depth.
    pub fn edit<T>(&self, edit: impl FnOnce(&mut State) -> T) -> T {
        edit(&mut self.lock())
    }

    /// Makes every call of `operation` (e.g. `"CreateQueue"`) fail with `error`
    /// until [`MemoryAws::heal`].
    pub fn fail(&self, operation: &'static str, error: AwsError) {
        self.lock().failures.push(Failure {
            operation,
            error,
            remaining: None,
        });
    }

    /// Makes the next `times` calls of `operation` fail with `error`.
    pub fn fail_times(&self, operation: &'static str, error: AwsError, times: u32) {
        if times > 0 {
            self.lock().failures.push(Failure {
                operation,
                error,
                remaining: Some(times),
            });
        }
    }

    /// `operation` succeeds again.
    pub fn heal(&self, operation: &str) {
        self.lock().failures.retain(|f| f.operation != operation);
    }

    /// Calls of `operation` so far (any service).
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock()
            .calls
            .iter()
            .filter(|((_, op), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every call so far, by (service, operation).
    pub fn all_calls(&self) -> BTreeMap<(Service, &'static str), u64> {
        self.lock().calls.clone()
    }

    /// Calls so far that change something in AWS (by the operation's verb).
    pub fn writes(&self) -> BTreeMap<(Service, &'static str), u64> {
        self.lock()
            .calls
            .iter()
            .filter(|((_, op), _)| is_write(op))
            .map(|(k, n)| (*k, *n))
            .collect()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.lock().calls.clear();
    }
}

/// Whether an AWS operation changes something (reads are Get, List, Describe).
pub fn is_write(operation: &str) -> bool {
    !["Get", "List", "Describe"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}
