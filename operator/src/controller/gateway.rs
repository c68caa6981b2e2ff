//! The `WebhookGateway` reconciler: hosted zone → ownership record → role → access
//! logs (if the account has API Gateway's CloudWatch role) → REST API + stage →
//! certificate (replaced when ACM gives up on it) and its validation records → (once
//! issued) custom domain → alias records → status. One part's failure is recorded in
//! its condition and does not stop the parts that do not depend on it.

use aws_sdk_route53::types::RrType;
use hookline_crds::conditions::{
    ACCESS_LOGS_READY, API_READY, CERTIFICATE_READY, DNS_READY, READY,
};
use hookline_crds::reasons::{
    AWS_ERROR, CLOUDWATCH_ROLE_MISSING, DELETING, DISABLED, HOSTNAME_CONFLICT, IN_USE,
    INVALID_SPEC, PROGRESSING, RECONCILED,
};
use hookline_crds::{DeletionPolicy, Webhook, WebhookGateway, WebhookGatewayStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use std::sync::Arc;

use super::context::Context;
use super::index::{self, GatewayIndex};
use super::{Error, FINALIZER, Result, status};
use crate::aws::certificates::Status as CertStatus;
use crate::aws::dns::{Record, Value};
use crate::aws::logs::ACCESS_LOG_FORMAT;
use crate::aws::{ApiRef, ApiSpec, AwsError, CertificateSpec, DomainSpec, RoleSpec, StageSpec};
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

/// What one pass found, part by part: one report per condition (a failure beats a
/// success, and the first failure wins) and the first AWS error. A part that fails
/// does not stop the parts that do not depend on it; the reconcile returns the error
/// once every part has had its try, so it is retried with backoff.
#[derive(Debug, Default)]
struct Parts {
    reports: Vec<Report>,
    error: Option<AwsError>,
}

impl Parts {
    fn report(&mut self, report: Report) {
        match self.reports.iter_mut().find(|r| r.type_ == report.type_) {
            Some(existing) if existing.ok && !report.ok => *existing = report,
            Some(_) => {}
            None => self.reports.push(report),
        }
    }

    fn failed(&mut self, part: &'static str, error: AwsError) {
        self.report(aws_failure(part, &error));
        self.error.get_or_insert(error);
    }

    /// A step's value, or `None` with its failure recorded against `part`.
    fn take<T>(&mut self, part: &'static str, result: Result<T, AwsError>) -> Option<T> {
        result.map_err(|e| self.failed(part, e)).ok()
    }
}

async fn apply(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
) -> Result<Action> {
    let current = gateway.status.clone();
    let mut status = current.clone().unwrap_or_default();
    status.observed_generation = gateway.metadata.generation;
    let mut parts = Parts::default();
    let read_at = tokio::time::Instant::now();
    let webhooks = ctx.list_webhooks().await?;
    let index = GatewayIndex::build(
        &gateway.name_any(),
        &index::attachments(&webhooks, None),
        &ctx.quotas,
    );
    let mut outcome = converge(api, gateway, ctx, &index, &mut status, &mut parts).await;
    if let Ok(ready) = &mut outcome {
        *ready &= routes(ctx, &status, &index, read_at, &mut parts).await;
    }
    // Access logs inform but do not gate Ready: webhooks are served without them.
    let (informational, gating): (Vec<Report>, Vec<Report>) = parts
        .reports
        .into_iter()
        .partition(|r| r.type_ == ACCESS_LOGS_READY);
    status::merge_reports(
        ctx,
        gateway,
        &mut status.conditions,
        &gating,
        "the gateway serves webhooks",
    )
    .await;
    status::merge_informational(ctx, gateway, &mut status.conditions, &informational).await;
    status::write(api, gateway, current.as_ref(), &status).await?;
    match (outcome, parts.error) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e.into()),
        (Ok(true), None) => Ok(Action::requeue(ctx.timing.resync)),
        (Ok(false), None) => Ok(Action::requeue(ctx.timing.pending)),
    }
}

