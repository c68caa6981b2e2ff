//! [`Stages`]: deployments and the gateway's stage (its throttles and access logs),
//! and whether the stage serves a route's last change ([`super::markers`]).

use std::sync::PoisonError;

use super::diff::stage_patch_operations;
use super::markers::{deployment_contains, marker_text, new_marker, read_marker};
use super::{APIGW, ApiGatewayRestApis};
use crate::aws::AwsError;

/// What the stage should be.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    /// Stage name.
    pub name: String,
    /// Stage-wide throttling: requests per second.
    pub rate_limit: f64,
    /// Stage-wide throttling: burst.
    pub burst_limit: i32,
    /// Per-route overrides: (resource path, rate, burst).
    pub route_throttling: Vec<(String, f64, i32)>,
    /// CloudWatch Logs group ARN for access logs, and the line format.
    pub access_log: Option<(String, String)>,
}

/// Deployments and the stage: what is live, throttles, access logs.
#[async_trait::async_trait]
pub trait Stages: Send + Sync {
    /// Whether `stage` serves a deployment made after the last change of the route
    /// on `resource_id` (false when the stage does not exist yet). Read from AWS, so
    /// that a change whose deployment never happened (the operator stopped in
    /// between) is still found after a restart.
    async fn route_is_live(
        &self,
        api_id: &str,
        resource_id: &str,
        stage: &str,
    ) -> Result<bool, AwsError>;
    /// Deploys the API's current state to `stage` (creating the stage).
    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError>;
    /// Throttling and access logs of an existing stage; true if anything changed.
    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError>;
}

impl ApiGatewayRestApis {
    /// The stage, as `GetStage` answers (the liveness check, the stage's ensure and
    /// the steady-state check all read it).
    pub(super) async fn get_stage(
        &self,
        api_id: &str,
        stage: &str,
    ) -> Result<aws_sdk_apigateway::operation::get_stage::GetStageOutput, AwsError> {
        self.caller
            .call(
                APIGW,
                "GetStage",
                &format!("/restapis/{api_id}/stages/{stage}"),
                || {
                    self.apigateway
                        .get_stage()
                        .rest_api_id(api_id)
                        .stage_name(stage)
                        .send()
                },
            )
            .await
    }

    /// The marker of a deployment (`None`: not made by Hookline).
    async fn deployment_marker(
        &self,
        api_id: &str,
        deployment_id: &str,
    ) -> Result<Option<u64>, AwsError> {
        let key = (api_id.to_owned(), deployment_id.to_owned());
        if let Some(known) = self
            .deployment_markers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(*known);
        }
        let deployment = self
            .caller
            .call(
                APIGW,
                "GetDeployment",
                &format!("/restapis/{api_id}/deployments/{deployment_id}"),
                || {
                    self.apigateway
                        .get_deployment()
                        .rest_api_id(api_id)
                        .deployment_id(deployment_id)
                        .send()
                },
            )
            .await?;
        let marker = read_marker(deployment.description.as_deref());
        self.deployment_markers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, marker);
        Ok(marker)
    }
}

#[async_trait::async_trait]
impl Stages for ApiGatewayRestApis {
    async fn route_is_live(
        &self,
        api_id: &str,
        resource_id: &str,
        stage: &str,
    ) -> Result<bool, AwsError> {
        let Some(method) = self.get_method(api_id, resource_id, "POST").await? else {
            return Ok(false);
        };
        let changed = read_marker(method.operation_name.as_deref());
        let deployment = match self.get_stage(api_id, stage).await {
            Ok(stage) => stage.deployment_id,
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let Some(deployment) = deployment else {
            return Ok(false);
        };
        let deployed = self.deployment_marker(api_id, &deployment).await?;
        Ok(deployment_contains(deployed, changed))
    }

    async fn deploy(&self, api_id: &str, stage: &str) -> Result<String, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let marker = new_marker();
        let deployment = self
            .caller
            .call(
                APIGW,
                "CreateDeployment",
                &format!("/restapis/{api_id}/deployments to stage {stage}"),
                || {
                    self.apigateway
                        .create_deployment()
                        .rest_api_id(api_id)
                        .stage_name(stage)
                        .description(marker_text(marker))
                        .send()
                },
            )
            .await?;
        if let Some(id) = &deployment.id {
            self.deployment_markers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((api_id.to_owned(), id.clone()), Some(marker));
        }
        deployment
            .id
            .ok_or_else(|| AwsError::unexpected(APIGW, "CreateDeployment", "no deployment id"))
    }

    async fn ensure_stage(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
        let _mutation = self.mutating(api_id).await;
        let stage = self.get_stage(api_id, &spec.name).await?;
        let ops = stage_patch_operations(
            &stage.method_settings.unwrap_or_default(),
            stage.access_log_settings.as_ref(),
            spec,
        );
        if ops.is_empty() {
            return Ok(false);
        }
        self.caller
            .call(
                APIGW,
                "UpdateStage",
                &format!("/restapis/{api_id}/stages/{}", spec.name),
                || {
                    self.apigateway
                        .update_stage()
                        .rest_api_id(api_id)
                        .stage_name(&spec.name)
                        .set_patch_operations(Some(ops.clone()))
                        .send()
                },
            )
            .await?;
        Ok(true)
    }
}
