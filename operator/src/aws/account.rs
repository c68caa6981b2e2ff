//! [`Account`]: API Gateway's per-account, per-region settings the operator reads but
//! never changes. A REST stage can log access only once the account names a
//! CloudWatch Logs role (`cloudwatchRoleArn`); without it AWS refuses the stage
//! update with "CloudWatch Logs role ARN must be set in account settings to enable
//! logging".

use super::{AwsError, Caller, Service};

const APIGW: Service = Service::ApiGateway;

/// API Gateway's account settings.
#[async_trait::async_trait]
pub trait Account: Send + Sync {
    /// The role API Gateway writes logs with, when the account has one.
    async fn cloudwatch_role_arn(&self) -> Result<Option<String>, AwsError>;
}

/// [`Account`] on the API Gateway SDK.
#[derive(Debug, Clone)]
pub struct ApiGatewayAccount {
    apigateway: aws_sdk_apigateway::Client,
    caller: Caller,
}

impl ApiGatewayAccount {
    /// Uses `apigateway` for calls and `caller` for limits, retries and counts.
    pub fn new(apigateway: aws_sdk_apigateway::Client, caller: Caller) -> Self {
        Self { apigateway, caller }
    }
}

#[async_trait::async_trait]
impl Account for ApiGatewayAccount {
    async fn cloudwatch_role_arn(&self) -> Result<Option<String>, AwsError> {
        let account = self
            .caller
            .call(APIGW, "GetAccount", "account", || {
                self.apigateway.get_account().send()
            })
            .await?;
        Ok(account.cloudwatch_role_arn.filter(|arn| !arn.is_empty()))
    }
}
