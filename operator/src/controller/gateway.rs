//! The `WebhookGateway` reconciler: hosted zone → ownership record → role → log
//! group → REST API + stage → certificate and its validation records → (once
//! issued) custom domain → alias records → status.

use aws_sdk_route53::types::RrType;
use hookline_crds::conditions::{API_READY, CERTIFICATE_READY, DNS_READY, READY};
use hookline_crds::reasons::{
    AWS_ERROR, HOSTNAME_CONFLICT, IN_USE, INVALID_SPEC, PROGRESSING, RECONCILED,
};
use hookline_crds::{DeletionPolicy, Webhook, WebhookGateway, WebhookGatewayStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use std::sync::Arc;

use super::context::Context;
use super::{Error, FINALIZER, Result, status};
use crate::aws::certificates::Status as CertStatus;
use crate::aws::dns::{Record, Value};
use crate::aws::logs::ACCESS_LOG_FORMAT;
use crate::aws::{
    ApiRef, ApiSpec, AwsError, CertificateSpec, Certificates, Dns, DomainSpec, LogGroups, RestApis,
    RoleSpec, Roles, StageSpec,
};
use crate::conditions::Report;
use crate::desired::gateway_owner;
use crate::names;

/// Reconciles one gateway; the only top-level action is the finalizer.
#[tracing::instrument(skip(gateway, ctx), fields(gateway = %gateway.name_any()))]
pub async fn reconcile(gateway: Arc<WebhookGateway>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<WebhookGateway> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, gateway, |event| async {
        match event {
            Finalizer::Apply(gateway) => apply(&api, &gateway, &ctx).await,
            Finalizer::Cleanup(gateway) => cleanup(&api, &gateway, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The TXT value that says this cluster's gateway owns the hostname.
fn owner_value(ctx: &Context, gateway: &WebhookGateway) -> String {
    format!(
        "hookline cluster={} gateway={} uid={}",
        ctx.cluster,
        gateway.name_any(),
        gateway.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn owner_record(ctx: &Context, gateway: &WebhookGateway) -> Record {
    Record::txt(
        &names::owner_record_name(&gateway.spec.hostname),
        &owner_value(ctx, gateway),
        300,
    )
}

fn alias_records(hostname: &str, target: &str, zone_id: &str) -> Vec<Record> {
    [RrType::A, RrType::Aaaa]
        .into_iter()
        .map(|kind| Record {
            name: hostname.to_owned(),
            kind,
            value: Value::Alias {
                target: target.to_owned(),
                zone_id: zone_id.to_owned(),
            },
        })
        .collect()
}

fn validation_records(certificate: &crate::aws::Certificate) -> Vec<Record> {
    certificate
        .validation_records
        .iter()
        .filter(|r| r.kind == "CNAME")
        .map(|r| Record {
            name: r.name.clone(),
            kind: RrType::Cname,
            value: Value::Plain {
                values: vec![r.value.clone()],
                ttl: 300,
            },
        })
        .collect()
}

/// A step's failure: the part's condition goes False with AWS's words.
fn aws_failure(part: &'static str, error: &AwsError) -> Report {
    let reason = if matches!(error, AwsError::NotOwned { .. }) {
        hookline_crds::reasons::NOT_OWNED
    } else {
        AWS_ERROR
    };
    Report::failed(part, reason, error.to_string())
}

async fn apply(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
) -> Result<Action> {
    let current = gateway.status.clone();
    let mut status = current.clone().unwrap_or_default();
    status.observed_generation = gateway.metadata.generation;
    let mut reports = Vec::new();
    let outcome = converge(api, gateway, ctx, &mut status, &mut reports).await;
    status::merge_reports(
        ctx,
        gateway,
        &mut status.conditions,
        &reports,
        "the gateway serves webhooks",
    )
    .await;
    status::write(api, gateway, current.as_ref(), &status).await?;
    match outcome {
        Ok(true) => Ok(Action::requeue(ctx.timing.resync)),
        Ok(false) => Ok(Action::requeue(ctx.timing.pending)),
        Err(e) => Err(e),
    }
}

/// Runs the steps, recording a report per part; true when everything is in place.
async fn converge(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
    status: &mut WebhookGatewayStatus,
    reports: &mut Vec<Report>,
) -> Result<bool> {
    let spec = &gateway.spec;
    let name = gateway.name_any();
    let owner = gateway_owner(gateway);
    let aws = &ctx.aws;

    // Where the records go.
    let zone = match &spec.hosted_zone.id {
        Some(id) => id.trim_start_matches("/hostedzone/").to_owned(),
        None => match aws
            .dns
            .zone_by_name(spec.hosted_zone.name.as_deref().unwrap_or_default())
            .await
        {
            Ok(zone) => zone,
            Err(e @ (AwsError::NotFound { .. } | AwsError::Conflict { .. })) => {
                reports.push(Report::failed(DNS_READY, INVALID_SPEC, e.to_string()));
                return Ok(false);
            }
            Err(e) => {
                reports.push(aws_failure(DNS_READY, &e));
                return Err(e.into());
            }
        },
    };
    status.hosted_zone_id = Some(zone.clone());

    // Nothing of another owner is touched: a hostname claimed by someone else stops here.
    let owner_name = names::owner_record_name(&spec.hostname);
    let ours = owner_record(ctx, gateway);
    let existing = aws
        .dns
        .records(&zone, &owner_name)
        .await
        .inspect_err(|e| reports.push(aws_failure(DNS_READY, e)))?;
    if let Some(other) = existing
        .iter()
        .find(|r| r.kind == RrType::Txt && r.value != ours.value)
    {
        let claim = match &other.value {
            Value::Plain { values, .. } => values.join(" "),
            Value::Alias { .. } => "an alias".to_owned(),
        };
        reports.push(Report::failed(
            DNS_READY,
            HOSTNAME_CONFLICT,
            format!(
                "{} is claimed by another owner ({claim}); nothing was changed",
                spec.hostname
            ),
        ));
        return Ok(false);
    }

    let role = aws
        .roles
        .ensure(&RoleSpec {
            name: names::gateway_role(&ctx.settings.name_prefix, &name),
            region: ctx.settings.region.clone(),
            queue_prefix: ctx.settings.name_prefix.clone(),
            owner: owner.clone(),
        })
        .await
        .inspect_err(|e| reports.push(aws_failure(API_READY, e)))?;
    status.role_arn = Some(role);

    let access_log = if spec.access_logs.enabled {
        let arn = aws
            .logs
            .ensure(
                &names::gateway_log_group(&ctx.settings.name_prefix, &name),
                spec.access_logs.retention_days,
                &owner,
            )
            .await
            .inspect_err(|e| reports.push(aws_failure(API_READY, e)))?;
        Some((arn, ACCESS_LOG_FORMAT.to_owned()))
    } else {
        None
    };

    let rest_api = aws
        .apis
        .ensure_api(
            &ApiSpec {
                name: names::gateway_api(&ctx.settings.name_prefix, &name),
                tags: spec.tags.clone(),
                owner: owner.clone(),
            },
            status.rest_api_id.as_deref(),
        )
        .await
        .inspect_err(|e| reports.push(aws_failure(API_READY, e)))?;
    status.rest_api_id = Some(rest_api.id.clone());
    status.root_resource_id = Some(rest_api.root_resource_id.clone());
    status.stage_name = Some(spec.stage_name.clone());
    // External ids go into status the moment they exist: a crash from here on
    // finds the API by id rather than by listing.
    status::write(api, gateway, gateway.status.as_ref(), status).await?;

    let stage = StageSpec {
        name: spec.stage_name.clone(),
        rate_limit: spec.throttling.rate_limit,
        burst_limit: spec.throttling.burst_limit,
        route_throttling: Vec::new(),
        access_log,
    };
    ensure_stage(ctx, &rest_api, &stage)
        .await
        .inspect_err(|e| reports.push(aws_failure(API_READY, e)))?;
    reports.push(Report::ok(
        API_READY,
        RECONCILED,
        format!("REST API {} stage {}", rest_api.id, spec.stage_name),
    ));

    // The certificate: the ARN in status is the cheap read; a lost one is found by tag.
    let certificate = match &status.certificate_arn {
        Some(arn) => match aws.certificates.describe(arn).await {
            Err(e) if e.is_not_found() => None,
            other => Some(other.inspect_err(|e| reports.push(aws_failure(CERTIFICATE_READY, e)))?),
        },
        None => None,
    };
    let certificate = match certificate {
        Some(certificate) => certificate,
        None => aws
            .certificates
            .ensure(&CertificateSpec {
                domain: spec.hostname.clone(),
                owner: owner.clone(),
                tags: spec.tags.clone().into_iter().collect(),
            })
            .await
            .inspect_err(|e| reports.push(aws_failure(CERTIFICATE_READY, e)))?,
    };
    if status.certificate_arn.as_deref() != Some(certificate.arn.as_str()) {
        status.certificate_arn = Some(certificate.arn.clone());
        status::write(api, gateway, None, status).await?;
    }

    let mut records = vec![ours];
    records.extend(validation_records(&certificate));
    let issued = match &certificate.status {
        CertStatus::Issued => {
            reports.push(Report::ok(
                CERTIFICATE_READY,
                RECONCILED,
                format!("certificate {} issued", certificate.arn),
            ));
            true
        }
        CertStatus::Pending => {
            reports.push(Report::failed(
                CERTIFICATE_READY,
                PROGRESSING,
                format!("waiting for ACM to validate {} through DNS", spec.hostname),
            ));
            false
        }
        CertStatus::Failed(why) => {
            reports.push(Report::failed(
                CERTIFICATE_READY,
                AWS_ERROR,
                format!("certificate {}: {why}", certificate.arn),
            ));
            false
        }
    };

    if issued {
        let target = aws
            .apis
            .ensure_domain(&DomainSpec {
                domain: spec.hostname.clone(),
                certificate_arn: certificate.arn.clone(),
                api_id: rest_api.id.clone(),
                stage: spec.stage_name.clone(),
                owner: owner.clone(),
            })
            .await
            .inspect_err(|e| reports.push(aws_failure(DNS_READY, e)))?;
        status.regional_domain_name = Some(target.regional_domain_name.clone());
        records.extend(alias_records(
            &spec.hostname,
            &target.regional_domain_name,
            &target.regional_zone_id,
        ));
    }
    aws.dns
        .ensure_records(&zone, &records)
        .await
        .inspect_err(|e| reports.push(aws_failure(DNS_READY, e)))?;
    if issued {
        reports.push(Report::ok(
            DNS_READY,
            RECONCILED,
            format!("{} points at the REST API", spec.hostname),
        ));
    } else {
        reports.push(Report::failed(
            DNS_READY,
            PROGRESSING,
            "the alias waits for the certificate".to_owned(),
        ));
    }
    status.url = Some(format!("https://{}", spec.hostname));
    status.attached_webhooks = Some(
        attached(ctx, &name)
            .await?
            .len()
            .try_into()
            .unwrap_or(i32::MAX),
    );
    Ok(issued)
}

/// The stage, deployed first if it does not exist yet.
async fn ensure_stage(ctx: &Context, api: &ApiRef, stage: &StageSpec) -> Result<(), AwsError> {
    match ctx.aws.apis.ensure_stage(&api.id, stage).await {
        Err(e) if e.is_not_found() => {
            ctx.deployer
                .deploy_after(
                    &ctx.aws.apis,
                    &api.id,
                    &stage.name,
                    tokio::time::Instant::now(),
                )
                .await?;
            ctx.aws.apis.ensure_stage(&api.id, stage).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// Webhooks whose status says they are attached to the gateway.
pub async fn attached(ctx: &Context, gateway: &str) -> Result<Vec<Webhook>> {
    Ok(ctx
        .list_webhooks()
        .await?
        .into_iter()
        .filter(|w| w.status.as_ref().and_then(|s| s.gateway.as_deref()) == Some(gateway))
        .collect())
}

async fn cleanup(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
) -> Result<Action> {
    let name = gateway.name_any();
    let in_use = attached(ctx, &name).await?;
    if !in_use.is_empty() {
        let names: Vec<String> = in_use
            .iter()
            .map(|w| format!("{}/{}", w.namespace().unwrap_or_default(), w.name_any()))
            .collect();
        let mut status = gateway.status.clone().unwrap_or_default();
        let report = Report::failed(
            READY,
            IN_USE,
            format!(
                "waiting for attached Webhooks to be deleted: {}",
                names.join(", ")
            ),
        );
        status::merge_reports(ctx, gateway, &mut status.conditions, &[report], "").await;
        status::write(api, gateway, gateway.status.as_ref(), &status).await?;
        return Err(Error::Blocked(format!(
            "gateway {name} still has {} webhook(s)",
            names.len()
        )));
    }
    if gateway.spec.deletion_policy == DeletionPolicy::Retain {
        tracing::info!(gateway = %name, "deletion policy Retain: AWS objects stay");
        return Ok(Action::await_change());
    }
    let owner = gateway_owner(gateway);
    let aws = &ctx.aws;
    let status = gateway.status.clone().unwrap_or_default();

    // Records first (they point at the domain), then domain, certificate, API, logs, role.
    if let Some(zone) = &status.hosted_zone_id {
        let mut records = vec![owner_record(ctx, gateway)];
        if let Some(arn) = &status.certificate_arn {
            match aws.certificates.describe(arn).await {
                Ok(certificate) => records.extend(validation_records(&certificate)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Ok(existing) = aws.dns.records(zone, &gateway.spec.hostname).await {
            // Only aliases we would have written: to this API's regional domain.
            let ours = status.regional_domain_name.as_deref().unwrap_or_default();
            records.extend(existing.into_iter().filter(|r| matches!(&r.value, Value::Alias { target, .. } if crate::aws::dns::fqdn(target) == crate::aws::dns::fqdn(ours))));
        }
        aws.dns.delete_records(zone, &records).await?;
    }
    aws.apis
        .delete_domain(&gateway.spec.hostname, &owner)
        .await?;
    if let Some(arn) = &status.certificate_arn {
        aws.certificates.delete(arn, &owner).await?;
    }
    if let Some(id) = &status.rest_api_id {
        aws.apis.delete_api(id, &owner).await?;
    }
    aws.logs
        .delete(
            &names::gateway_log_group(&ctx.settings.name_prefix, &name),
            &owner,
        )
        .await?;
    aws.roles
        .delete(
            &names::gateway_role(&ctx.settings.name_prefix, &name),
            &owner,
        )
        .await?;
    tracing::info!(gateway = %name, "deleted the gateway's AWS objects");
    Ok(Action::await_change())
}
