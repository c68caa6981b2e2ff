//! [`LogGroups`], [`Functions`] and [`Account`] in memory.

use std::collections::BTreeMap;

use super::{ACCOUNT, MemoryAws, not_found};
use crate::aws::{Account, AwsError, Functions, LogGroups, Owner, Service};

const LOGS: Service = Service::Logs;
const LAMBDA: Service = Service::Lambda;
const APIGW: Service = Service::ApiGateway;

/// A CloudWatch Logs group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLogGroup {
    /// ARN without the trailing `:*`.
    pub arn: String,
    /// Retention in days (`None`: never expire).
    pub retention_days: Option<i32>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A Lambda function, as far as its resource policy goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryFunction {
    /// The statements granting API Gateway `lambda:InvokeFunction`: statement id →
    /// the `SourceArn` it is limited to.
    pub invoke_grants: BTreeMap<String, String>,
}

impl MemoryAws {
    /// The log group `name`, if it exists.
    pub fn log_group(&self, name: &str) -> Option<MemoryLogGroup> {
        self.read(|s| s.log_groups.get(name).cloned())
    }

    /// Creates the Lambda function `arn` (Hookline never creates one).
    pub fn create_function(&self, arn: &str) {
        self.edit(|s| {
            s.functions.entry(arn.to_owned()).or_default();
        });
    }

    /// The function `arn`, if it exists.
    pub fn function(&self, arn: &str) -> Option<MemoryFunction> {
        self.read(|s| s.functions.get(arn).cloned())
    }

    /// Sets (or, with `None`, clears) API Gateway's account CloudWatch Logs role.
    pub fn set_cloudwatch_role(&self, arn: Option<&str>) {
        self.edit(|s| s.cloudwatch_role_arn = arn.map(str::to_owned));
    }
}

#[async_trait::async_trait]
impl LogGroups for MemoryAws {
    async fn ensure(
        &self,
        name: &str,
        retention_days: i32,
        owner: &Owner,
    ) -> Result<String, AwsError> {
        let mut state = self.lock();
        state.call(LOGS, "DescribeLogGroups")?;
        if !state.log_groups.contains_key(name) {
            state.call(LOGS, "CreateLogGroup")?;
            let arn = format!("arn:aws:logs:{}:{ACCOUNT}:log-group:{name}", state.region);
            state.log_groups.insert(
                name.to_owned(),
                MemoryLogGroup {
                    arn,
                    retention_days: None,
                    tags: owner.tags(),
                },
            );
            state.call(LOGS, "DescribeLogGroups")?;
        }
        state.call(LOGS, "ListTagsForResource")?;
        let group = state
            .log_groups
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(LOGS, "DescribeLogGroups", name))?;
        owner.check(&group.tags, LOGS, "ListTagsForResource", "log group", name)?;
        if group.retention_days != Some(retention_days) {
            state.call(LOGS, "PutRetentionPolicy")?;
            if let Some(group) = state.log_groups.get_mut(name) {
                group.retention_days = Some(retention_days);
            }
        }
        Ok(group.arn)
    }

    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(LOGS, "DescribeLogGroups")?;
        let Some(group) = state.log_groups.get(name).cloned() else {
            return Ok(());
        };
        state.call(LOGS, "ListTagsForResource")?;
        owner.check(&group.tags, LOGS, "ListTagsForResource", "log group", name)?;
        state.call(LOGS, "DeleteLogGroup")?;
        state.log_groups.remove(name);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Functions for MemoryAws {
    async fn ensure_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
        source_arn: &str,
    ) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(LAMBDA, "GetPolicy")?;
        let current = state
            .functions
            .get(function_arn)
            .and_then(|f| f.invoke_grants.get(statement_id).cloned());
        match current {
            Some(have) if have == source_arn => return Ok(false),
            Some(_) => {
                state.call(LAMBDA, "RemovePermission")?;
                if let Some(function) = state.functions.get_mut(function_arn) {
                    function.invoke_grants.remove(statement_id);
                }
            }
            None => {}
        }
        state.call(LAMBDA, "AddPermission")?;
        let function = state.functions.get_mut(function_arn).ok_or_else(|| {
            not_found(LAMBDA, "AddPermission", format!("function {function_arn}"))
        })?;
        function
            .invoke_grants
            .insert(statement_id.to_owned(), source_arn.to_owned());
        Ok(true)
    }

    async fn remove_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
    ) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(LAMBDA, "RemovePermission")?;
        if let Some(function) = state.functions.get_mut(function_arn) {
            function.invoke_grants.remove(statement_id);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Account for MemoryAws {
    async fn cloudwatch_role_arn(&self) -> Result<Option<String>, AwsError> {
        let mut state = self.lock();
        state.call(APIGW, "GetAccount")?;
        Ok(state.cloudwatch_role_arn.clone())
    }
}
