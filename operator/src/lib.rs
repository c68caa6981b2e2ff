//! The Hookline operator: reconciles `WebhookGateway` and `Webhook` resources into
//! API Gateway, SQS, ACM, Route 53 and IAM objects.
//!
//! # Layout
//! - [`aws`]: one narrow trait per AWS service, SDK implementations, error mapping,
//!   rate limits.

#![forbid(unsafe_code)]

pub mod aws;
