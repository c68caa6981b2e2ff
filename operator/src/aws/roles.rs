//! [`Roles`]: the IAM role API Gateway assumes to call `sqs:SendMessage`, with a
//! least-privilege inline policy (only SendMessage, only the gateway's queues); and
//! the IRSA role of one namespace's workers ([`IamRoles::ensure_namespace_role`]),
//! trusted by that namespace's ServiceAccount and allowed only its queues.

use aws_sdk_iam::types::{Role, Tag};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::gone_is_fine;
use super::{AwsError, Caller, Owner, Service};
use crate::names;

const IAM: Service = Service::Iam;
const POLICY_NAME: &str = "hookline-send-to-queues";

/// What the role should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    /// Role name (64 characters at most).
    pub name: String,
    /// Region of the queues API Gateway may send to.
    pub region: String,
    /// Name prefix of those queues: the role may send to `<prefix>-*` only. The
    /// partition of their ARNs is the role's own (read from its ARN).
    pub queue_prefix: String,
    /// The owning resource.
    pub owner: Owner,
}

/// The API Gateway → SQS role, and the workers' namespace roles.
#[async_trait::async_trait]
pub trait Roles: Send + Sync {
    /// Creates the role and its policy, or brings ours in line; returns its ARN.
    async fn ensure(&self, spec: &RoleSpec) -> Result<String, AwsError>;
    /// Deletes the role if it is ours; one already gone is fine.
    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
    /// Creates a namespace's worker role (IRSA), or brings ours in line; returns its ARN.
    async fn ensure_namespace_role(&self, spec: &NamespaceRoleSpec) -> Result<String, AwsError>;
    /// Deletes a namespace's worker role if it is `owner`'s; one already gone is fine.
    async fn delete_namespace_role(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// [`Roles`] on the IAM SDK.
#[derive(Debug, Clone)]
pub struct IamRoles {
    iam: aws_sdk_iam::Client,
    caller: Caller,
    /// Namespace roles checked lately: every Webhook of a namespace ensures the same
    /// role, and IAM's rate limit (8/s here) would otherwise be spent on identical
    /// reads, two per Webhook per resync.
    checked: Arc<Mutex<HashMap<String, CheckedRole>>>,
}

/// A namespace role as last found matching its spec: the spec, its ARN, and when.
type CheckedRole = (NamespaceRoleSpec, String, Instant);

/// How long a namespace role that matched stays trusted without a re-read: below the
/// default resync (300 s), so drift is still repaired about once per resync.
const NAMESPACE_ROLE_RECHECK: Duration = Duration::from_secs(240);

impl IamRoles {
    /// Uses `iam` for calls and `caller` for limits, retries and counts.
    pub fn new(iam: aws_sdk_iam::Client, caller: Caller) -> Self {
        Self {
            iam,
            caller,
            checked: Arc::default(),
        }
    }

    fn checked_lately(&self, spec: &NamespaceRoleSpec) -> Option<String> {
        let checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        checked
            .get(&spec.name)
            .filter(|(known, _, at)| known == spec && at.elapsed() < NAMESPACE_ROLE_RECHECK)
            .map(|(_, arn, _)| arn.clone())
    }

    /// Remembers `arn` as `spec`'s role (or, with none, forgets the role of that name).
    fn remember(&self, name: &str, checked: Option<(&NamespaceRoleSpec, &str)>) {
        let mut known = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        match checked {
            Some((spec, arn)) => {
                known.insert(
                    name.to_owned(),
                    (spec.clone(), arn.to_owned(), Instant::now()),
                );
            }
            None => {
                known.remove(name);
            }
        }
    }
}

/// Who may assume the role: API Gateway only.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// What the role may do: send to the gateway's queues, nothing else.
pub fn send_policy(queue_arn_pattern: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": queue_arn_pattern
        }]
    })
}

/// IAM returns policy documents URL-encoded; compare them as JSON.
fn same_document(returned: &str, wanted: &Value) -> bool {
    let decoded = percent_encoding::percent_decode_str(returned).decode_utf8_lossy();
    serde_json::from_str::<Value>(&decoded).is_ok_and(|have| &have == wanted)
}

