//! Step 1 of a gateway reconcile: every read into one [`Observed`] value: the
//! Webhooks (for the index), the hosted zone, the hostname's ownership record, the
//! account's CloudWatch role for API Gateway (when access logs are on) and the
//! certificate the status names. AWS reads that fail are kept as values: a part that
//! cannot be read fails its own condition, not the pass.

use hookline_crds::{Webhook, WebhookGateway};
use std::sync::Arc;
use tokio::time::Instant;

use super::super::Result;
use super::super::context::Context;
use crate::aws::dns::Record;
use crate::aws::{AwsError, Certificate};
use crate::names;

/// What the cluster and AWS say, read once per pass.
#[derive(Debug, Clone)]
pub struct Observed {
    /// When the Webhooks were read: deployments asked for before it are covered.
    pub read_at: Instant,
    /// Every Webhook the operator manages.
    pub webhooks: Vec<Arc<Webhook>>,
    /// The hosted zone's id.
    pub zone: Result<String, AwsError>,
    /// The records at the hostname's ownership name; `None` when the zone is unknown.
    pub owner_records: Option<Result<Vec<Record>, AwsError>>,
    /// API Gateway's CloudWatch Logs role in the account; `None` when logs are off.
    pub cloudwatch_role: Option<Result<Option<String>, AwsError>>,
    /// The certificate whose ARN the status holds (`Ok(None)`: none, or gone).
    pub certificate: Result<Option<Certificate>, AwsError>,
}

/// The Webhooks (the index's input, all the plan reads), and when they were read.
pub async fn webhooks(ctx: &Context) -> Result<(Instant, Vec<Arc<Webhook>>)> {
    let read_at = Instant::now();
    Ok((read_at, ctx.indexed_webhooks().await?))
}

/// Reads from AWS what the full pass for `gateway` needs, next to the Webhooks read
/// at `read_at` ([`webhooks`]).
pub async fn observe(
    ctx: &Context,
    gateway: &WebhookGateway,
    (read_at, webhooks): (Instant, Vec<Arc<Webhook>>),
) -> Observed {
    let spec = &gateway.spec;
    let aws = &ctx.aws;
    let zone = match &spec.hosted_zone.id {
        Some(id) => Ok(id.trim_start_matches("/hostedzone/").to_owned()),
        None => {
            aws.dns
                .zone_by_name(spec.hosted_zone.name.as_deref().unwrap_or_default())
                .await
        }
    };
    let owner_records = match &zone {
        Ok(zone) => Some(
            aws.dns
                .records(zone, &names::owner_record_name(&spec.hostname))
                .await,
        ),
        Err(_) => None,
    };
    let cloudwatch_role = if spec.access_logs.enabled {
        Some(aws.account.cloudwatch_role_arn().await)
    } else {
        None
    };
    let certificate = match gateway
        .status
        .as_ref()
        .and_then(|s| s.certificate_arn.as_ref())
    {
        Some(arn) => match aws.certificates.describe(arn).await {
            Ok(certificate) => Ok(Some(certificate)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    };
    Observed {
        read_at,
        webhooks,
        zone,
        owner_records,
        cloudwatch_role,
        certificate,
    }
}
