//! The Hookline operator: reconciles `WebhookGateway` and `Webhook` resources into
//! API Gateway, SQS, ACM, Route 53 and IAM objects.
//!
//! # Layout
//! - [`aws`]: one narrow trait per AWS service, SDK implementations, error mapping,
//!   rate limits.
//! - [`names`]: AWS names from Kubernetes names (pure).
//! - [`desired`]: what AWS and the cluster should hold for a Webhook (pure).
//! - [`quotas`]: which Webhooks fit AWS's per-API and per-account quotas (pure).
//! - [`conditions`]: merging status conditions (pure).
//! - [`controller`]: the reconcilers.
//! - [`leader`]: leader election on a Lease.
//! - [`scaler`]: backlog autoscaling of worker Deployments.
//! - [`uninstall`]: the chart's pre-delete check for objects only the operator can release.

#![forbid(unsafe_code)]

pub mod aws;
pub mod conditions;
pub mod controller;
pub mod desired;
pub mod leader;
pub mod names;
pub mod quotas;
pub mod scaler;
pub mod uninstall;
