//! The steady-state resync of a gateway (see [`crate::controller::steady`]): when
//! the last full pass left every part ready and the plan is the same, two reads
//! instead of the full pass: `GetStage` (the REST API and its stage exist, serve a
//! deployment, and carry the throttles and the access-log destination) and
//! `GetDomainName` (the custom domain exists, is ours and carries the certificate).
//! Those two carry what every Webhook's traffic passes through; a miss in either
//! means the full pass, in the same reconcile.
//!
//! Left to the audit (the first pass after a start, then every audit interval):
//! the IAM role and its policy, the log group, the certificate's own status (ACM
//! renews it; a replacement is needed only when it fails), the base path mapping,
//! the Route 53 records, the resource policy as AWS holds it, and the account's
//! CloudWatch role.

use hookline_crds::{WebhookGateway, WebhookGatewayStatus};

use super::super::context::Context;
use super::super::steady::fingerprint;
use super::plan::Plan;
use crate::aws::{AwsError, StageSpec};

/// What a full pass's result is fingerprinted with: the plan and every id the pass
/// wrote to status (the steady reads name them), at the gateway's generation.
pub fn applied_fingerprint(
    generation: Option<i64>,
    status: Option<&WebhookGatewayStatus>,
    plan: &Plan,
) -> u64 {
    let status = status.cloned().unwrap_or_default();
    fingerprint(&(
        plan,
        generation,
        status.observed_generation,
        &status.rest_api_id,
        &status.root_resource_id,
        &status.stage_name,
        &status.role_arn,
        &status.certificate_arn,
        &status.regional_domain_name,
        &status.hosted_zone_id,
        &status.url,
        status.attached_webhooks,
    ))
}

/// Whether the pass may end after the two reads: the last full pass proved this
/// plan, nothing waits to be deployed, the resource policy was last seen as planned,
/// and both reads match. `fingerprint` is [`applied_fingerprint`] of the gateway as
/// it is now. An AWS failure of either read is the full pass's to report.
pub async fn holds(ctx: &Context, gateway: &WebhookGateway, plan: &Plan, fingerprint: u64) -> bool {
    let Some(uid) = gateway.metadata.uid.as_deref() else {
        return false;
    };
    let Some(verified) = ctx.steady.trusted(uid, fingerprint) else {
        return false;
    };
    let Some(status) = &gateway.status else {
        return false;
    };
    let (Some(api_id), Some(certificate_arn), Some(_)) = (
        status.rest_api_id.as_deref(),
        status.certificate_arn.as_deref(),
        status.regional_domain_name.as_deref(),
    ) else {
        return false;
    };
    if ctx.deploys.is_pending(api_id) || ctx.known_policy(api_id) != Some(plan.policy.clone()) {
        return false;
    }
    let stage = StageSpec {
        access_log: verified.evidence.access_log.clone(),
        ..plan.stage.clone()
    };
    let domain = plan.domain(
        gateway,
        certificate_arn,
        api_id,
        status.regional_domain_name.clone(),
    );
    let apis = &ctx.aws.apis;
    let checked: Result<bool, AwsError> = async {
        Ok(apis.stage_matches(api_id, &stage).await? && apis.domain_matches(&domain).await?)
    }
    .await;
    match checked {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!("drift in the stage or the custom domain: full pass");
            false
        }
        Err(e) => {
            tracing::info!(error = %e, "steady-state read failed: full pass");
            false
        }
    }
}
