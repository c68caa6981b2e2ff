//! Step 4 of a gateway reconcile: the calls that make the [`Plan`] true, in
//! dependency order: role → access-log group → REST API (its ids checkpointed into
//! status at once) and stage → certificate (replaced when ACM gave up on it; its ARN
//! checkpointed) and the retired ones → (once issued) custom domain (its regional
//! name checkpointed before anything else is done with it) and base path mapping →
//! records → what the Webhooks share: the resource policy and the deployments. One
//! part's failure does not stop the parts that do not depend on it; each part's
//! result is kept in [`Applied`] for [`super::status`].

use hookline_crds::{WebhookGateway, WebhookGatewayStatus};
use kube::api::Api;
use tokio::time::Instant;

use super::super::context::Context;
use super::super::deployer::Pending;
use super::super::{Error, Result, hostname, status};
use super::observe::Observed;
use super::plan::Plan;
use crate::aws::logs::ACCESS_LOG_FORMAT;
use crate::aws::{ApiRef, AwsError, Certificate, DomainTarget, StageSpec};

/// What each part came to; `None` for a part the pass did not reach.
#[derive(Debug, Default)]
pub struct Applied {
    /// The role's ARN.
    pub role: Option<Result<String, AwsError>>,
    /// The access logs.
    pub access_logs: Option<AccessLogs>,
    /// The REST API.
    pub api: Option<Result<ApiRef, AwsError>>,
    /// The stage (reached only with an API).
    pub stage: Option<Result<(), AwsError>>,
    /// The certificate, after a replacement if one was due.
    pub certificate: Option<Result<Certificate, AwsError>>,
    /// Failures deleting replaced certificates (one still in use is no failure).
    pub retire_failures: Vec<AwsError>,
    /// The custom domain (reached once the certificate is issued and the API exists).
    pub domain: Option<Result<DomainTarget, AwsError>>,
    /// Its base path mapping (reached once the domain exists).
    pub mapping: Option<Result<(), AwsError>>,
    /// What the hostname holds that the alias must not replace (reached once the
    /// domain is mapped); `Ok(None)`: nothing, the alias was written.
    pub alias_check: Option<Result<Option<String>, AwsError>>,
    /// The records.
    pub records: Option<Result<(), AwsError>>,
    /// Failures applying the resource policy and deploying.
    pub shared_failures: Vec<AwsError>,
    /// Whether a deployment still waits.
    pub deploy_pending: bool,
    /// A failure of the Kubernetes API (a checkpoint) that stopped the pass.
    pub stopped: Option<Error>,
}

/// Where the stage's access logs stand.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessLogs {
    /// `accessLogs.enabled` is false.
    Disabled,
    /// The account has no CloudWatch Logs role for API Gateway.
    NoCloudWatchRole,
    /// Reading the role or making the group failed.
    Failed(AwsError),
    /// The stage logs to this group.
    Ready {
        /// The log group's name.
        group: String,
        /// Its ARN.
        arn: String,
    },
}

impl Applied {
    /// Whether the certificate is issued.
    pub fn issued(&self) -> bool {
        matches!(&self.certificate, Some(Ok(c)) if c.status == crate::aws::certificates::Status::Issued)
    }

    /// The stage's access-log destination and format, once the group is ready.
    pub fn access_log(&self) -> Option<(String, String)> {
        match &self.access_logs {
            Some(AccessLogs::Ready { arn, .. }) => {
                Some((arn.clone(), ACCESS_LOG_FORMAT.to_owned()))
            }
            _ => None,
        }
    }

    /// Whether the hostname's aliases point at the API.
    pub fn aliased(&self) -> bool {
        matches!(self.mapping, Some(Ok(())))
            && matches!(self.alias_check, Some(Ok(None)))
            && matches!(self.records, Some(Ok(())))
    }
}

/// Applies `plan`; `status` carries the ids, checkpointed as they appear.
pub async fn apply(
    ctx: &Context,
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    observed: &Observed,
    plan: &Plan,
    zone: &str,
    status: &mut WebhookGatewayStatus,
) -> Applied {
    let mut applied = Applied::default();
    if let Err(e) = parts(
        ctx,
        api,
        gateway,
        observed,
        plan,
        zone,
        status,
        &mut applied,
    )
    .await
    {
        applied.stopped = Some(e);
    }
    applied
}