/// Runs the steps, recording a report per part; true when everything is in place.
/// The hosted zone and the hostname's ownership record gate every part (nothing is
/// created for a hostname another owner holds); after that, each part is attempted
/// when what it needs exists: the role, the access logs, the REST API and stage, the
/// certificate, and (once the certificate is issued and the API exists) the custom
/// domain and its records.
async fn converge(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
    index: &GatewayIndex,
    status: &mut WebhookGatewayStatus,
    parts: &mut Parts,
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
                parts.report(Report::failed(DNS_READY, INVALID_SPEC, e.to_string()));
                return Ok(false);
            }
            Err(e) => {
                parts.failed(DNS_READY, e);
                return Ok(false);
            }
        },
    };
    status.hosted_zone_id = Some(zone.clone());

    // Nothing of another owner is touched: a hostname claimed by someone else stops here.
    let owner_name = names::owner_record_name(&spec.hostname);
    let ours = owner_record(ctx, gateway);
    let Some(existing) = parts.take(DNS_READY, aws.dns.records(&zone, &owner_name).await) else {
        return Ok(false);
    };
    if let Some(other) = existing
        .iter()
        .find(|r| r.kind == RrType::Txt && r.value != ours.value)
    {
        let claim = match &other.value {
            Value::Plain { values, .. } => values.join(" "),
            Value::Alias { .. } => "an alias".to_owned(),
        };
        parts.report(Report::failed(
            DNS_READY,
            HOSTNAME_CONFLICT,
            format!(
                "{} is claimed by another owner ({claim}); nothing was changed",
                spec.hostname
            ),
        ));
        return Ok(false);
    }

    // The role the webhooks' integrations pass to API Gateway.
    let role = aws
        .roles
        .ensure(&RoleSpec {
            name: names::gateway_role(&ctx.settings.name_prefix, &name),
            region: ctx.settings.region.clone(),
            queue_prefix: ctx.settings.name_prefix.clone(),
            owner: owner.clone(),
        })
        .await;
    if let Some(role) = parts.take(API_READY, role) {
        status.role_arn = Some(role);
    }

    let access_log = access_log(ctx, gateway, &owner, parts).await;

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
        .await;
    let rest_api = parts.take(API_READY, rest_api);
    if let Some(rest_api) = &rest_api {
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
            route_throttling: index.route_throttling(),
            access_log,
        };
        if parts
            .take(API_READY, ensure_stage(ctx, rest_api, &stage).await)
            .is_some()
        {
            parts.report(Report::ok(
                API_READY,
                RECONCILED,
                format!("REST API {} stage {}", rest_api.id, spec.stage_name),
            ));
        }
    }

    let certificate = certificate(ctx, gateway, &owner, status, parts).await;
    if gateway
        .status
        .as_ref()
        .and_then(|s| s.certificate_arn.as_ref())
        != status.certificate_arn.as_ref()
    {
        status::write(api, gateway, None, status).await?;
    }
    retire_certificates(ctx, &owner, status, parts).await;

    let mut records = vec![ours];
    let mut issued = false;
    if let Some(certificate) = &certificate {
        records.extend(validation_records(certificate));
        match &certificate.status {
            CertStatus::Issued => {
                parts.report(Report::ok(
                    CERTIFICATE_READY,
                    RECONCILED,
                    format!("certificate {} issued", certificate.arn),
                ));
                issued = true;
            }
            CertStatus::Pending => parts.report(Report::failed(
                CERTIFICATE_READY,
                PROGRESSING,
                format!("waiting for ACM to validate {} through DNS", spec.hostname),
            )),
            // Only a replacement that failed at once lands here; the next pass
            // replaces it again.
            CertStatus::Failed(why) => parts.report(Report::failed(
                CERTIFICATE_READY,
                AWS_ERROR,
                format!("certificate {}: {why}", certificate.arn),
            )),
        }
    }

    let mut aliased = false;
    if let (true, Some(rest_api), Some(certificate)) = (issued, &rest_api, &certificate) {
        let domain = DomainSpec {
            domain: spec.hostname.clone(),
            certificate_arn: certificate.arn.clone(),
            api_id: rest_api.id.clone(),
            stage: spec.stage_name.clone(),
            owner: owner.clone(),
            created: status.regional_domain_name.clone(),
        };
        let target = aws.apis.ensure_domain(&domain).await;
        if let Some(target) = parts.take(DNS_READY, target) {
            if status.regional_domain_name.as_ref() != Some(&target.regional_domain_name) {
                // The checkpoint that proves the domain ours where its owner tag
                // cannot be read (rest_apis::domain_owned): written before anything
                // else is done with the domain.
                status.regional_domain_name = Some(target.regional_domain_name.clone());
                status::write(api, gateway, None, status).await?;
            }
            let mapped = aws.apis.ensure_base_path_mapping(&domain).await;
            if parts.take(DNS_READY, mapped).is_some() {
                records.extend(alias_records(
                    &spec.hostname,
                    &target.regional_domain_name,
                    &target.regional_zone_id,
                ));
                aliased = true;
            }
        }
    }
    // The ownership and validation records go in even while the rest waits: ACM
    // cannot issue without them.
    if parts
        .take(DNS_READY, aws.dns.ensure_records(&zone, &records).await)
        .is_some()
    {
        parts.report(if aliased {
            Report::ok(
                DNS_READY,
                RECONCILED,
                format!("{} points at the REST API", spec.hostname),
            )
        } else if issued {
            Report::failed(
                DNS_READY,
                PROGRESSING,
                "the alias waits for the REST API".to_owned(),
            )
        } else {
            Report::failed(
                DNS_READY,
                PROGRESSING,
                "the alias waits for the certificate".to_owned(),
            )
        });
    }
    status.url = Some(format!("https://{}", spec.hostname));
    status.attached_webhooks = Some(index.attached().try_into().unwrap_or(i32::MAX));
    Ok(aliased)
}

