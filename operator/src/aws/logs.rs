//! [`LogGroups`]: the CloudWatch Logs group a gateway's stage writes access logs to.

use super::error::gone_is_fine;
use super::{AwsError, Caller, Owner, Service};

const LOGS: Service = Service::Logs;

/// Access-log line format: one JSON object per request, without bodies.
pub const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","time":"$context.requestTime","method":"$context.httpMethod","path":"$context.resourcePath","status":"$context.status","latencyMs":"$context.responseLatency","integrationStatus":"$context.integration.status","error":"$context.error.message"}"#;

/// A gateway's access-log group.
#[async_trait::async_trait]
pub trait LogGroups: Send + Sync {
    /// Creates the group (tagged) or fixes its retention; returns its ARN (without
    /// the trailing `:*`, as API Gateway wants it).
    async fn ensure(
        &self,
        name: &str,
        retention_days: i32,
        owner: &Owner,
    ) -> Result<String, AwsError>;
    /// Deletes the group if it is ours; already gone is fine.
    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// [`LogGroups`] on the CloudWatch Logs SDK.
#[derive(Debug, Clone)]
pub struct CloudWatchLogGroups {
    logs: aws_sdk_cloudwatchlogs::Client,
    caller: Caller,
}

impl CloudWatchLogGroups {
    /// Uses `logs` for calls and `caller` for limits, retries and counts.
    pub fn new(logs: aws_sdk_cloudwatchlogs::Client, caller: Caller) -> Self {
        Self { logs, caller }
    }

    async fn find(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_cloudwatchlogs::types::LogGroup>, AwsError> {
        let groups = self
            .caller
            .call(LOGS, "DescribeLogGroups", name, || {
                self.logs
                    .describe_log_groups()
                    .log_group_name_prefix(name)
                    .send()
            })
            .await?
            .log_groups
            .unwrap_or_default();
        Ok(groups
            .into_iter()
            .find(|g| g.log_group_name.as_deref() == Some(name)))
    }

    async fn check_owner(&self, arn: &str, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let tags = self
            .caller
            .call(LOGS, "ListTagsForResource", arn, || {
                self.logs.list_tags_for_resource().resource_arn(arn).send()
            })
            .await?
            .tags
            .unwrap_or_default();
        owner.check(&tags, LOGS, "ListTagsForResource", "log group", name)
    }
}

/// A log group's ARN as API Gateway takes it: DescribeLogGroups adds `:*`.
fn bare_arn(arn: &str) -> String {
    arn.strip_suffix(":*").unwrap_or(arn).to_owned()
}

#[async_trait::async_trait]
impl LogGroups for CloudWatchLogGroups {
    async fn ensure(
        &self,
        name: &str,
        retention_days: i32,
        owner: &Owner,
    ) -> Result<String, AwsError> {
        let group = match self.find(name).await? {
            Some(group) => group,
            None => {
                self.caller
                    .call(LOGS, "CreateLogGroup", name, || {
                        self.logs
                            .create_log_group()
                            .log_group_name(name)
                            .set_tags(Some(owner.tags().into_iter().collect()))
                            .send()
                    })
                    .await?;
                self.find(name).await?.ok_or_else(|| {
                    AwsError::unexpected(
                        LOGS,
                        "DescribeLogGroups",
                        format!("{name} missing after creation"),
                    )
                })?
            }
        };
        let arn = group.arn.clone().ok_or_else(|| {
            AwsError::unexpected(LOGS, "DescribeLogGroups", format!("no ARN for {name}"))
        })?;
        self.check_owner(&bare_arn(&arn), name, owner).await?;
        if group.retention_in_days != Some(retention_days) {
            self.caller
                .call(LOGS, "PutRetentionPolicy", name, || {
                    self.logs
                        .put_retention_policy()
                        .log_group_name(name)
                        .retention_in_days(retention_days)
                        .send()
                })
                .await?;
        }
        Ok(bare_arn(&arn))
    }

    async fn delete(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let Some(group) = self.find(name).await? else {
            return Ok(());
        };
        let arn = bare_arn(group.arn.as_deref().unwrap_or_default());
        self.check_owner(&arn, name, owner).await?;
        gone_is_fine(
            self.caller
                .call(LOGS, "DeleteLogGroup", name, || {
                    self.logs.delete_log_group().log_group_name(name).send()
                })
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_gateway_takes_the_arn_without_the_wildcard() {
        assert_eq!(
            bare_arn("arn:aws:logs:eu-west-1:1:log-group:/hookline/public:*"),
            "arn:aws:logs:eu-west-1:1:log-group:/hookline/public"
        );
        assert_eq!(
            bare_arn("arn:aws:logs:eu-west-1:1:log-group:x"),
            "arn:aws:logs:eu-west-1:1:log-group:x"
        );
    }

    #[test]
    fn the_access_log_format_is_json_without_bodies() {
        let line: serde_json::Value = serde_json::from_str(ACCESS_LOG_FORMAT).unwrap();
        assert!(line.get("requestId").is_some());
        assert!(!ACCESS_LOG_FORMAT.contains("$input"));
    }
}
