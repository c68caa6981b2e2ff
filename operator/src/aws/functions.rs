//! [`Functions`]: the resource-based permission that lets API Gateway invoke a
//! webhook's Lambda authorizer.
//!
//! Without it every request to the route gets 500 ("Execution failed due to
//! configuration error: Invalid permissions on Lambda function"). Of the two ways
//! AWS offers, the operator grants `lambda:InvokeFunction` to
//! `apigateway.amazonaws.com` on the function (`AddPermission`), limited by
//! `SourceArn` to the one authorizer, rather than setting `authorizerCredentials`: a
//! role would need `lambda:InvokeFunction` on every function any Webhook names (a
//! wildcard in the gateway's role), while the grant names exactly one authorizer of
//! one API and goes away with it. A function in another account cannot be granted
//! this way; its owner adds the same statement (see docs/operator.md).

use super::{AwsError, Caller, Service};

const LAMBDA: Service = Service::Lambda;
const PRINCIPAL: &str = "apigateway.amazonaws.com";
const ACTION: &str = "lambda:InvokeFunction";

/// Permissions on Lambda functions.
#[async_trait::async_trait]
pub trait Functions: Send + Sync {
    /// Lets API Gateway invoke `function_arn` from `source_arn` under statement
    /// `statement_id`; true if it had to be added (or corrected).
    async fn ensure_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
        source_arn: &str,
    ) -> Result<bool, AwsError>;
    /// Removes that statement; a missing function or statement is fine.
    async fn remove_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
    ) -> Result<(), AwsError>;
}

/// The `SourceArn` of an authorizer: `arn:PARTITION:execute-api:REGION:ACCOUNT:API/authorizers/ID`,
/// partition, region and account taken from an ARN in the same account and region
/// (the webhook's queue).
pub fn authorizer_source_arn(
    same_account_arn: &str,
    api_id: &str,
    authorizer_id: &str,
) -> Option<String> {
    let parts: Vec<&str> = same_account_arn.splitn(6, ':').collect();
    let ["arn", partition, _service, region, account, _rest] = parts.as_slice() else {
        return None;
    };
    Some(format!(
        "arn:{partition}:execute-api:{region}:{account}:{api_id}/authorizers/{authorizer_id}"
    ))
}

/// The statement id of an authorizer's grant (letters, digits, `-`, `_`; at most 100).
pub fn authorizer_statement_id(api_id: &str, authorizer_id: &str) -> String {
    format!("hookline-{api_id}-{authorizer_id}")
}

/// Whether `policy` (a function's resource policy) holds statement `statement_id`
/// granting exactly our principal and action from `source_arn`: `Some(true)` as
/// wanted, `Some(false)` present but different, `None` absent.
pub fn statement_matches(policy: &str, statement_id: &str, source_arn: &str) -> Option<bool> {
    let policy: serde_json::Value = serde_json::from_str(policy).ok()?;
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(items) => items.clone(),
        one @ serde_json::Value::Object(_) => vec![one.clone()],
        _ => Vec::new(),
    };
    let statement = statements
        .into_iter()
        .find(|s| s["Sid"].as_str() == Some(statement_id))?;
    let principal = &statement["Principal"];
    let principal_ok =
        principal["Service"].as_str() == Some(PRINCIPAL) || principal.as_str() == Some(PRINCIPAL);
    let action_ok = statement["Action"].as_str() == Some(ACTION)
        || statement["Action"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0].as_str() == Some(ACTION));
    let source_ok = statement["Condition"]["ArnLike"]["AWS:SourceArn"].as_str() == Some(source_arn);
    Some(statement["Effect"].as_str() == Some("Allow") && principal_ok && action_ok && source_ok)
}

/// [`Functions`] on the Lambda SDK.
#[derive(Debug, Clone)]
pub struct LambdaFunctions {
    lambda: aws_sdk_lambda::Client,
    caller: Caller,
}

impl LambdaFunctions {
    /// Uses `lambda` for calls and `caller` for limits, retries and counts.
    pub fn new(lambda: aws_sdk_lambda::Client, caller: Caller) -> Self {
        Self { lambda, caller }
    }

    async fn remove(&self, function_arn: &str, statement_id: &str) -> Result<(), AwsError> {
        super::error::gone_is_fine(
            self.caller
                .call(
                    LAMBDA,
                    "RemovePermission",
                    &format!("{function_arn} statement {statement_id}"),
                    || {
                        self.lambda
                            .remove_permission()
                            .function_name(function_arn)
                            .statement_id(statement_id)
                            .send()
                    },
                )
                .await,
        )
    }
}

#[async_trait::async_trait]
impl Functions for LambdaFunctions {
    async fn ensure_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
        source_arn: &str,
    ) -> Result<bool, AwsError> {
        let policy = match self
            .caller
            .call(LAMBDA, "GetPolicy", function_arn, || {
                self.lambda.get_policy().function_name(function_arn).send()
            })
            .await
        {
            Ok(answer) => answer.policy,
            // No resource policy at all yet (or no such function: AddPermission says so).
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        match policy
            .as_deref()
            .and_then(|p| statement_matches(p, statement_id, source_arn))
        {
            Some(true) => return Ok(false),
            Some(false) => self.remove(function_arn, statement_id).await?,
            None => {}
        }
        self.caller
            .call(
                LAMBDA,
                "AddPermission",
                &format!("{function_arn} statement {statement_id}"),
                || {
                    self.lambda
                        .add_permission()
                        .function_name(function_arn)
                        .statement_id(statement_id)
                        .action(ACTION)
                        .principal(PRINCIPAL)
                        .source_arn(source_arn)
                        .send()
                },
            )
            .await?;
        Ok(true)
    }

    async fn remove_invoke_permission(
        &self,
        function_arn: &str,
        statement_id: &str,
    ) -> Result<(), AwsError> {
        self.remove(function_arn, statement_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_arn_names_one_authorizer_in_the_queue_partition_and_account() {
        assert_eq!(
            authorizer_source_arn(
                "arn:aws-cn:sqs:cn-north-1:123456789012:hl-a.fifo",
                "u1hp5d8r0b",
                "ab12cd"
            )
            .as_deref(),
            Some("arn:aws-cn:execute-api:cn-north-1:123456789012:u1hp5d8r0b/authorizers/ab12cd")
        );
        assert_eq!(authorizer_source_arn("not-an-arn", "a", "b"), None);
        let sid = authorizer_statement_id("u1hp5d8r0b", "ab12cd");
        assert!(sid.len() <= 100 && sid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    /// Statements as Lambda's GetPolicy returns them.
    #[test]
    fn statements_are_recognised() {
        let source = "arn:aws:execute-api:eu-west-1:1:api/authorizers/x";
        let policy = |sid: &str, source: &str| {
            serde_json::json!({
                "Version": "2012-10-17",
                "Id": "default",
                "Statement": [{
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": {"Service": "apigateway.amazonaws.com"},
                    "Action": "lambda:InvokeFunction",
                    "Resource": "arn:aws:lambda:eu-west-1:1:function:auth",
                    "Condition": {"ArnLike": {"AWS:SourceArn": source}}
                }]
            })
            .to_string()
        };
        assert_eq!(
            statement_matches(&policy("s", source), "s", source),
            Some(true)
        );
        assert_eq!(
            statement_matches(
                &policy("s", "arn:aws:execute-api:eu-west-1:1:api/*"),
                "s",
                source
            ),
            Some(false),
            "a broader grant under our id is corrected"
        );
        assert_eq!(
            statement_matches(&policy("other", source), "s", source),
            None
        );
    }
}
