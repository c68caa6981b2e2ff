//! The `Webhook` reconciler: validate (gateway, namespace, secrets, and the gateway
//! index's word on path and quotas) → queue pair → route (auth, template; deployed by
//! the gateway's reconcile, which owns the stage and the resource policy) → worker
//! ServiceAccount and Deployment → status (URL, queues, backlog).

use hookline_crds::conditions::{QUEUE_READY, READY, ROUTE_READY, WORKER_READY};
use hookline_crds::reasons::{
    AWS_ERROR, DEAD_LETTER_NOT_EMPTY, DRAIN_STALLED, DRAINING, GATEWAY_NOT_FOUND,
    GATEWAY_NOT_READY, INVALID_SPEC, KEDA_NOT_INSTALLED, NAMESPACE_NOT_ALLOWED, NOT_OWNED,
    PATH_CONFLICT, PROGRESSING, RECONCILED, SECRET_FORBIDDEN, SECRET_NOT_FOUND,
};
use hookline_crds::{
    AuthMode, Backlog as BacklogStatus, DeletionPolicy, LambdaAuthorizerType, NamespacesFrom,
    QueueRef as QueueStatus, Replicas, RouteRef, ScalingEngine, Webhook, WebhookGateway,
    WebhookStatus,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use std::sync::Arc;

use super::context::Context;
use super::index::{self, Admission, GatewayIndex, authorizer_name};
use super::{
    ALLOW_DLQ_LOSS, ALLOW_QUEUE_LOSS, Error, FINALIZER, MANAGER, Result, identity, selector, status,
};
use crate::aws::functions::{authorizer_source_arn, authorizer_statement_id};
use crate::aws::{
    ApiRef, AuthorizerSpec, AwsError, DeletedAuthorizer, Functions, QueuePair, RouteAuth, RouteSpec,
};
use crate::conditions::Report;
use crate::desired::{self, webhook_owner};
use crate::names;

/// Reconciles one webhook; the only top-level action is the finalizer.
#[tracing::instrument(skip(webhook, ctx), fields(webhook = %format!("{}/{}", webhook.namespace().unwrap_or_default(), webhook.name_any())))]
pub async fn reconcile(webhook: Arc<Webhook>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    let api: Api<Webhook> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, webhook, |event| async {
        match event {
            Finalizer::Apply(webhook) => apply(&api, &webhook, &ctx).await,
            Finalizer::Cleanup(webhook) => cleanup(&api, &webhook, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// A reason the spec cannot be honoured, found before any AWS call.
struct Invalid {
    part: &'static str,
    reason: &'static str,
    message: String,
}

fn invalid(part: &'static str, reason: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        part,
        reason,
        message: message.into(),
    }
}

/// The gateway a webhook attaches to: the named one, or the single default.
async fn resolve_gateway(
    ctx: &Context,
    webhook: &Webhook,
) -> Result<Result<WebhookGateway, Invalid>> {
    let gateways: Api<WebhookGateway> = Api::all(ctx.client.clone());
    if let Some(reference) = &webhook.spec.gateway_ref {
        return Ok(match gateways.get_opt(&reference.name).await? {
            Some(gateway) => Ok(gateway),
            None => Err(invalid(
                ROUTE_READY,
                GATEWAY_NOT_FOUND,
                format!("WebhookGateway {} does not exist", reference.name),
            )),
        });
    }
    let mut defaults: Vec<WebhookGateway> = gateways
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.is_default)
        .collect();
    if defaults.len() == 1
        && let Some(gateway) = defaults.pop()
    {
        return Ok(Ok(gateway));
    }
    let message = if defaults.is_empty() {
        "no gatewayRef, and no WebhookGateway is marked default: true".to_owned()
    } else {
        let names: Vec<String> = defaults.iter().map(ResourceExt::name_any).collect();
        format!(
            "no gatewayRef, and {} WebhookGateways are marked default ({}); name one",
            names.len(),
            names.join(", ")
        )
    };
    Ok(Err(invalid(ROUTE_READY, GATEWAY_NOT_FOUND, message)))
}

/// Reads a Secret the Webhook names, or explains that RBAC does not let the operator:
/// a cluster-wide install reads Secrets only where a namespace granted it access.
async fn read_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Result<Option<Secret>, Invalid>> {
    match Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(secret) => Ok(Ok(secret)),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Err(invalid(
            WORKER_READY,
            SECRET_FORBIDDEN,
            format!(
                "the operator may not read Secret {name} in namespace {namespace}; grant it \
                 access to this namespace's Secrets (RoleBinding to the ClusterRole \
                 hookline-secrets, see the chart's rbac.secretNamespaces)"
            ),
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Checks what the schema cannot: the gateway, the namespace, the secrets, the path.
async fn validate(
    ctx: &Context,
    webhook: &Webhook,
    namespace: &str,
) -> Result<Result<WebhookGateway, Invalid>> {
    let gateway = match resolve_gateway(ctx, webhook).await? {
        Ok(gateway) => gateway,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let allowed = &gateway.spec.allowed_namespaces;
    if allowed.from == NamespacesFrom::Selector {
        let labels = Api::<Namespace>::all(ctx.client.clone())
            .get(namespace)
            .await?
            .metadata
            .labels
            .unwrap_or_default();
        let selector = allowed.selector.clone().unwrap_or_default();
        if !selector::matches(&selector, &labels) {
            return Ok(Err(invalid(
                ROUTE_READY,
                NAMESPACE_NOT_ALLOWED,
                format!(
                    "WebhookGateway {} does not allow namespace {namespace} (allowedNamespaces.selector)",
                    gateway.name_any()
                ),
            )));
        }
    }
    if let Some(api_key) = &webhook.spec.auth.api_key {
        // Only readability here: a missing API key Secret is created later.
        if let Err(forbidden) = read_secret(ctx, namespace, &api_key.secret_ref.name).await? {
            return Ok(Err(forbidden));
        }
    }
    if let Some(signature) = &webhook.spec.signature {
        let secret = match read_secret(ctx, namespace, &signature.secret_ref.name).await? {
            Ok(secret) => secret,
            Err(forbidden) => return Ok(Err(forbidden)),
        };
        let Some(secret) = secret else {
            return Ok(Err(invalid(
                WORKER_READY,
                SECRET_NOT_FOUND,
                format!("Secret {} does not exist", signature.secret_ref.name),
            )));
        };
        let data = secret.data.unwrap_or_default();
        // No keys listed means every key of the Secret: it needs at least one.
        if signature.secret_ref.keys.is_empty() && data.is_empty() {
            return Ok(Err(invalid(
                WORKER_READY,
                SECRET_NOT_FOUND,
                format!("Secret {} has no keys", signature.secret_ref.name),
            )));
        }
        let missing: Vec<&String> = signature
            .secret_ref
            .keys
            .iter()
            .filter(|k| !data.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Ok(Err(invalid(
                WORKER_READY,
                SECRET_NOT_FOUND,
                format!(
                    "Secret {} has no key(s) {missing:?}",
                    signature.secret_ref.name
                ),
            )));
        }
    }
    if desired::worker_has_reserved_container(webhook) {
        return Ok(Err(invalid(
            WORKER_READY,
            INVALID_SPEC,
            format!(
                "the pod template may not contain a container named {}",
                desired::WORKER_CONTAINER
            ),
        )));
    }
    // Path ownership and quotas are the gateway index's decisions.
    let others = ctx.list_webhooks().await?;
    let gateway_name = gateway.name_any();
    let attached = index::attachments(&others, Some((&gateway_name, webhook)));
    let index = GatewayIndex::build(&gateway_name, &attached, &ctx.quotas);
    match index.admission(webhook) {
        Admission::Admitted => Ok(Ok(gateway)),
        Admission::PathTaken { owner } => Ok(Err(invalid(
            ROUTE_READY,
            PATH_CONFLICT,
            format!(
                "Webhook {owner} already serves {} on gateway {gateway_name}",
                webhook.spec.path
            ),
        ))),
        Admission::Refused(refusal) => {
            Ok(Err(invalid(ROUTE_READY, refusal.reason, refusal.message)))
        }
        Admission::NotAttached => Err(Error::Malformed("uid")),
    }
}

fn aws_failure(part: &'static str, error: &AwsError) -> Report {
    let reason = if matches!(error, AwsError::NotOwned { .. }) {
        NOT_OWNED
    } else {
        AWS_ERROR
    };
    Report::failed(part, reason, error.to_string())
}

async fn apply(api: &Api<Webhook>, webhook: &Webhook, ctx: &Context) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    let current = webhook.status.clone();
    let mut status = current.clone().unwrap_or_default();
    status.observed_generation = webhook.metadata.generation;
    let mut reports = Vec::new();

    let gateway = match validate(ctx, webhook, &namespace).await? {
        Ok(gateway) => gateway,
        Err(Invalid {
            part,
            reason,
            message,
        }) => {
            // No AWS call for an invalid spec.
            reports.push(Report::failed(part, reason, message));
            status::merge_reports(ctx, webhook, &mut status.conditions, &reports, "").await;
            status::write(api, webhook, current.as_ref(), &status).await?;
            return Ok(Action::requeue(ctx.timing.error));
        }
    };
    status.gateway = Some(gateway.name_any());
    let outcome = converge(
        api,
        webhook,
        &gateway,
        ctx,
        &namespace,
        &mut status,
        &mut reports,
    )
    .await;
    status::merge_reports(
        ctx,
        webhook,
        &mut status.conditions,
        &reports,
        "requests are queued and delivered",
    )
    .await;
    status::write(api, webhook, current.as_ref(), &status).await?;
    match outcome {
        Ok(true) => Ok(Action::requeue(ctx.timing.resync)),
        Ok(false) => Ok(Action::requeue(ctx.timing.pending)),
        Err(e) => Err(e),
    }
}

async fn converge(
    api: &Api<Webhook>,
    webhook: &Webhook,
    gateway: &WebhookGateway,
    ctx: &Context,
    namespace: &str,
    status: &mut WebhookStatus,
    reports: &mut Vec<Report>,
) -> Result<bool> {
    let aws = &ctx.aws;
    let pair = aws
        .queues
        .ensure_pair(&desired::queue_pair(webhook, gateway, &ctx.settings))
        .await
        .inspect_err(|e| reports.push(aws_failure(QUEUE_READY, e)))?;
    status.queue = Some(QueueStatus {
        url: pair.queue.url.clone(),
        arn: pair.queue.arn.clone(),
    });
    status.dead_letter_queue = Some(QueueStatus {
        url: pair.dead_letter.url.clone(),
        arn: pair.dead_letter.arn.clone(),
    });
    // External ids go into status the moment they exist.
    if webhook.status.as_ref().and_then(|s| s.queue.as_ref()) != status.queue.as_ref() {
        status::write(api, webhook, None, status).await?;
    }
    let backlog = aws
        .queues
        .backlog(&pair)
        .await
        .inspect_err(|e| reports.push(aws_failure(QUEUE_READY, e)))?;
    status.backlog = Some(BacklogStatus {
        visible: backlog.visible,
        in_flight: backlog.in_flight,
        dead_letter: backlog.dead_letter,
    });
    reports.push(Report::ok(
        QUEUE_READY,
        RECONCILED,
        format!("{} and its dead-letter queue", pair.queue.url),
    ));

    let route_ready = route(webhook, gateway, ctx, namespace, &pair, status, reports).await?;
    worker(webhook, gateway, ctx, namespace, &pair, status, reports).await?;
    Ok(route_ready)
}

#[allow(clippy::too_many_arguments)]
async fn route(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    ctx: &Context,
    namespace: &str,
    pair: &QueuePair,
    status: &mut WebhookStatus,
    reports: &mut Vec<Report>,
) -> Result<bool> {
    let aws = &ctx.aws;
    let gateway_status = gateway.status.clone().unwrap_or_default();
    let (Some(api_id), Some(root), Some(role), Some(stage)) = (
        gateway_status.rest_api_id.clone(),
        gateway_status.root_resource_id.clone(),
        gateway_status.role_arn.clone(),
        gateway_status.stage_name.clone(),
    ) else {
        reports.push(Report::failed(
            ROUTE_READY,
            GATEWAY_NOT_READY,
            format!("WebhookGateway {} has no REST API yet", gateway.name_any()),
        ));
        return Ok(false);
    };
    let rest_api = ApiRef {
        id: api_id.clone(),
        root_resource_id: root,
    };
    let name = webhook.name_any();
    let fail = |e: &AwsError| aws_failure(ROUTE_READY, e);

    let auth = match webhook.spec.auth.mode {
        AuthMode::None => RouteAuth::None,
        AuthMode::ApiKey => {
            let value = api_key_value(ctx, webhook, namespace).await?;
            aws.apis
                .ensure_api_key(
                    &names::webhook_api_key(&ctx.settings.name_prefix, namespace, &name),
                    &value,
                    &api_id,
                    &stage,
                    &webhook_owner(webhook),
                )
                .await
                .inspect_err(|e| reports.push(fail(e)))?;
            RouteAuth::ApiKey
        }
        AuthMode::Cognito => {
            let Some(cognito) = webhook.spec.auth.cognito.clone() else {
                reports.push(Report::failed(
                    ROUTE_READY,
                    INVALID_SPEC,
                    "auth.cognito is missing",
                ));
                return Ok(false);
            };
            let authorizer_id = aws
                .apis
                .ensure_authorizer(
                    &api_id,
                    &AuthorizerSpec::Cognito {
                        name: authorizer_name(namespace, &name),
                        user_pool_arns: cognito.user_pool_arns,
                    },
                )
                .await
                .inspect_err(|e| reports.push(fail(e)))?;
            RouteAuth::Cognito {
                authorizer_id,
                scopes: cognito.scopes,
            }
        }
        AuthMode::Lambda => {
            let Some(lambda) = webhook.spec.auth.lambda.clone() else {
                reports.push(Report::failed(
                    ROUTE_READY,
                    INVALID_SPEC,
                    "auth.lambda is missing",
                ));
                return Ok(false);
            };
            let function_arn = lambda.function_arn.clone();
            let authorizer_id = aws
                .apis
                .ensure_authorizer(
                    &api_id,
                    &AuthorizerSpec::Lambda {
                        name: authorizer_name(namespace, &name),
                        function_arn: lambda.function_arn,
                        request: lambda.kind == LambdaAuthorizerType::Request,
                        identity_source: lambda.identity_source,
                        ttl_seconds: lambda.result_ttl_seconds,
                    },
                )
                .await
                .inspect_err(|e| reports.push(fail(e)))?;
            // API Gateway may invoke the function only with a grant on it.
            let source = authorizer_source_arn(&pair.queue.arn, &api_id, &authorizer_id)
                .ok_or(Error::Malformed("queue ARN"))?;
            aws.functions
                .ensure_invoke_permission(
                    &function_arn,
                    &authorizer_statement_id(&api_id, &authorizer_id),
                    &source,
                )
                .await
                .inspect_err(|e| reports.push(fail(e)))?;
            RouteAuth::Lambda { authorizer_id }
        }
    };
    let authorizer_in_use = match &auth {
        RouteAuth::Cognito { authorizer_id, .. } | RouteAuth::Lambda { authorizer_id } => {
            Some(authorizer_id.clone())
        }
        RouteAuth::None | RouteAuth::ApiKey => None,
    };

    let (resource_id, changed) = aws
        .apis
        .ensure_route(
            &rest_api,
            &RouteSpec {
                path: webhook.spec.path.clone(),
                queue_arn: pair.queue.arn.clone(),
                role_arn: role,
                template: desired::route_template(webhook),
                auth,
            },
        )
        .await
        .inspect_err(|e| reports.push(fail(e)))?;
    // Unchanged now is not deployed: a change made just before the operator stopped
    // may never have been deployed. AWS knows; memory does not survive a restart.
    let live = !changed
        && aws
            .apis
            .route_is_live(&api_id, &resource_id, &stage)
            .await
            .inspect_err(|e| reports.push(fail(e)))?;
    status.route = Some(RouteRef {
        rest_api_id: api_id.clone(),
        resource_id,
    });
    // Deployments, the stage's route throttles and the source-IP policy are the
    // gateway's (it applies them from its index of Webhooks); this route waits.
    if !live {
        ctx.deploys.request(&api_id, &gateway.name_any(), webhook);
        reports.push(Report::failed(
            ROUTE_READY,
            PROGRESSING,
            format!(
                "POST {} waits for WebhookGateway {} to deploy it to stage {stage}",
                webhook.spec.path,
                gateway.name_any()
            ),
        ));
        return Ok(false);
    }
    let uid = webhook.metadata.uid.as_deref().unwrap_or_default();
    if ctx.deploys.awaits(uid) {
        // Authorizers the route no longer uses (replaced, or the mode changed), now
        // that the deployment that stopped using them is live.
        let deleted = aws
            .apis
            .delete_authorizers(
                &api_id,
                &authorizer_name(namespace, &name),
                authorizer_in_use.as_deref(),
            )
            .await
            .inspect_err(|e| reports.push(fail(e)))?;
        revoke_invoke_permissions(&*aws.functions, &api_id, &deleted)
            .await
            .inspect_err(|e| reports.push(fail(e)))?;
        ctx.deploys.seen_live(uid);
    }
    let allow_list = &webhook.spec.auth.source_ip_allow_list;
    if !allow_list.is_empty()
        && !index::policy_enforces(
            ctx.known_policy(&api_id).flatten().as_ref(),
            &webhook.spec.path,
            allow_list,
        )
    {
        reports.push(Report::failed(
            ROUTE_READY,
            PROGRESSING,
            format!(
                "POST {} is deployed, but its sourceIpAllowList is not enforced yet: it waits \
                 for WebhookGateway {} to put it in the REST API's resource policy (see the \
                 gateway's ApiReady condition)",
                webhook.spec.path,
                gateway.name_any()
            ),
        ));
        return Ok(false);
    }
    let base = gateway_status
        .url
        .unwrap_or_else(|| format!("https://{}", gateway.spec.hostname));
    status.url = Some(format!("{base}{}", webhook.spec.path));
    reports.push(Report::ok(
        ROUTE_READY,
        RECONCILED,
        format!("POST {} is deployed to stage {stage}", webhook.spec.path),
    ));
    Ok(true)
}

/// Removes the grants that let API Gateway invoke deleted Lambda authorizers.
async fn revoke_invoke_permissions(
    functions: &dyn Functions,
    api_id: &str,
    deleted: &[DeletedAuthorizer],
) -> Result<(), AwsError> {
    for authorizer in deleted {
        if let Some(function_arn) = &authorizer.function_arn {
            functions
                .remove_invoke_permission(
                    function_arn,
                    &authorizer_statement_id(api_id, &authorizer.id),
                )
                .await?;
        }
    }
    Ok(())
}

/// The API key: the Secret's value if it exists, else a generated key stored in a new
/// Secret owned by the Webhook.
async fn api_key_value(ctx: &Context, webhook: &Webhook, namespace: &str) -> Result<String> {
    let Some(reference) = webhook
        .spec
        .auth
        .api_key
        .as_ref()
        .map(|a| a.secret_ref.clone())
    else {
        return Err(Error::Malformed("auth.apiKey"));
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    if let Some(secret) = secrets.get_opt(&reference.name).await?
        && let Some(value) = secret.data.unwrap_or_default().get(&reference.key)
    {
        return Ok(String::from_utf8_lossy(&value.0).trim().to_owned());
    }
    let value: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(reference.name.clone()),
            namespace: Some(namespace.to_owned()),
            owner_references: webhook.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                reference.key.clone(),
                ByteString(value.clone().into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    secrets.create(&PostParams::default(), &secret).await?;
    Ok(value)
}

async fn worker(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    ctx: &Context,
    namespace: &str,
    pair: &QueuePair,
    status: &mut WebhookStatus,
    reports: &mut Vec<Report>,
) -> Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    let account = match identity::ensure(ctx, webhook, gateway, namespace).await? {
        Ok(account) => account,
        Err(report) => {
            reports.push(report);
            return Ok(());
        }
    };
    let deployment = desired::with_service_account(
        desired::worker_deployment(webhook, pair, &ctx.settings),
        &account,
    );
    let name = desired::worker_name(webhook);
    let applied = Api::<Deployment>::namespaced(ctx.client.clone(), namespace)
        .patch(&name, &params, &Patch::Apply(&deployment))
        .await?;
    if let Some(report) = keda(webhook, gateway, ctx, namespace, pair).await? {
        reports.push(report);
        return Ok(());
    }
    let observed = applied.status.unwrap_or_default();
    let desired_replicas = applied.spec.replicas.unwrap_or(1);
    let ready = observed.ready_replicas.unwrap_or(0);
    status.replicas = Some(Replicas {
        desired: desired_replicas,
        ready,
    });
    reports.push(if ready > 0 || desired_replicas == 0 {
        Report::ok(
            WORKER_READY,
            RECONCILED,
            format!("{ready} of {desired_replicas} worker replicas ready"),
        )
    } else {
        Report::failed(
            WORKER_READY,
            PROGRESSING,
            format!("Deployment {name}: {ready} of {desired_replicas} replicas ready"),
        )
    });
    Ok(())
}

/// The KEDA ScaledObject and its TriggerAuthentication when `scaling.engine` is
/// `Keda` (and none otherwise). A report when KEDA cannot be used.
async fn keda(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    ctx: &Context,
    namespace: &str,
    pair: &QueuePair,
) -> Result<Option<Report>> {
    let crds = Api::<CustomResourceDefinition>::all(ctx.client.clone());
    let installed = crds.get_opt(desired::KEDA_CRD).await?.is_some()
        && crds
            .get_opt(desired::KEDA_TRIGGER_AUTHENTICATION_CRD)
            .await?
            .is_some();
    let wanted = webhook.spec.worker.scaling.engine == ScalingEngine::Keda;
    if wanted && !installed {
        return Ok(Some(Report::failed(
            WORKER_READY,
            KEDA_NOT_INSTALLED,
            format!(
                "scaling.engine is Keda, but the {} and {} CRDs are not both installed; install KEDA or use Builtin",
                desired::KEDA_CRD,
                desired::KEDA_TRIGGER_AUTHENTICATION_CRD
            ),
        )));
    }
    if !installed {
        return Ok(None);
    }
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "ScaledObject",
    ));
    let objects: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let name = desired::worker_name(webhook);
    if wanted {
        keda_trigger_authentication(webhook, gateway, ctx, namespace).await?;
        let object = desired::keda_scaled_object(webhook, pair, &ctx.settings);
        objects
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
    } else if let Err(e) = objects.delete(&name, &Default::default()).await {
        // Switched back to the built-in engine: KEDA must let go of the Deployment.
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            return Err(e.into());
        }
    }
    Ok(None)
}

/// The TriggerAuthentication the ScaledObject names, applied before it (it is owned
/// by the Webhook and goes with it).
async fn keda_trigger_authentication(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    ctx: &Context,
    namespace: &str,
) -> Result<()> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "keda.sh",
        "v1alpha1",
        "TriggerAuthentication",
    ));
    let objects: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    objects
        .patch(
            &desired::worker_name(webhook),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&desired::keda_trigger_authentication(webhook, gateway)),
        )
        .await?;
    Ok(())
}

