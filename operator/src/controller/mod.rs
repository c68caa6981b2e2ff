//! The reconcilers: `WebhookGateway` and `Webhook` into AWS and the cluster.
//!
//! Each reconcile is observe (every read) → validate (pure) → plan (pure, built by
//! [`crate::desired`]) → apply (idempotent calls through [`crate::aws`]'s traits,
//! ids checkpointed into status) → status (pure), a module each under the kind's
//! directory. A finalizer guards AWS cleanup; in-cluster children carry owner
//! references.
//!
//! # Layout
//! - [`context`]: what every reconcile shares (clients, AWS services, settings).
//! - [`gateway`], [`webhook`]: the two reconcilers, one file per step.
//! - [`deployer`]: coalesces stage deployments per gateway; Webhooks' requests for them.
//! - [`hostname`]: whether the gateway's alias may replace what the zone holds at its hostname.
//! - [`identity`]: a worker's ServiceAccount and, for IRSA, its namespace's role.
//! - [`index`]: the pure gateway index (path owners, quotas, what routes share).
//! - [`selector`]: label selector matching for `allowedNamespaces`.
//! - [`status`]: conditions from step results (one helper for both kinds), status
//!   writes and condition Events.
//! - [`steady`]: what a full pass proved, so a steady-state resync makes two reads;
//!   when the full pass (the audit) runs anyway.
//! - [`retry`]: when a failed reconcile runs again (per object, backoff with jitter).
//! - [`run`]: runs the controllers.

pub mod context;
pub mod deployer;
pub mod gateway;
pub mod hostname;
pub mod identity;
pub mod index;
pub mod metrics;
pub mod retry;
pub mod run;
pub mod selector;
pub mod status;
pub mod steady;
pub mod webhook;

use crate::aws::AwsError;

/// Finalizer guarding AWS cleanup of both kinds.
pub const FINALIZER: &str = "hookline.dev/aws-cleanup";
/// Field manager of everything the operator applies.
pub const MANAGER: &str = "hookline-operator";
/// Annotation allowing a Webhook's deletion to drop a non-empty dead-letter queue.
pub const ALLOW_DLQ_LOSS: &str = "hookline.dev/allow-dlq-loss";
/// Annotation that lets deletion delete a main queue that still holds messages,
/// without waiting for the worker to drain it.
pub const ALLOW_QUEUE_LOSS: &str = "hookline.dev/allow-queue-loss";

/// What can fail in a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// AWS failed (already retried under the rate limits).
    #[error("AWS: {0}")]
    Aws(#[from] AwsError),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Cleanup must wait (attached webhooks, a non-empty dead-letter queue); the
    /// finalizer stays and the reconcile is retried.
    #[error("waiting: {0}")]
    Blocked(String),
    /// The object lacks something the API server always sets (name, uid).
    #[error("object without {0}")]
    Malformed(&'static str),
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    /// A failed apply or cleanup is that step's own error; the rest is the finalizer
    /// machinery's (adding or removing the finalizer itself).
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Self::Finalizer(other.to_string()),
        }
    }
}

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Aws(e) => e.kind(),
            Self::Finalizer(_) => "finalizer",
            Self::Blocked(_) => "blocked",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