#[async_trait::async_trait]
impl Roles for IamRoles {
    async fn ensure(&self, spec: &RoleSpec) -> Result<String, AwsError> {
        let policy_for = |role_arn: &str| {
            let partition = names::partition_of(role_arn).ok_or_else(|| {
                AwsError::unexpected(IAM, "GetRole", format!("no partition in {role_arn}"))
            })?;
            Ok::<_, AwsError>(send_policy(&names::queue_arn_pattern(
                partition,
                &spec.region,
                &spec.queue_prefix,
            )))
        };
        self.ensure_role(
            &RoleDocuments {
                name: &spec.name,
                description: "API Gateway sends webhook requests to Hookline's SQS queues",
                trust: trust_policy(),
                policy_name: POLICY_NAME,
                owner: &spec.owner,
            },
            policy_for,
        )
        .await
    }

    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        self.delete_role(name, owner, POLICY_NAME).await
    }

    /// Creates the namespace's worker role, or brings ours in line; returns its ARN.
    /// A role found matching `spec` is not read again for a few minutes.
    async fn ensure_namespace_role(&self, spec: &NamespaceRoleSpec) -> Result<String, AwsError> {
        if let Some(arn) = self.checked_lately(spec) {
            return Ok(arn);
        }
        let arn = self.ensure_namespace_role_now(spec).await?;
        self.remember(&spec.name, Some((spec, &arn)));
        Ok(arn)
    }

    /// Deletes the namespace's worker role if it is `owner`'s; one already gone is fine.
    async fn delete_namespace_role(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        self.remember(name, None);
        self.delete_role(name, owner, WORKER_POLICY_NAME).await
    }
}

impl IamRoles {
    /// Deletes role `name` with its inline policy `policy_name` if it is `owner`'s;
    /// one already gone is fine.
    async fn delete_role(
        &self,
        name: &str,
        owner: &Owner,
        policy_name: &str,
    ) -> Result<(), AwsError> {
        let role = match self
            .caller
            .call(IAM, "GetRole", name, || {
                self.iam.get_role().role_name(name).send()
            })
            .await
        {
            Ok(out) => out.role,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(role) = role else { return Ok(()) };
        let current = role
            .tags
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.key == super::OWNER_TAG)
            .map(|t| t.value);
        if current.as_deref() != Some(owner.uid.as_str()) {
            return Err(AwsError::not_owned(
                IAM,
                "GetRole",
                "IAM role",
                name,
                current.as_deref(),
            ));
        }
        // A role with inline policies cannot be deleted.
        match self
            .caller
            .call(
                IAM,
                "DeleteRolePolicy",
                &format!("{name}/{policy_name}"),
                || {
                    self.iam
                        .delete_role_policy()
                        .role_name(name)
                        .policy_name(policy_name)
                        .send()
                },
            )
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        gone_is_fine(
            self.caller
                .call(IAM, "DeleteRole", name, || {
                    self.iam.delete_role().role_name(name).send()
                })
                .await,
        )
    }
}

/// A role as the operator wants it.
struct RoleDocuments<'a> {
    name: &'a str,
    description: &'a str,
    trust: Value,
    policy_name: &'a str,
    owner: &'a Owner,
}

impl IamRoles {
    async fn put_policy(&self, role: &str, name: &str, policy: &Value) -> Result<(), AwsError> {
        self.caller
            .call(IAM, "PutRolePolicy", &format!("{role}/{name}"), || {
                self.iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(name)
                    .policy_document(policy.to_string())
                    .send()
            })
            .await?;
        Ok(())
    }