/// What the gateway's Webhooks share besides the stage: the source-IP resource
/// policy from the index, and the deployments that make route and policy changes
/// live (asked for by Webhook reconciles, see [`super::deployer::DeployRequests`]),
/// covering the requests made before `read_at`, when `index` was read.
/// Failures go to `ApiReady`; true when nothing waits for a deployment.
async fn routes(
    ctx: &Context,
    status: &WebhookGatewayStatus,
    index: &GatewayIndex,
    read_at: tokio::time::Instant,
    parts: &mut Parts,
) -> bool {
    let (Some(api_id), Some(stage)) = (status.rest_api_id.as_deref(), status.stage_name.as_deref())
    else {
        return true;
    };
    let policy = index.source_ip_policy();
    let mut policy_changed = false;
    // Read back unchanged: remembered, so the next passes within a resync skip it.
    let mut policy_read = false;
    if !ctx.policy_is_known(api_id, policy.as_ref()) {
        match ctx.aws.apis.ensure_policy(api_id, policy.as_ref()).await {
            Ok(true) => {
                tracing::info!(api = %api_id, limited_routes = index.source_ip_lists().iter().filter(|(_, c)| !c.is_empty()).count(), "updated the REST API's source-IP policy");
                policy_changed = true;
            }
            Ok(false) => policy_read = true,
            Err(e) => parts.failed(API_READY, e),
        }
    }
    let requested = ctx.deploys.take_before(api_id, read_at);
    if !policy_changed && requested.is_none() {
        if policy_read {
            ctx.remember_policy(api_id, policy);
        }
        return true;
    }
    // A resource policy takes effect only once deployed.
    let changed_at = match &requested {
        Some(pending) if !policy_changed => pending.changed_at,
        _ => tokio::time::Instant::now(),
    };
    match ctx
        .deployer
        .deploy_after(&*ctx.aws.apis, api_id, stage, changed_at)
        .await
    {
        Ok(()) => {
            let waiting = requested.map(|p| p.waiting).unwrap_or_default();
            tracing::info!(api = %api_id, %stage, routes = waiting.len(), "deployed the REST API");
            if policy_changed || policy_read {
                ctx.remember_policy(api_id, policy);
            }
            ctx.deploys.deployed(&waiting);
            true
        }
        Err(e) => {
            // Asked again, so that the retry deploys even when the policy it wrote
            // now reads back unchanged.
            ctx.deploys.restore(
                api_id,
                requested.unwrap_or(super::deployer::Pending {
                    changed_at,
                    waiting: Vec::new(),
                }),
            );
            parts.failed(API_READY, e);
            false
        }
    }
}

/// The stage's access-log destination and format, or `None` when logs are off, the
/// account has no CloudWatch Logs role for API Gateway (AWS then refuses the stage
/// update, so logs are skipped and the rest proceeds), or the log group failed.
async fn access_log(
    ctx: &Context,
    gateway: &WebhookGateway,
    owner: &crate::aws::Owner,
    parts: &mut Parts,
) -> Option<(String, String)> {
    let spec = &gateway.spec;
    if !spec.access_logs.enabled {
        parts.report(Report::ok(
            ACCESS_LOGS_READY,
            DISABLED,
            "accessLogs.enabled is false",
        ));
        return None;
    }
    let role = ctx.aws.account.cloudwatch_role_arn().await;
    if parts.take(ACCESS_LOGS_READY, role)?.is_none() {
        parts.report(Report::failed(
            ACCESS_LOGS_READY,
            CLOUDWATCH_ROLE_MISSING,
            format!(
                "API Gateway in {} has no CloudWatch Logs role (account setting \
                 cloudwatchRoleArn), so the stage cannot log access; access logs are \
                 skipped until it is set (aws apigateway update-account)",
                ctx.settings.region
            ),
        ));
        return None;
    }
    let group = names::gateway_log_group(&ctx.settings.name_prefix, &gateway.name_any());
    let arn = ctx
        .aws
        .logs
        .ensure(&group, spec.access_logs.retention_days, owner)
        .await;
    let arn = parts.take(ACCESS_LOGS_READY, arn)?;
    parts.report(Report::ok(
        ACCESS_LOGS_READY,
        RECONCILED,
        format!("the stage logs access to {group}"),
    ));
    Some((arn, ACCESS_LOG_FORMAT.to_owned()))
}