// Eight arguments: the pass's inputs, passed on from `apply` unchanged.
#[allow(clippy::too_many_arguments)]
async fn parts(
    ctx: &Context,
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    observed: &Observed,
    plan: &Plan,
    zone: &str,
    status: &mut WebhookGatewayStatus,
    applied: &mut Applied,
) -> Result<()> {
    let aws = &ctx.aws;
    let role = aws.roles.ensure(&plan.role).await;
    if let Ok(arn) = &role {
        status.role_arn = Some(arn.clone());
    }
    applied.role = Some(role);
    let access_logs = access_logs(ctx, observed, plan).await;
    let access_log = match &access_logs {
        AccessLogs::Ready { arn, .. } => Some((arn.clone(), ACCESS_LOG_FORMAT.to_owned())),
        _ => None,
    };
    applied.access_logs = Some(access_logs);

    let rest_api = aws
        .apis
        .ensure_api(&plan.api, status.rest_api_id.as_deref())
        .await;
    if let Ok(rest_api) = &rest_api {
        status.rest_api_id = Some(rest_api.id.clone());
        status.root_resource_id = Some(rest_api.root_resource_id.clone());
        status.stage_name = Some(plan.stage.name.clone());
        // External ids go into status the moment they exist: a crash from here on
        // finds the API by id rather than by listing.
        status::write(api, gateway, gateway.status.as_ref(), status).await?;
        let stage = StageSpec {
            access_log,
            ..plan.stage.clone()
        };
        applied.stage = Some(ensure_stage(ctx, rest_api, &stage).await);
    }
    applied.api = Some(rest_api);

    let certificate = certificate(ctx, observed, plan, status).await;
    if gateway
        .status
        .as_ref()
        .and_then(|s| s.certificate_arn.as_ref())
        != status.certificate_arn.as_ref()
    {
        status::write(api, gateway, None, status).await?;
    }
    applied.certificate = Some(certificate);
    applied.retire_failures = retire_certificates(ctx, plan, status).await;

    domain(ctx, api, gateway, plan, status, applied).await?;
    let certificate = applied.certificate.as_ref().and_then(|c| c.as_ref().ok());
    let alias = match (&applied.domain, &applied.mapping) {
        (Some(Ok(target)), Some(Ok(()))) => Some(target),
        _ => None,
    };
    // The ownership and validation records go in even while the rest waits: ACM
    // cannot issue without them.
    let alias = match alias {
        Some(target) => {
            let check = alias_check(ctx, zone, &gateway.spec.hostname, target, status).await;
            let clear = matches!(check, Ok(None));
            applied.alias_check = Some(check);
            clear.then_some(target)
        }
        None => None,
    };
    let records = plan.records(&gateway.spec.hostname, certificate, alias);
    applied.records = Some(aws.dns.ensure_records(zone, &records).await.map(|_| ()));
    Ok(())
}

/// What, at the hostname, the alias must not replace (see [`hostname::alias_conflict`]):
/// an alias may only go over nothing or over an alias to this gateway's domain, the
/// one just ensured or the one its status recorded.
async fn alias_check(
    ctx: &Context,
    zone: &str,
    hostname: &str,
    target: &DomainTarget,
    status: &WebhookGatewayStatus,
) -> Result<Option<String>, AwsError> {
    let existing = ctx.aws.dns.records(zone, hostname).await?;
    let mut ours = vec![target.regional_domain_name.as_str()];
    ours.extend(status.regional_domain_name.as_deref());
    Ok(hostname::alias_conflict(&existing, hostname, &ours))
}

/// The custom domain and its mapping, once the certificate is issued and the API
/// exists.
async fn domain(
    ctx: &Context,
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    plan: &Plan,
    status: &mut WebhookGatewayStatus,
    applied: &mut Applied,
) -> Result<()> {
    let issued = applied.issued();
    let (true, Some(Ok(rest_api)), Some(Ok(certificate))) =
        (issued, &applied.api, &applied.certificate)
    else {
        return Ok(());
    };
    let domain = plan.domain(
        gateway,
        &certificate.arn,
        &rest_api.id,
        status.regional_domain_name.clone(),
    );
    let target = ctx.aws.apis.ensure_domain(&domain).await;
    if let Ok(target) = &target {
        if status.regional_domain_name.as_ref() != Some(&target.regional_domain_name) {
            // The checkpoint that proves the domain ours where its owner tag cannot
            // be read (rest_apis::domain_owned): written before anything else is
            // done with the domain.
            status.regional_domain_name = Some(target.regional_domain_name.clone());
            status::write(api, gateway, None, status).await?;
        }
        applied.mapping = Some(ctx.aws.apis.ensure_base_path_mapping(&domain).await);
    }
    applied.domain = Some(target);
    Ok(())
}

/// The group the stage logs to, when logs are on and the account lets API Gateway
/// write to CloudWatch Logs (AWS otherwise refuses the stage update, so logs are
/// skipped and the rest proceeds).
async fn access_logs(ctx: &Context, observed: &Observed, plan: &Plan) -> AccessLogs {
    let Some((group, retention)) = &plan.access_logs else {
        return AccessLogs::Disabled;
    };
    match &observed.cloudwatch_role {
        Some(Ok(Some(_))) => {}
        Some(Ok(None)) | None => return AccessLogs::NoCloudWatchRole,
        Some(Err(e)) => return AccessLogs::Failed(e.clone()),
    }
    match ctx.aws.logs.ensure(group, *retention, &plan.owner).await {
        Ok(arn) => AccessLogs::Ready {
            group: group.clone(),
            arn,
        },
        Err(e) => AccessLogs::Failed(e),
    }
}

