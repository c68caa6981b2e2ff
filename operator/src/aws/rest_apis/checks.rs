//! [`Checks`]: one read each, whether a route, the stage or the custom domain is still
//! what the last full pass left. They write nothing and decide with the same pure
//! diffs the `ensure_*` calls use ([`super::diff`]), so "matches" here means "the
//! `ensure_*` would write nothing". A steady-state resync makes these reads instead
//! of the `ensure_*` (see `controller::steady`).

use super::ApiGatewayRestApis;
use super::diff::{
    HandshakeChange, domain_owned, handshake_change, integration_matches,
    integration_response_matches, method_patch_operations, stage_patch_operations,
};
use super::markers::{has_handshake, read_marker};
use super::routes::integration_spec;
use crate::aws::templates::{ROUTE_RESPONSES, handshake_template};
use crate::aws::{AwsError, DomainSpec, RouteSpec, StageSpec};

/// Single-read checks of what `ensure_route`, `ensure_stage` and `ensure_domain` make.
#[async_trait::async_trait]
pub trait Checks: Send + Sync {
    /// Whether the `POST` method on `resource_id` is `spec` (authorization, the SQS
    /// integration and every response), from one `GetMethod`; false when it is gone.
    /// A route with a handshake costs a second `GetMethod`, of its `GET`.
    async fn route_matches(
        &self,
        api_id: &str,
        resource_id: &str,
        spec: &RouteSpec,
    ) -> Result<bool, AwsError>;
    /// Whether the stage exists, serves a deployment and has `spec`'s settings, from
    /// one `GetStage` (which also proves the REST API exists); false when it is gone.
    async fn stage_matches(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError>;
    /// Whether the custom domain exists, is ours and carries `spec`'s certificate,
    /// from one `GetDomainName`; false when it is gone.
    async fn domain_matches(&self, spec: &DomainSpec) -> Result<bool, AwsError>;
}

#[async_trait::async_trait]
impl Checks for ApiGatewayRestApis {
    async fn route_matches(
        &self,
        api_id: &str,
        resource_id: &str,
        spec: &RouteSpec,
    ) -> Result<bool, AwsError> {
        let Some(method) = self.get_method(api_id, resource_id, "POST").await? else {
            return Ok(false);
        };
        let integration = method.method_integration.as_ref();
        let method_responses = method.method_responses.clone().unwrap_or_default();
        let integration_responses = integration
            .and_then(|i| i.integration_responses.clone())
            .unwrap_or_default();
        let post_matches = method_patch_operations(&method, &spec.auth).is_empty()
            // Without a marker the route's liveness cannot be told: ensure_route adds one.
            && read_marker(method.operation_name.as_deref()).is_some()
            && integration_matches(integration, &integration_spec(spec)?)
            && ROUTE_RESPONSES.iter().all(|response| {
                method_responses.contains_key(response.status)
                    && integration_response_matches(
                        integration_responses.get(response.status),
                        response,
                    )
            });
        if !post_matches
            || has_handshake(method.operation_name.as_deref()) != spec.handshake.is_some()
        {
            return Ok(false);
        }
        let Some(handshake) = &spec.handshake else {
            return Ok(true);
        };
        let Ok(template) = handshake_template(handshake) else {
            return Ok(false);
        };
        let get = self.get_method(api_id, resource_id, "GET").await?;
        Ok(handshake_change(get.as_ref(), &template) == HandshakeChange::None)
    }

    async fn stage_matches(&self, api_id: &str, spec: &StageSpec) -> Result<bool, AwsError> {
        let stage = match self.get_stage(api_id, &spec.name).await {
            Ok(stage) => stage,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(stage.deployment_id.is_some()
            && stage_patch_operations(
                &stage.method_settings.unwrap_or_default(),
                stage.access_log_settings.as_ref(),
                spec,
            )
            .is_empty())
    }

    async fn domain_matches(&self, spec: &DomainSpec) -> Result<bool, AwsError> {
        let Some(domain) = self.get_domain(&spec.domain).await? else {
            return Ok(false);
        };
        // Not ours any more is drift too: the full pass reports it.
        let owned = domain_owned(
            &spec.owner,
            &domain.tags.clone().unwrap_or_default(),
            domain.regional_domain_name.as_deref(),
            spec.created.as_deref(),
            "GetDomainName",
            &spec.domain,
        )
        .is_ok();
        Ok(owned
            && domain.regional_certificate_arn.as_deref() == Some(spec.certificate_arn.as_str())
            && domain.regional_domain_name.is_some()
            && domain.regional_domain_name == spec.created)
    }
}
