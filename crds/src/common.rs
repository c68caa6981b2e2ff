//! Types both resources share: references, throttling, deletion policy, AWS tags.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// AWS allows 50 tags per resource; Hookline adds its own ownership tags, so
/// users get a little less.
pub const MAX_USER_TAGS: usize = 40;

/// Tag keys Hookline writes itself (ownership, provenance). Users may not set them,
/// and AWS reserves `aws:`.
pub const RESERVED_TAG_PREFIXES: [&str; 2] = ["aws:", "hookline.dev/"];

/// What happens to the AWS objects when the Kubernetes resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    // The operator deletes the AWS objects it created.
    #[default]
    Delete,
    // The AWS objects stay, untouched, after the resource is gone.
    Retain,
}

/// A key of a Secret in the same namespace as the resource that refers to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the Webhook.
    #[x_kube(validation = Rule::new(crate::DNS_SUBDOMAIN_RULE).message("name must be a DNS subdomain: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key within the Secret's data.
    #[x_kube(validation = Rule::new(crate::SECRET_KEY_RULE).message("key must consist of letters, digits, '-', '_' or '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Stage-level request throttling, enforced by API Gateway before anything reaches SQS
/// (callers over the limit get `429`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    /// Steady-state requests per second.
    #[serde(default = "default_rate_limit")]
    #[schemars(range(min = 1.0, max = 10000.0))]
    pub rate_limit: f64,

    /// Maximum number of requests served at once above the steady rate.
    #[serde(default = "default_burst_limit")]
    #[schemars(range(min = 1, max = 5000))]
    pub burst_limit: i32,
}

impl Default for Throttling {
    fn default() -> Self {
        Self {
            rate_limit: default_rate_limit(),
            burst_limit: default_burst_limit(),
        }
    }
}

fn default_rate_limit() -> f64 {
    100.0
}

fn default_burst_limit() -> i32 {
    200
}

/// Tags added to every AWS object created for the resource (on top of
/// Hookline's own ownership tags).
pub type Tags = BTreeMap<String, String>;

/// CEL rule shared by every `tags` field; kept here so both resources say the same thing.
pub(crate) const TAGS_RULE: &str =
    "self.all(k, size(k) <= 128 && !k.startsWith('aws:') && !k.startsWith('hookline.dev/'))";
pub(crate) const TAGS_MESSAGE: &str = "tag keys must be at most 128 characters and must not start with 'aws:' or 'hookline.dev/' (reserved)";