/// What deletion says while the main queue still holds `queued` messages: draining,
/// or stalled once deletion began longer than `stall` ago.
fn drain_report(webhook: &Webhook, queued: i64, stall: std::time::Duration) -> Report {
    let waited = webhook
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| {
            let since = std::time::SystemTime::from(t.0);
            std::time::SystemTime::now().duration_since(since).ok()
        })
        .unwrap_or_default();
    if waited > stall {
        Report::failed(
            READY,
            DRAIN_STALLED,
            format!(
                "{queued} message(s) still queued {} min after deletion began; check WorkerReady and the worker's logs (is its Deployment still there, is the handler failing?), or annotate {ALLOW_QUEUE_LOSS}=\"true\" to delete the queue with them",
                waited.as_secs() / 60
            ),
        )
    } else {
        Report::failed(
            READY,
            DRAINING,
            format!(
                "deleting: the route is gone; the worker is delivering the {queued} message(s) still queued, then the queues are deleted"
            ),
        )
    }
}

async fn cleanup(api: &Api<Webhook>, webhook: &Webhook, ctx: &Context) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    if webhook.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let aws = &ctx.aws;
    let status = webhook.status.clone().unwrap_or_default();
    let owner = webhook_owner(webhook);

    // The route first, so nothing new arrives; then the queues.
    if let Some(gateway) = match &status.gateway {
        Some(name) => {
            Api::<WebhookGateway>::all(ctx.client.clone())
                .get_opt(name)
                .await?
        }
        None => None,
    } {
        let gs = gateway.status.clone().unwrap_or_default();
        if let (Some(api_id), Some(root), Some(stage)) =
            (gs.rest_api_id, gs.root_resource_id, gs.stage_name)
        {
            let rest_api = ApiRef {
                id: api_id.clone(),
                root_resource_id: root,
            };
            aws.apis.delete_route(&rest_api, &webhook.spec.path).await?;
            // Deployed here rather than asked of the gateway: the queue may go only
            // once the live stage no longer accepts requests into it.
            ctx.deployer
                .deploy_after(&*aws.apis, &api_id, &stage, tokio::time::Instant::now())
                .await?;
            let deleted = aws
                .apis
                .delete_authorizers(
                    &api_id,
                    &authorizer_name(&namespace, &webhook.name_any()),
                    None,
                )
                .await?;
            revoke_invoke_permissions(&*aws.functions, &api_id, &deleted).await?;
        }
        if webhook.spec.auth.mode == AuthMode::ApiKey {
            aws.apis
                .delete_api_key(
                    &names::webhook_api_key(
                        &ctx.settings.name_prefix,
                        &namespace,
                        &webhook.name_any(),
                    ),
                    &owner,
                )
                .await?;
        }
    }

    let name = names::queue_base(&ctx.settings.name_prefix, &namespace, &webhook.name_any());
    if let Some(pair) = desired::queue_pair_in(&status) {
        let annotated = |key: &str| webhook.annotations().get(key).is_some_and(|v| v == "true");
        let backlog = match aws.queues.backlog(&pair).await {
            Ok(backlog) => Some(backlog),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        // Every message the route accepted is delivered before its queue goes:
        // the worker Deployment lives until the Webhook is gone (its owner
        // reference), and the scaler keeps sizing it while the queue drains.
        let queued = backlog.map_or(0, |b| b.visible + b.in_flight + b.delayed);
        if queued > 0 && !annotated(ALLOW_QUEUE_LOSS) {
            let report = drain_report(webhook, queued, ctx.timing.drain_stall);
            let mut next = status.clone();
            status::merge_reports(ctx, webhook, &mut next.conditions, &[report], "").await;
            status::write(api, webhook, Some(&status), &next).await?;
            // An error, not an Action: a cleanup that returns Ok has its finalizer
            // removed (kube-runtime's finalizer contract).
            return Err(Error::Blocked(format!(
                "{namespace}/{} is draining {queued} message(s)",
                webhook.name_any()
            )));
        }
        let dead = backlog.map_or(0, |b| b.dead_letter);
        if dead > 0 && !annotated(ALLOW_DLQ_LOSS) {
            let mut next = status.clone();
            let report = Report::failed(
                READY,
                DEAD_LETTER_NOT_EMPTY,
                format!(
                    "{dead} message(s) in the dead-letter queue; redrive or inspect them, or annotate {ALLOW_DLQ_LOSS}=\"true\" to delete anyway"
                ),
            );
            status::merge_reports(ctx, webhook, &mut next.conditions, &[report], "").await;
            status::write(api, webhook, Some(&status), &next).await?;
            return Err(Error::Blocked(format!(
                "dead-letter queue of {namespace}/{} is not empty",
                webhook.name_any()
            )));
        }
    }
    aws.queues.delete_pair(&name, &owner).await?;
    identity::release(ctx, webhook, &namespace).await?;
    tracing::info!(webhook = %webhook.name_any(), "deleted the webhook's AWS objects");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn deleted_ago(ago: Duration) -> Webhook {
        let mut webhook: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {"path": "/w", "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}}
        }))
        .unwrap();
        let since = std::time::SystemTime::now() - ago;
        webhook.metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::try_from(since).unwrap()));
        webhook
    }

    #[test]
    fn a_drain_is_reported_as_stalled_only_past_the_bound() {
        let stall = Duration::from_secs(3600);
        let fresh = drain_report(&deleted_ago(Duration::from_secs(60)), 7, stall);
        assert_eq!((fresh.ok, fresh.reason.as_str()), (false, DRAINING));
        assert!(fresh.message.contains("7 message(s)"), "{}", fresh.message);
        let stalled = drain_report(&deleted_ago(Duration::from_secs(7300)), 7, stall);
        assert_eq!(
            (stalled.ok, stalled.reason.as_str()),
            (false, DRAIN_STALLED)
        );
        assert!(stalled.message.contains("121 min"), "{}", stalled.message);
        assert!(
            stalled.message.contains(ALLOW_QUEUE_LOSS),
            "{}",
            stalled.message
        );
    }
}
