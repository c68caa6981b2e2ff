//! [`Roles`] in memory: IAM roles with their trust policy and one inline policy,
//! built from the same documents as the SDK implementation writes.

use serde_json::Value;
use std::collections::BTreeMap;

use super::{ACCOUNT, MemoryAws, State, owner_of};
use crate::aws::roles::{namespace_role_documents, send_policy, trust_policy};
use crate::aws::{AwsError, NamespaceRoleSpec, Owner, RoleSpec, Roles, Service};
use crate::names;

const IAM: Service = Service::Iam;
const SEND_POLICY: &str = "hookline-send-to-queues";
const WORKER_POLICY: &str = "hookline-drain-namespace-queues";

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryRole {
    /// Role ARN.
    pub arn: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Who may assume it.
    pub trust: Value,
    /// Inline policies by name.
    pub policies: BTreeMap<String, Value>,
}

impl MemoryAws {
    /// The role `name`, if it exists.
    pub fn role(&self, name: &str) -> Option<MemoryRole> {
        self.read(|s| s.roles.get(name).cloned())
    }
}

fn ensure_role(
    state: &mut State,
    name: &str,
    trust: Value,
    policy_name: &str,
    policy_for: impl Fn(&str) -> Result<Value, AwsError>,
    owner: &Owner,
) -> Result<String, AwsError> {
    state.call(IAM, "GetRole")?;
    let Some(role) = state.roles.get(name).cloned() else {
        state.call(IAM, "CreateRole")?;
        let arn = format!("arn:aws:iam::{ACCOUNT}:role/hookline/{name}");
        // A new role has no policy until PutRolePolicy succeeds.
        state.roles.insert(
            name.to_owned(),
            MemoryRole {
                arn: arn.clone(),
                tags: owner.tags(),
                trust,
                policies: BTreeMap::new(),
            },
        );
        let policy = policy_for(&arn)?;
        state.call(IAM, "PutRolePolicy")?;
        if let Some(role) = state.roles.get_mut(name) {
            role.policies.insert(policy_name.to_owned(), policy);
        }
        return Ok(arn);
    };
    let current = owner_of(&role.tags);
    if current != Some(owner.uid.as_str()) {
        return Err(AwsError::not_owned(
            IAM, "GetRole", "IAM role", name, current,
        ));
    }
    let mut updated = role.clone();
    if role.trust != trust {
        state.call(IAM, "UpdateAssumeRolePolicy")?;
        updated.trust = trust;
    }
    state.call(IAM, "GetRolePolicy")?;
    let policy = policy_for(&role.arn)?;
    if role.policies.get(policy_name) != Some(&policy) {
        state.call(IAM, "PutRolePolicy")?;
        updated.policies.insert(policy_name.to_owned(), policy);
    }
    state.roles.insert(name.to_owned(), updated);
    Ok(role.arn)
}

fn delete_role(
    state: &mut State,
    name: &str,
    owner: &Owner,
    policy_name: &str,
) -> Result<(), AwsError> {
    state.call(IAM, "GetRole")?;
    let Some(role) = state.roles.get(name) else {
        return Ok(());
    };
    let current = owner_of(&role.tags);
    if current != Some(owner.uid.as_str()) {
        return Err(AwsError::not_owned(
            IAM, "GetRole", "IAM role", name, current,
        ));
    }
    state.call(IAM, "DeleteRolePolicy")?;
    if let Some(role) = state.roles.get_mut(name) {
        role.policies.remove(policy_name);
        // A role with inline policies cannot be deleted.
        if !role.policies.is_empty() {
            return Err(AwsError::Conflict {
                service: IAM,
                operation: "DeleteRole",
                message: format!("Cannot delete entity {name}, must delete policies first"),
            });
        }
    }
    state.call(IAM, "DeleteRole")?;
    state.roles.remove(name);
    Ok(())
}

#[async_trait::async_trait]
impl Roles for MemoryAws {
    async fn ensure(&self, spec: &RoleSpec) -> Result<String, AwsError> {
        ensure_role(
            &mut self.lock(),
            &spec.name,
            trust_policy(),
            SEND_POLICY,
            |arn| {
                let partition = names::partition_of(arn).ok_or_else(|| {
                    AwsError::unexpected(IAM, "GetRole", format!("no partition in {arn}"))
                })?;
                Ok(send_policy(&names::queue_arn_pattern(
                    partition,
                    &spec.region,
                    &spec.queue_prefix,
                )))
            },
            &spec.owner,
        )
    }

    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        delete_role(&mut self.lock(), name, owner, SEND_POLICY)
    }

    async fn ensure_namespace_role(&self, spec: &NamespaceRoleSpec) -> Result<String, AwsError> {
        let (trust, policy) = namespace_role_documents(spec)?;
        ensure_role(
            &mut self.lock(),
            &spec.name,
            trust,
            WORKER_POLICY,
            |_| Ok(policy.clone()),
            &spec.owner,
        )
    }

    async fn delete_namespace_role(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        delete_role(&mut self.lock(), name, owner, WORKER_POLICY)
    }
}
