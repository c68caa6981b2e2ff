//! A gateway's deletion (the finalizer's Cleanup): it waits for its Webhooks to go,
//! then deletes records (they point at the domain), the domain, and only then the
//! API; the certificates wait for ACM to let go of them (10–20 minutes after
//! DeleteDomainName); the log group and role depend on nothing and go regardless.
//! The finalizer stays until everything is gone: each pass retries what is left.

use hookline_crds::conditions::READY;
use hookline_crds::reasons::{DELETING, IN_USE};
use hookline_crds::{DeletionPolicy, WebhookGateway, WebhookGatewayStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::super::context::Context;
use super::super::{Error, Result, status};
use super::attached;
use super::plan::{owner_record, validation_records};
use crate::aws::AwsError;
use crate::aws::dns::Value;
use crate::conditions::Report;
use crate::desired::gateway_owner;
use crate::names;

/// Says in `Ready` what deletion waits for, and returns the reconcile's error.
async fn blocked(
    ctx: &Context,
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    report: Report,
    error: String,
) -> Result<Action> {
    let mut status = gateway.status.clone().unwrap_or_default();
    status::merge_reports(ctx, gateway, &mut status.conditions, &[report], "").await;
    status::write(api, gateway, gateway.status.as_ref(), &status).await?;
    Err(Error::Blocked(error))
}

/// Deletes what the gateway made in AWS, once no Webhook is attached.
pub async fn cleanup(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
) -> Result<Action> {
    let name = gateway.name_any();
    if let Some(uid) = &gateway.metadata.uid {
        ctx.steady.forget(uid);
    }
    let in_use = attached(ctx, &name).await?;
    if !in_use.is_empty() {
        let names: Vec<String> = in_use
            .iter()
            .map(|w| format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any()))
            .collect();
        let report = Report::failed(
            READY,
            IN_USE,
            format!(
                "waiting for attached Webhooks to be deleted: {}",
                names.join(", ")
            ),
        );
        let error = format!("gateway {name} still has {} webhook(s)", names.len());
        return blocked(ctx, api, gateway, report, error).await;
    }
    if gateway.spec.deletion_policy == DeletionPolicy::Retain {
        tracing::info!(gateway = %name, "deletion policy Retain: AWS objects stay");
        return Ok(Action::await_change());
    }
    let in_use = delete_all(ctx, gateway).await?;
    if !in_use.is_empty() {
        let report = Report::failed(
            READY,
            DELETING,
            format!(
                "everything else is deleted; waiting for ACM to release {} (it stays in use \
                 for up to 20 minutes after the custom domain is deleted)",
                in_use.join(", ")
            ),
        );
        let error = format!(
            "gateway {name}: certificate still in use: {}",
            in_use.join(", ")
        );
        return blocked(ctx, api, gateway, report, error).await;
    }
    tracing::info!(gateway = %name, "deleted the gateway's AWS objects");
    Ok(Action::await_change())
}

/// Deletes everything in dependency order, each part tried once per pass; returns
/// the certificates ACM still holds, or the first failure.
async fn delete_all(ctx: &Context, gateway: &WebhookGateway) -> Result<Vec<String>> {
    let name = gateway.name_any();
    let owner = gateway_owner(gateway);
    let aws = &ctx.aws;
    let status = gateway.status.clone().unwrap_or_default();
    let certificates: Vec<&String> = status
        .certificate_arn
        .iter()
        .chain(&status.retired_certificate_arns)
        .collect();

    let mut first_error: Option<AwsError> = None;
    let mut note = |result: Result<(), AwsError>| match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(gateway = %name, error = %e, "cleanup step failed; retried");
            first_error.get_or_insert(e);
            false
        }
    };
    let records_gone = match &status.hosted_zone_id {
        Some(zone) => note(delete_records(ctx, gateway, zone, &status, &certificates).await),
        None => true,
    };
    let domain_gone = records_gone
        && note(
            aws.apis
                .delete_domain(
                    &gateway.spec.hostname,
                    &owner,
                    status.regional_domain_name.as_deref(),
                )
                .await,
        );
    let mut in_use = Vec::new();
    if domain_gone {
        for arn in &certificates {
            match aws.certificates.delete(arn, &owner).await {
                Ok(()) => {}
                Err(AwsError::Conflict { message, .. }) => {
                    in_use.push(format!("{arn} ({message})"))
                }
                Err(e) => {
                    note(Err(e));
                }
            }
        }
        if let Some(id) = &status.rest_api_id {
            note(aws.apis.delete_api(id, &owner).await);
        }
    }
    note(
        aws.logs
            .delete(
                &names::gateway_log_group(&ctx.settings.name_prefix, &name),
                &owner,
            )
            .await,
    );
    note(
        aws.roles
            .delete(
                &names::gateway_role(&ctx.settings.name_prefix, &name),
                &owner,
            )
            .await,
    );
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(in_use),
    }
}

/// The gateway's records: ownership TXT, validation CNAMEs of its certificates, and
/// aliases to its own regional domain (never someone else's).
async fn delete_records(
    ctx: &Context,
    gateway: &WebhookGateway,
    zone: &str,
    status: &WebhookGatewayStatus,
    certificates: &[&String],
) -> Result<(), AwsError> {
    let aws = &ctx.aws;
    let mut records = vec![owner_record(&ctx.cluster, gateway)];
    for arn in certificates {
        match aws.certificates.describe(arn).await {
            Ok(certificate) => {
                for record in validation_records(&certificate) {
                    if !records.contains(&record) {
                        records.push(record);
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    if let Ok(existing) = aws.dns.records(zone, &gateway.spec.hostname).await {
        let ours = status.regional_domain_name.as_deref().unwrap_or_default();
        records.extend(existing.into_iter().filter(|r| matches!(&r.value, Value::Alias { target, .. } if crate::aws::dns::fqdn(target) == crate::aws::dns::fqdn(ours))));
    }
    aws.dns.delete_records(zone, &records).await
}