    /// Creates the role under `/hookline/` with its trust and inline policy, or brings
    /// ours in line; returns its ARN. `policy_for` gets the role's ARN (whose
    /// partition the policy's resources use).
    async fn ensure_role(
        &self,
        want: &RoleDocuments<'_>,
        policy_for: impl Fn(&str) -> Result<Value, AwsError>,
    ) -> Result<String, AwsError> {
        let existing = match self
            .caller
            .call(IAM, "GetRole", want.name, || {
                self.iam.get_role().role_name(want.name).send()
            })
            .await
        {
            Ok(out) => out.role,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let Some(role) = existing else {
            let role = self.create_role(want).await?;
            // A new role has no policy yet.
            self.put_policy(want.name, want.policy_name, &policy_for(&role.arn)?)
                .await?;
            return Ok(role.arn);
        };
        let tags = role.tags.clone().unwrap_or_default();
        let owner = tags
            .iter()
            .find(|t| t.key == super::OWNER_TAG)
            .map(|t| t.value.as_str());
        if owner != Some(want.owner.uid.as_str()) {
            return Err(AwsError::not_owned(
                IAM, "GetRole", "IAM role", want.name, owner,
            ));
        }
        self.ensure_trust(&role, want).await?;
        self.ensure_inline_policy(want, &policy_for(&role.arn)?)
            .await?;
        Ok(role.arn)
    }

    /// A new role under `/hookline/` with the trust policy, tagged with its owner.
    async fn create_role(&self, want: &RoleDocuments<'_>) -> Result<Role, AwsError> {
        let tags: Vec<Tag> = want
            .owner
            .tags()
            .into_iter()
            .filter_map(|(key, value)| Tag::builder().key(key).value(value).build().ok())
            .collect();
        self.caller
            .call(IAM, "CreateRole", want.name, || {
                self.iam
                    .create_role()
                    .role_name(want.name)
                    .path("/hookline/")
                    .assume_role_policy_document(want.trust.to_string())
                    .description(want.description)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?
            .role
            .ok_or_else(|| AwsError::unexpected(IAM, "CreateRole", "no role returned"))
    }

    /// The role's trust policy, updated when it differs.
    async fn ensure_trust(&self, role: &Role, want: &RoleDocuments<'_>) -> Result<(), AwsError> {
        if role
            .assume_role_policy_document
            .as_deref()
            .is_some_and(|doc| same_document(doc, &want.trust))
        {
            return Ok(());
        }
        self.caller
            .call(IAM, "UpdateAssumeRolePolicy", want.name, || {
                self.iam
                    .update_assume_role_policy()
                    .role_name(want.name)
                    .policy_document(want.trust.to_string())
                    .send()
            })
            .await?;
        Ok(())
    }

    /// The role's inline policy, put when it differs or is missing.
    async fn ensure_inline_policy(
        &self,
        want: &RoleDocuments<'_>,
        policy: &Value,
    ) -> Result<(), AwsError> {
        let current = match self
            .caller
            .call(
                IAM,
                "GetRolePolicy",
                &format!("{}/{}", want.name, want.policy_name),
                || {
                    self.iam
                        .get_role_policy()
                        .role_name(want.name)
                        .policy_name(want.policy_name)
                        .send()
                },
            )
            .await
        {
            Ok(out) => Some(out.policy_document),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        if current.is_some_and(|doc| same_document(&doc, policy)) {
            return Ok(());
        }
        self.put_policy(want.name, want.policy_name, policy).await
    }
}

/// The IRSA role of one namespace's workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRoleSpec {
    /// Role name (64 characters at most), [`names::namespace_role`].
    pub name: String,
    /// The namespace whose workers assume it.
    pub namespace: String,
    /// The one ServiceAccount of that namespace it trusts.
    pub service_account: String,
    /// ARN of the cluster's IAM OIDC identity provider,
    /// `arn:PARTITION:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID`;
    /// the policy's partition and account come from it.
    pub oidc_provider_arn: String,
    /// Region of the queues.
    pub region: String,
    /// Name prefix of the queues.
    pub queue_prefix: String,
    /// The owning resource: the Namespace.
    pub owner: Owner,
}

const WORKER_POLICY_NAME: &str = "hookline-drain-namespace-queues";

/// The chart's worker policy (`charts/hookline/files/worker-iam-policy.json`): the one
/// document the chart README hands to platform teams and the operator puts on the
/// roles it creates, so the two cannot drift apart.
const WORKER_POLICY_TEMPLATE: &str =
    include_str!("../../../charts/hookline/files/worker-iam-policy.json");

/// What one namespace's workers may do: drain that namespace's queues (by their
/// `hookline.dev/resource` tag), nothing else.
pub fn worker_policy(
    partition: &str,
    region: &str,
    account: &str,
    prefix: &str,
    namespace: &str,
) -> Result<Value, AwsError> {
    let text = WORKER_POLICY_TEMPLATE
        .replace("PARTITION", partition)
        .replace("REGION", region)
        .replace("ACCOUNT", account)
        .replace("PREFIX", prefix)
        .replace("NAMESPACE", namespace);
    serde_json::from_str(&text)
        .map_err(|e| AwsError::unexpected(IAM, "PutRolePolicy", format!("worker policy: {e}")))
}

/// Who may assume a namespace role: tokens of that namespace's ServiceAccount from
/// the cluster's OIDC provider, for STS (IAM user guide, "Create a role for OIDC
/// federation"; EKS user guide, "Assign IAM roles to Kubernetes service accounts").
pub fn irsa_trust_policy(
    oidc_provider_arn: &str,
    namespace: &str,
    service_account: &str,
) -> Result<Value, AwsError> {
    let issuer = oidc_provider_arn
        .split_once(":oidc-provider/")
        .map(|(_, issuer)| issuer)
        .filter(|issuer| !issuer.is_empty())
        .ok_or_else(|| {
            AwsError::unexpected(
                IAM,
                "CreateRole",
                format!("{oidc_provider_arn} is not an IAM OIDC provider ARN"),
            )
        })?;
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": oidc_provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:aud"): "sts.amazonaws.com",
                format!("{issuer}:sub"): format!("system:serviceaccount:{namespace}:{service_account}"),
            }}
        }]
    }))
}