/// The gateway's certificate: the ARN in status is the cheap read; a lost one is
/// found by tag; one in a terminal status (FAILED, VALIDATION_TIMED_OUT, EXPIRED,
/// REVOKED) is replaced, the new ARN goes into status and the old one is retired.
async fn certificate(
    ctx: &Context,
    gateway: &WebhookGateway,
    owner: &crate::aws::Owner,
    status: &mut WebhookGatewayStatus,
    parts: &mut Parts,
) -> Option<crate::aws::Certificate> {
    let aws = &ctx.aws;
    let spec = CertificateSpec {
        domain: gateway.spec.hostname.clone(),
        owner: owner.clone(),
        tags: gateway.spec.tags.clone().into_iter().collect(),
    };
    let known = match &status.certificate_arn {
        Some(arn) => match aws.certificates.describe(arn).await {
            Ok(certificate) => Some(certificate),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                parts.failed(CERTIFICATE_READY, e);
                return None;
            }
        },
        None => None,
    };
    let current = match known {
        Some(certificate) => certificate,
        None => parts.take(CERTIFICATE_READY, aws.certificates.ensure(&spec).await)?,
    };
    let certificate = if current.status.is_terminal() {
        let new = parts.take(
            CERTIFICATE_READY,
            aws.certificates.replace(&spec, &current.arn).await,
        )?;
        tracing::info!(old = %current.arn, new = %new.arn, status = ?current.status, "replaced the certificate");
        if !status.retired_certificate_arns.contains(&current.arn) {
            status.retired_certificate_arns.push(current.arn);
        }
        new
    } else {
        current
    };
    status.certificate_arn = Some(certificate.arn.clone());
    Some(certificate)
}

/// Deletes replaced certificates; one still in use (by the custom domain, until it
/// moves to the new certificate) stays listed for the next pass.
async fn retire_certificates(
    ctx: &Context,
    owner: &crate::aws::Owner,
    status: &mut WebhookGatewayStatus,
    parts: &mut Parts,
) {
    let mut kept = Vec::new();
    for arn in std::mem::take(&mut status.retired_certificate_arns) {
        if status.certificate_arn.as_deref() == Some(arn.as_str()) {
            continue;
        }
        match ctx.aws.certificates.delete(&arn, owner).await {
            Ok(()) => tracing::info!(%arn, "deleted a replaced certificate"),
            Err(AwsError::Conflict { .. }) => kept.push(arn),
            Err(e) => {
                kept.push(arn);
                parts.failed(CERTIFICATE_READY, e);
            }
        }
    }
    status.retired_certificate_arns = kept;
}

/// The stage, deployed first if it does not exist yet.
async fn ensure_stage(ctx: &Context, api: &ApiRef, stage: &StageSpec) -> Result<(), AwsError> {
    match ctx.aws.apis.ensure_stage(&api.id, stage).await {
        Err(e) if e.is_not_found() => {
            ctx.deployer
                .deploy_after(
                    &*ctx.aws.apis,
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
    let certificates: Vec<&String> = status
        .certificate_arn
        .iter()
        .chain(&status.retired_certificate_arns)
        .collect();

    // Records first (they point at the domain), then the domain; the API only once
    // the domain (and its base path mapping) is gone. The certificates wait for ACM
    // to let go of them, which lasts 10–20 minutes after DeleteDomainName; the log
    // group and role depend on nothing and go regardless. The finalizer stays until
    // everything is gone: each pass retries what is left.
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
    if let Some(e) = first_error {
        return Err(e.into());
    }
    if !in_use.is_empty() {
        let mut status = status.clone();
        let report = Report::failed(
            READY,
            DELETING,
            format!(
                "everything else is deleted; waiting for ACM to release {} (it stays in use \
                 for up to 20 minutes after the custom domain is deleted)",
                in_use.join(", ")
            ),
        );
        status::merge_reports(ctx, gateway, &mut status.conditions, &[report], "").await;
        status::write(api, gateway, gateway.status.as_ref(), &status).await?;
        return Err(Error::Blocked(format!(
            "gateway {name}: certificate still in use: {}",
            in_use.join(", ")
        )));
    }
    tracing::info!(gateway = %name, "deleted the gateway's AWS objects");
    Ok(Action::await_change())
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
    let mut records = vec![owner_record(ctx, gateway)];
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
