//! [`Authorizers`]: the API's Cognito and Lambda authorizers, patched in place where
//! API Gateway allows it and otherwise replaced ([`super::diff::authorizer_change`]).

use super::diff::{AuthorizerChange, AuthorizerShape, authorizer_change, replace};
use super::{APIGW, ApiGatewayRestApis};
use crate::aws::AwsError;

/// An authorizer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizerSpec {
    /// Accepts tokens of these Cognito user pools.
    Cognito {
        /// Authorizer name, unique in the API.
        name: String,
        /// User pool ARNs.
        user_pool_arns: Vec<String>,
    },
    /// Calls a Lambda function. API Gateway needs permission to invoke it (a
    /// `lambda:InvokeFunction` grant to `apigateway.amazonaws.com` on the function).
    Lambda {
        /// Authorizer name, unique in the API.
        name: String,
        /// Function ARN.
        function_arn: String,
        /// `TOKEN` or `REQUEST`.
        request: bool,
        /// Where the identity comes from, e.g. `method.request.header.Authorization`.
        identity_source: String,
        /// Seconds API Gateway caches the answer.
        ttl_seconds: i32,
    },
}

impl AuthorizerSpec {
    fn name(&self) -> &str {
        match self {
            Self::Cognito { name, .. } | Self::Lambda { name, .. } => name,
        }
    }
}

/// An authorizer deleted by [`Authorizers::delete_authorizers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAuthorizer {
    /// Its id.
    pub id: String,
    /// The Lambda function it called, if a Lambda authorizer.
    pub function_arn: Option<String>,
}

/// The name an authorizer being replaced is set aside under.
fn replaced_name(name: &str, id: &str) -> String {
    format!("{name}~{id}")
}

/// The function ARN inside a Lambda authorizer's invocation URI.
fn function_of_authorizer_uri(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once("/functions/")?;
    Some(rest.strip_suffix("/invocations").unwrap_or(rest).to_owned())
}

/// Cognito and Lambda authorizers.
#[async_trait::async_trait]
pub trait Authorizers: Send + Sync {
    /// A Cognito or Lambda authorizer, found by name; returns its id. Settings that
    /// API Gateway can patch (TTL, identity source, function) are patched in place; a
    /// new type or new user pools make a new authorizer under the name, with the old
    /// one set aside until [`Authorizers::delete_authorizers`] (a method still uses it).
    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError>;
    /// Deletes the authorizers named `name`, and those a replacement set aside
    /// (`name~<id>`), except `keep`. With `keep`, one still referenced by a method is
    /// left for a later pass; without, that is an error. Returns what was deleted.
    async fn delete_authorizers(
        &self,
        api_id: &str,
        name: &str,
        keep: Option<&str>,
    ) -> Result<Vec<DeletedAuthorizer>, AwsError>;
}

impl ApiGatewayRestApis {
    async fn authorizers(
        &self,
        api_id: &str,
    ) -> Result<Vec<aws_sdk_apigateway::types::Authorizer>, AwsError> {
        Ok(self
            .caller
            .call(
                APIGW,
                "GetAuthorizers",
                &format!("/restapis/{api_id}/authorizers"),
                || {
                    self.apigateway
                        .get_authorizers()
                        .rest_api_id(api_id)
                        .limit(500)
                        .send()
                },
            )
            .await?
            .items
            .unwrap_or_default())
    }

    /// A new authorizer `name` of `shape`; returns its id.
    async fn create_authorizer(
        &self,
        api_id: &str,
        name: &str,
        shape: &AuthorizerShape,
    ) -> Result<String, AwsError> {
        self.caller
            .call(
                APIGW,
                "CreateAuthorizer",
                &format!("/restapis/{api_id}/authorizers {name}"),
                || {
                    self.apigateway
                        .create_authorizer()
                        .rest_api_id(api_id)
                        .name(name)
                        .r#type(shape.kind.clone())
                        .set_provider_arns(
                            (!shape.providers.is_empty()).then(|| shape.providers.clone()),
                        )
                        .set_authorizer_uri(shape.uri.clone())
                        .identity_source(&shape.identity)
                        .set_authorizer_result_ttl_in_seconds(shape.ttl)
                        .send()
                },
            )
            .await?
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateAuthorizer", "no authorizer id"))
    }
}

#[async_trait::async_trait]
impl Authorizers for ApiGatewayRestApis {
    async fn ensure_authorizer(
        &self,
        api_id: &str,
        spec: &AuthorizerSpec,
    ) -> Result<String, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let existing = self
            .authorizers(api_id)
            .await?
            .into_iter()
            .find(|a| a.name.as_deref() == Some(spec.name()));
        let desired = AuthorizerShape::of(spec);
        if let Some(current) = existing {
            let id = current
                .id
                .clone()
                .ok_or_else(|| AwsError::unexpected(APIGW, "GetAuthorizers", "no authorizer id"))?;
            match authorizer_change(&AuthorizerShape::from_aws(&current), &desired) {
                AuthorizerChange::None => return Ok(id),
                AuthorizerChange::Patch(ops) => {
                    self.caller
                        .call(
                            APIGW,
                            "UpdateAuthorizer",
                            &format!("/restapis/{api_id}/authorizers/{id}"),
                            || {
                                self.apigateway
                                    .update_authorizer()
                                    .rest_api_id(api_id)
                                    .authorizer_id(&id)
                                    .set_patch_operations(Some(ops.clone()))
                                    .send()
                            },
                        )
                        .await?;
                    return Ok(id);
                }
                AuthorizerChange::Replace => {
                    // A method still points at it, so it cannot be deleted yet (409):
                    // it steps aside under another name, the new one takes the name,
                    // the route is re-pointed, and then `delete_authorizers` removes it.
                    let aside = replaced_name(spec.name(), &id);
                    self.caller
                        .call(
                            APIGW,
                            "UpdateAuthorizer",
                            &format!("/restapis/{api_id}/authorizers/{id}"),
                            || {
                                self.apigateway
                                    .update_authorizer()
                                    .rest_api_id(api_id)
                                    .authorizer_id(&id)
                                    .patch_operations(replace("/name".into(), aside.clone()))
                                    .send()
                            },
                        )
                        .await?;
                }
            }
        }
        self.create_authorizer(api_id, spec.name(), &desired).await
    }

    async fn delete_authorizers(
        &self,
        api_id: &str,
        name: &str,
        keep: Option<&str>,
    ) -> Result<Vec<DeletedAuthorizer>, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let authorizers = match self.authorizers(api_id).await {
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            other => other?,
        };
        let mut deleted = Vec::new();
        for authorizer in authorizers {
            let (Some(id), Some(this)) = (authorizer.id.clone(), authorizer.name.as_deref()) else {
                continue;
            };
            let ours = this == name || this.starts_with(&replaced_name(name, ""));
            if !ours || keep == Some(id.as_str()) {
                continue;
            }
            let result = self
                .caller
                .call(
                    APIGW,
                    "DeleteAuthorizer",
                    &format!("/restapis/{api_id}/authorizers/{id}"),
                    || {
                        self.apigateway
                            .delete_authorizer()
                            .rest_api_id(api_id)
                            .authorizer_id(&id)
                            .send()
                    },
                )
                .await;
            match result {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                // Still referenced by a method: the route is re-pointed first.
                Err(AwsError::Conflict { .. }) if keep.is_some() => continue,
                Err(e) => return Err(e),
            }
            deleted.push(DeletedAuthorizer {
                id,
                function_arn: authorizer
                    .authorizer_uri
                    .as_deref()
                    .and_then(function_of_authorizer_uri),
            });
        }
        Ok(deleted)
    }
}