/// The account field of an ARN.
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// A namespace role's trust policy (the namespace's worker ServiceAccount through
/// the cluster's OIDC provider) and its inline policy (that namespace's queues).
pub fn namespace_role_documents(spec: &NamespaceRoleSpec) -> Result<(Value, Value), AwsError> {
    let trust = irsa_trust_policy(
        &spec.oidc_provider_arn,
        &spec.namespace,
        &spec.service_account,
    )?;
    let (partition, account) = names::partition_of(&spec.oidc_provider_arn)
        .zip(account_of(&spec.oidc_provider_arn))
        .ok_or_else(|| {
            AwsError::unexpected(
                IAM,
                "CreateRole",
                format!("no partition or account in {}", spec.oidc_provider_arn),
            )
        })?;
    let policy = worker_policy(
        partition,
        &spec.region,
        account,
        &spec.queue_prefix,
        &spec.namespace,
    )?;
    Ok((trust, policy))
}

impl IamRoles {
    async fn ensure_namespace_role_now(
        &self,
        spec: &NamespaceRoleSpec,
    ) -> Result<String, AwsError> {
        let (trust, policy) = namespace_role_documents(spec)?;
        self.ensure_role(
            &RoleDocuments {
                name: &spec.name,
                description: "Hookline workers of one namespace drain that namespace's SQS queues",
                trust,
                policy_name: WORKER_POLICY_NAME,
                owner: &spec.owner,
            },
            |_| Ok(policy.clone()),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_documents_compare_as_json() {
        let wanted = trust_policy();
        let encoded = percent_encoding::utf8_percent_encode(
            &wanted.to_string(),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        assert!(same_document(&encoded, &wanted));
        assert!(
            same_document(&wanted.to_string(), &wanted),
            "plain JSON too"
        );
        assert!(!same_document(
            &send_policy("arn:aws:sqs:*:*:other-*").to_string(),
            &send_policy("arn:aws:sqs:*:*:hl-*")
        ));
    }

    #[test]
    fn a_namespace_role_trusts_one_service_account_of_the_clusters_provider() {
        let provider =
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC";
        let trust = irsa_trust_policy(provider, "payments", "hookline-worker").unwrap();
        let statement = &trust["Statement"][0];
        assert_eq!(statement["Principal"]["Federated"], provider);
        assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
        let equals = &statement["Condition"]["StringEquals"];
        assert_eq!(
            equals["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"],
            "system:serviceaccount:payments:hookline-worker"
        );
        assert_eq!(
            equals["oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud"],
            "sts.amazonaws.com"
        );
        assert!(irsa_trust_policy("arn:aws:iam::1:role/x", "a", "b").is_err());
    }

    #[test]
    fn a_namespace_role_may_drain_only_that_namespaces_queues() {
        let policy =
            worker_policy("aws-cn", "cn-north-1", "123456789012", "hl", "payments").unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(
            statement["Resource"],
            "arn:aws-cn:sqs:cn-north-1:123456789012:hl-*"
        );
        assert_eq!(
            statement["Condition"]["StringLike"]["aws:ResourceTag/hookline.dev/resource"],
            "Webhook payments/*"
        );
        assert_eq!(
            account_of("arn:aws:iam::123456789012:oidc-provider/x"),
            Some("123456789012")
        );
    }

    #[test]
    fn the_policy_allows_only_send_message_on_the_pattern() {
        let policy = send_policy("arn:aws:sqs:eu-west-1:123456789012:hl-*");
        assert_eq!(policy["Statement"][0]["Action"], "sqs:SendMessage");
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(1));
    }
}
