//! [`ApiKeys`]: a route's API key and the usage plan that binds it to the stage.
//! Both are account-level objects that outlive the API, so they are tagged and
//! deleted with the Webhook.

use aws_sdk_apigateway::types::{ApiKey, ApiStage, Op, PatchOperation, UsagePlan};
use std::collections::HashMap;

use super::{APIGW, ApiGatewayRestApis};
use crate::aws::error::gone_is_fine;
use crate::aws::{AwsError, OWNER_TAG, Owner};

/// API keys and the usage plans that bind them to a stage.
#[async_trait::async_trait]
pub trait ApiKeys: Send + Sync {
    /// An API key with this value, enabled, in a usage plan for the API's stage.
    async fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<String, AwsError>;
    /// Deletes our API key of this name and the usage plans it is in (both outlive
    /// the API otherwise: they are account-level objects).
    async fn delete_api_key(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
}

impl ApiGatewayRestApis {
    /// The API keys named `name` (`GetApiKeys` matches names by prefix).
    async fn api_keys_named(
        &self,
        name: &str,
        include_values: bool,
    ) -> Result<Vec<ApiKey>, AwsError> {
        Ok(self
            .caller
            .call(APIGW, "GetApiKeys", &format!("/apikeys {name}"), || {
                self.apigateway
                    .get_api_keys()
                    .name_query(name)
                    .include_values(include_values)
                    .limit(500)
                    .send()
            })
            .await?
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k.name.as_deref() == Some(name))
            .collect())
    }

    /// The usage plans an API key belongs to.
    async fn usage_plans_of(&self, key_id: &str) -> Result<Vec<UsagePlan>, AwsError> {
        Ok(self
            .caller
            .call(
                APIGW,
                "GetUsagePlans",
                &format!("/usageplans of /apikeys/{key_id}"),
                || {
                    self.apigateway
                        .get_usage_plans()
                        .key_id(key_id)
                        .limit(500)
                        .send()
                },
            )
            .await?
            .items
            .unwrap_or_default())
    }

    /// Our key `name` with `value`, enabled: kept, or created (after deleting our
    /// stale one, since a key's value cannot change: a rotated Secret means a new key).
    async fn ensure_key(&self, name: &str, value: &str, owner: &Owner) -> Result<String, AwsError> {
        let ours = self
            .api_keys_named(name, true)
            .await?
            .into_iter()
            .find(|k| owned_by(k.tags.as_ref(), owner));
        if let Some(key) = &ours
            && key.value.as_deref() == Some(value)
            && key.enabled
        {
            return key
                .id
                .clone()
                .ok_or_else(|| AwsError::unexpected(APIGW, "GetApiKeys", "no key id"));
        }
        if let Some(old) = ours.and_then(|k| k.id) {
            self.caller
                .call(APIGW, "DeleteApiKey", &format!("/apikeys/{old}"), || {
                    self.apigateway.delete_api_key().api_key(&old).send()
                })
                .await?;
        }
        self.caller
            .call(APIGW, "CreateApiKey", &format!("/apikeys {name}"), || {
                self.apigateway
                    .create_api_key()
                    .name(name)
                    .value(value)
                    .enabled(true)
                    .set_tags(Some(owner.tags().into_iter().collect()))
                    .send()
            })
            .await?
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateApiKey", "no key id"))
    }

    /// A usage plan `name` for the API's stage holding the key, unless the key is in
    /// one already.
    async fn ensure_in_plan(
        &self,
        key_id: &str,
        name: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<(), AwsError> {
        let plans = self.usage_plans_of(key_id).await?;
        let in_plan = plans.iter().any(|p| {
            p.api_stages.as_ref().is_some_and(|stages| {
                stages.iter().any(|s| {
                    s.api_id.as_deref() == Some(api_id) && s.stage.as_deref() == Some(stage)
                })
            })
        });
        if in_plan {
            return Ok(());
        }
        let plan = self
            .caller
            .call(
                APIGW,
                "CreateUsagePlan",
                &format!("/usageplans {name}"),
                || {
                    self.apigateway
                        .create_usage_plan()
                        .name(name)
                        .api_stages(ApiStage::builder().api_id(api_id).stage(stage).build())
                        .set_tags(Some(owner.tags().into_iter().collect()))
                        .send()
                },
            )
            .await?
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateUsagePlan", "no plan id"))?;
        self.caller
            .call(
                APIGW,
                "CreateUsagePlanKey",
                &format!("/usageplans/{plan}/keys/{key_id}"),
                || {
                    self.apigateway
                        .create_usage_plan_key()
                        .usage_plan_id(&plan)
                        .key_id(key_id)
                        .key_type("API_KEY")
                        .send()
                },
            )
            .await?;
        Ok(())
    }

    /// Deletes one of our usage plans, detaching it from its stages first (a plan
    /// still attached to a stage cannot be deleted); already gone is fine.
    async fn delete_usage_plan(&self, plan: UsagePlan) -> Result<(), AwsError> {
        let Some(plan_id) = plan.id else {
            return Ok(());
        };
        let detach: Vec<PatchOperation> = plan
            .api_stages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| Some(format!("{}:{}", s.api_id?, s.stage?)))
            .map(|stage| {
                PatchOperation::builder()
                    .op(Op::Remove)
                    .path("/apiStages")
                    .value(stage)
                    .build()
            })
            .collect();
        if !detach.is_empty() {
            gone_is_fine(
                self.caller
                    .call(
                        APIGW,
                        "UpdateUsagePlan",
                        &format!("/usageplans/{plan_id}"),
                        || {
                            self.apigateway
                                .update_usage_plan()
                                .usage_plan_id(&plan_id)
                                .set_patch_operations(Some(detach.clone()))
                                .send()
                        },
                    )
                    .await,
            )?;
        }
        gone_is_fine(
            self.caller
                .call(
                    APIGW,
                    "DeleteUsagePlan",
                    &format!("/usageplans/{plan_id}"),
                    || {
                        self.apigateway
                            .delete_usage_plan()
                            .usage_plan_id(&plan_id)
                            .send()
                    },
                )
                .await,
        )
    }
}

/// Whether an account-level object's tags name `owner`.
fn owned_by(tags: Option<&HashMap<String, String>>, owner: &Owner) -> bool {
    tags.and_then(|t| t.get(OWNER_TAG)) == Some(&owner.uid)
}

#[async_trait::async_trait]
impl ApiKeys for ApiGatewayRestApis {
    async fn ensure_api_key(
        &self,
        name: &str,
        value: &str,
        api_id: &str,
        stage: &str,
        owner: &Owner,
    ) -> Result<String, AwsError> {
        let key_id = self.ensure_key(name, value, owner).await?;
        self.ensure_in_plan(&key_id, name, api_id, stage, owner)
            .await?;
        Ok(key_id)
    }

    async fn delete_api_key(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        for key in self.api_keys_named(name, false).await? {
            let (true, Some(key_id)) = (owned_by(key.tags.as_ref(), owner), key.id) else {
                continue;
            };
            for plan in self.usage_plans_of(&key_id).await? {
                if owned_by(plan.tags.as_ref(), owner) {
                    self.delete_usage_plan(plan).await?;
                }
            }
            gone_is_fine(
                self.caller
                    .call(APIGW, "DeleteApiKey", &format!("/apikeys/{key_id}"), || {
                        self.apigateway.delete_api_key().api_key(&key_id).send()
                    })
                    .await,
            )?;
        }
        Ok(())
    }
}
