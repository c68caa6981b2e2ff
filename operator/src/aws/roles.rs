//! [`Roles`]: the IAM role API Gateway assumes to call `sqs:SendMessage`, with a
//! least-privilege inline policy (only SendMessage, only the gateway's queues).

use aws_sdk_iam::types::Tag;
use serde_json::{Value, json};
use std::future::Future;

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

/// The API Gateway → SQS role.
pub trait Roles: Send + Sync {
    /// Creates the role and its policy, or brings ours in line; returns its ARN.
    fn ensure(&self, spec: &RoleSpec) -> impl Future<Output = Result<String, AwsError>> + Send;
    /// Deletes the role if it is ours; one already gone is fine.
    fn delete(
        &self,
        name: &str,
        owner: &Owner,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// [`Roles`] on the IAM SDK.
#[derive(Debug, Clone)]
pub struct IamRoles {
    iam: aws_sdk_iam::Client,
    caller: Caller,
}

impl IamRoles {
    /// Uses `iam` for calls and `caller` for limits, retries and counts.
    pub fn new(iam: aws_sdk_iam::Client, caller: Caller) -> Self {
        Self { iam, caller }
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

impl Roles for IamRoles {
    async fn ensure(&self, spec: &RoleSpec) -> Result<String, AwsError> {
        let trust = trust_policy();
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
        let existing = match self
            .caller
            .call(IAM, "GetRole", || {
                self.iam.get_role().role_name(&spec.name).send()
            })
            .await
        {
            Ok(out) => out.role,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let role = match existing {
            None => {
                let tags: Vec<Tag> = spec
                    .owner
                    .tags()
                    .into_iter()
                    .filter_map(|(key, value)| Tag::builder().key(key).value(value).build().ok())
                    .collect();
                let role = self
                    .caller
                    .call(IAM, "CreateRole", || {
                        self.iam
                            .create_role()
                            .role_name(&spec.name)
                            .path("/hookline/")
                            .assume_role_policy_document(trust.to_string())
                            .description(
                                "API Gateway sends webhook requests to Hookline's SQS queues",
                            )
                            .set_tags(Some(tags.clone()))
                            .send()
                    })
                    .await?
                    .role
                    .ok_or_else(|| AwsError::unexpected(IAM, "CreateRole", "no role returned"))?;
                tracing::info!(role = %spec.name, "created IAM role");
                // A new role has no policy yet.
                self.put_policy(&spec.name, &policy_for(&role.arn)?).await?;
                return Ok(role.arn);
            }
            Some(role) => role,
        };
        let tags = role.tags.clone().unwrap_or_default();
        let owner = tags
            .iter()
            .find(|t| t.key == super::OWNER_TAG)
            .map(|t| t.value.as_str());
        if owner != Some(spec.owner.uid.as_str()) {
            return Err(AwsError::not_owned(
                IAM, "GetRole", "IAM role", &spec.name, owner,
            ));
        }
        if !role
            .assume_role_policy_document
            .as_deref()
            .is_some_and(|doc| same_document(doc, &trust))
        {
            self.caller
                .call(IAM, "UpdateAssumeRolePolicy", || {
                    self.iam
                        .update_assume_role_policy()
                        .role_name(&spec.name)
                        .policy_document(trust.to_string())
                        .send()
                })
                .await?;
        }
        let current = match self
            .caller
            .call(IAM, "GetRolePolicy", || {
                self.iam
                    .get_role_policy()
                    .role_name(&spec.name)
                    .policy_name(POLICY_NAME)
                    .send()
            })
            .await
        {
            Ok(out) => Some(out.policy_document),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let policy = policy_for(&role.arn)?;
        if !current.is_some_and(|doc| same_document(&doc, &policy)) {
            self.put_policy(&spec.name, &policy).await?;
        }
        Ok(role.arn)
    }

    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let role = match self
            .caller
            .call(IAM, "GetRole", || {
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
            .call(IAM, "DeleteRolePolicy", || {
                self.iam
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(POLICY_NAME)
                    .send()
            })
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        gone_is_fine(
            self.caller
                .call(IAM, "DeleteRole", || {
                    self.iam.delete_role().role_name(name).send()
                })
                .await,
        )
    }
}

impl IamRoles {
    async fn put_policy(&self, role: &str, policy: &Value) -> Result<(), AwsError> {
        self.caller
            .call(IAM, "PutRolePolicy", || {
                self.iam
                    .put_role_policy()
                    .role_name(role)
                    .policy_name(POLICY_NAME)
                    .policy_document(policy.to_string())
                    .send()
            })
            .await?;
        Ok(())
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
    fn the_policy_allows_only_send_message_on_the_pattern() {
        let policy = send_policy("arn:aws:sqs:eu-west-1:123456789012:hl-*");
        assert_eq!(policy["Statement"][0]["Action"], "sqs:SendMessage");
        assert_eq!(policy["Statement"].as_array().map(Vec::len), Some(1));
    }
}