/// The gateway's certificate: the one the status names (as observed); a lost one is
/// found by tag; one in a terminal status (FAILED, VALIDATION_TIMED_OUT, EXPIRED,
/// REVOKED) is replaced, the new ARN goes into status and the old one is retired.
async fn certificate(
    ctx: &Context,
    observed: &Observed,
    plan: &Plan,
    status: &mut WebhookGatewayStatus,
) -> Result<Certificate, AwsError> {
    let certificates = &ctx.aws.certificates;
    let current = match &observed.certificate {
        Ok(Some(certificate)) => certificate.clone(),
        Ok(None) => certificates.ensure(&plan.certificate).await?,
        Err(e) => return Err(e.clone()),
    };
    let certificate = if current.status.is_terminal() {
        let new = certificates
            .replace(&plan.certificate, &current.arn)
            .await?;
        tracing::info!(old = %current.arn, new = %new.arn, status = ?current.status, "replaced the certificate");
        if !status.retired_certificate_arns.contains(&current.arn) {
            status.retired_certificate_arns.push(current.arn);
        }
        new
    } else {
        current
    };
    status.certificate_arn = Some(certificate.arn.clone());
    Ok(certificate)
}

/// Deletes replaced certificates; one still in use (by the custom domain, until it
/// moves to the new certificate) stays listed for the next pass.
async fn retire_certificates(
    ctx: &Context,
    plan: &Plan,
    status: &mut WebhookGatewayStatus,
) -> Vec<AwsError> {
    let mut kept = Vec::new();
    let mut failures = Vec::new();
    for arn in std::mem::take(&mut status.retired_certificate_arns) {
        if status.certificate_arn.as_deref() == Some(arn.as_str()) {
            continue;
        }
        match ctx.aws.certificates.delete(&arn, &plan.owner).await {
            Ok(()) => tracing::info!(%arn, "deleted a replaced certificate"),
            Err(AwsError::Conflict { .. }) => kept.push(arn),
            Err(e) => {
                kept.push(arn);
                failures.push(e);
            }
        }
    }
    status.retired_certificate_arns = kept;
    failures
}

/// The stage, deployed first if it does not exist yet.
async fn ensure_stage(ctx: &Context, api: &ApiRef, stage: &StageSpec) -> Result<(), AwsError> {
    match ctx.aws.apis.ensure_stage(&api.id, stage).await {
        Err(e) if e.is_not_found() => {
            ctx.deployer
                .deploy_after(&*ctx.aws.apis, &api.id, &stage.name, Instant::now())
                .await?;
            ctx.aws.apis.ensure_stage(&api.id, stage).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

/// What the gateway's Webhooks share besides the stage: the source-IP resource
/// policy from the index, and the deployments that make route and policy changes
/// live (asked for by Webhook reconciles, see [`super::super::deployer::DeployRequests`]),
/// covering the requests made before `read_at`, when the index was read.
pub async fn shared(
    ctx: &Context,
    status: &WebhookGatewayStatus,
    plan: &Plan,
    read_at: Instant,
    applied: &mut Applied,
) {
    let (Some(api_id), Some(stage)) = (status.rest_api_id.as_deref(), status.stage_name.as_deref())
    else {
        return;
    };
    let policy = plan.policy.clone();
    let mut policy_changed = false;
    // Read back unchanged: remembered, so the next passes within a resync skip it.
    let mut policy_read = false;
    if !ctx.policy_is_known(api_id, policy.as_ref()) {
        match ctx.aws.apis.ensure_policy(api_id, policy.as_ref()).await {
            Ok(true) => {
                tracing::info!(api = %api_id, limited_routes = plan.index.source_ip_lists().iter().filter(|(_, c)| !c.is_empty()).count(), "updated the REST API's source-IP policy");
                policy_changed = true;
            }
            Ok(false) => policy_read = true,
            Err(e) => applied.shared_failures.push(e),
        }
    }
    let requested = ctx.deploys.take_before(api_id, read_at);
    if !policy_changed && requested.is_none() {
        if policy_read {
            ctx.remember_policy(api_id, policy);
        }
        return;
    }
    // A resource policy takes effect only once deployed.
    let changed_at = match requested.as_ref().and_then(Pending::changed_at) {
        Some(at) if !policy_changed => at,
        _ => Instant::now(),
    };
    match ctx
        .deployer
        .deploy_after(&*ctx.aws.apis, api_id, stage, changed_at)
        .await
    {
        Ok(()) => {
            let waiting = requested.map(|p| p.webhooks()).unwrap_or_default();
            tracing::info!(api = %api_id, %stage, routes = waiting.len(), "deployed the REST API");
            if policy_changed || policy_read {
                ctx.remember_policy(api_id, policy);
            }
            ctx.deploys.deployed(&waiting);
        }
        Err(e) => {
            // Asked again, so that the retry deploys even when the policy it wrote
            // now reads back unchanged.
            ctx.deploys.restore(
                api_id,
                requested.unwrap_or_else(|| Pending::own(changed_at)),
            );
            applied.shared_failures.push(e);
            applied.deploy_pending = true;
        }
    }
}
