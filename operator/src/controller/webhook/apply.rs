//! Step 4 of a Webhook reconcile: the calls that make the [`Plan`] true, through the
//! AWS traits (`ctx.aws`) and the Kubernetes API, in dependency order: queue pair
//! (its ids checkpointed into status at once) → route (auth, then the route; the
//! gateway deploys it) → worker ServiceAccount and Deployment → KEDA objects. What
//! each part came to is returned as [`Applied`]; conditions are derived from it by
//! [`super::status`].

use hookline_crds::conditions::{QUEUE_READY, ROUTE_READY};
use hookline_crds::{RouteRef, Webhook, WebhookGateway, WebhookStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::Action;

use super::super::context::{Context, Timing};
use super::super::index;
use super::super::steady::Evidence;
use super::super::{Error, MANAGER, Result, identity};
use super::plan::{self, AuthPlan, KedaPlan, Plan, RoutePlan};
use crate::aws::functions::{authorizer_source_arn, authorizer_statement_id};
use crate::aws::{AwsError, DeletedAuthorizer, Functions, QueuePair, RouteAuth};
use crate::conditions::Report;
use crate::desired::{self, webhook_owner};

/// What each part came to; `None` for a part the pass did not reach.
#[derive(Debug, Default)]
pub struct Applied {
    /// The queue pair, as SQS has it.
    pub queue: Option<QueuePair>,
    /// The route.
    pub route: Option<RouteDone>,
    /// The worker.
    pub worker: Option<WorkerDone>,
    /// What stopped the pass, and against which part an AWS failure is reported.
    pub stopped: Option<Stop>,
}

/// Where the route stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteDone {
    /// Not built: the plan says why (the gateway has no REST API yet).
    Blocked(Report),
    /// Built, and waiting for the gateway to deploy it to `stage`.
    Undeployed {
        /// The route's resource.
        route: RouteRef,
        /// The stage it waits for.
        stage: String,
    },
    /// Live, but the gateway's resource policy does not enforce its allow list yet.
    PolicyPending {
        /// The route's resource.
        route: RouteRef,
    },
    /// Live at `url`.
    Live {
        /// The route's resource.
        route: RouteRef,
        /// The public URL.
        url: String,
        /// The stage it is live on.
        stage: String,
    },
}

/// Where the worker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerDone {
    /// Its identity cannot be made (why, as its condition).
    NoIdentity(Report),
    /// Deployed, but KEDA, which should scale it, is missing.
    KedaMissing(Report),
    /// Deployed.
    Deployed {
        /// The Deployment.
        name: String,
        /// Replicas it asks for.
        desired: i32,
        /// Replicas ready.
        ready: i32,
    },
}

/// The error that stopped a pass.
#[derive(Debug)]
pub struct Stop {
    /// The part whose AWS call failed (its condition says so); `None` for a failure
    /// that is no part's (the Kubernetes API).
    pub part: Option<&'static str>,
    /// The error the reconcile returns.
    pub error: Error,
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Self { part: None, error }
    }
}

impl From<kube::Error> for Stop {
    fn from(error: kube::Error) -> Self {
        Error::from(error).into()
    }
}

fn at(part: &'static str) -> impl Fn(AwsError) -> Stop {
    move |error| Stop {
        part: Some(part),
        error: error.into(),
    }
}

impl Applied {
    /// How the reconcile ends: resync once the route is live, soon while something
    /// is in progress. A route waiting for its deployment also waits a resync period:
    /// the gateway wakes the Webhook once the deployment is live
    /// ([`super::super::deployer::DeployRequests::deployed`]), and checking sooner
    /// costs four API Gateway reads per waiting Webhook per pass. With 200 Webhooks
    /// waiting those reads (about 50 a second) took every token of API Gateway's
    /// 10-a-second budget, and the deployment they waited for starved behind them.
    pub fn action(self, timing: &Timing) -> Result<Action> {
        match (self.stopped, self.route) {
            (Some(stop), _) => Err(stop.error),
            (None, Some(RouteDone::Live { .. } | RouteDone::Undeployed { .. })) => {
                Ok(Action::requeue(timing.resync))
            }
            (None, _) => Ok(Action::requeue(timing.pending)),
        }
    }
}

/// Applies `plan`; `base` is the status written so far (the queue ids checkpoint
/// goes on top of it).
pub async fn apply(
    ctx: &Context,
    api: &Api<Webhook>,
    webhook: &Webhook,
    gateway: &WebhookGateway,
    plan: &Plan,
    base: &WebhookStatus,
) -> Applied {
    let mut applied = Applied::default();
    if let Err(stop) = parts(ctx, api, webhook, gateway, plan, base, &mut applied).await {
        applied.stopped = Some(stop);
    }
    applied
}

async fn parts(
    ctx: &Context,
    api: &Api<Webhook>,
    webhook: &Webhook,
    gateway: &WebhookGateway,
    plan: &Plan,
    base: &WebhookStatus,
    applied: &mut Applied,
) -> Result<(), Stop> {
    if let Some((pair, route)) = super::steady::holds(ctx, webhook, plan).await {
        applied.queue = Some(pair.clone());
        applied.route = Some(route);
        applied.worker = Some(worker(ctx, webhook, gateway, plan, &pair).await?);
        return Ok(());
    }
    let uid = webhook.metadata.uid.as_deref().unwrap_or_default();
    ctx.steady.forget(uid);
    let pair = ctx
        .aws
        .queues
        .ensure_pair(&plan.queues)
        .await
        .map_err(at(QUEUE_READY))?;
    // External ids go into status the moment they exist.
    let checkpoint = super::status::with_queues(base.clone(), &pair);
    if webhook.status.as_ref().and_then(|s| s.queue.as_ref()) != checkpoint.queue.as_ref() {
        super::write(api, webhook, None, &checkpoint).await?;
    }
    applied.queue = Some(pair.clone());
    applied.route = Some(match &plan.route {
        Ok(route_plan) => {
            let (done, auth) = route(ctx, webhook, route_plan, &pair).await?;
            if let RouteDone::Live { route, .. } = &done {
                let generation = webhook.metadata.generation;
                let fingerprint =
                    super::steady::applied_fingerprint(generation, plan, &pair, route);
                let evidence = Evidence {
                    auth: Some(auth),
                    access_log: None,
                };
                ctx.steady.verified(uid, fingerprint, evidence);
            }
            done
        }
        Err(blocked) => RouteDone::Blocked(blocked.clone()),
    });
    applied.worker = Some(worker(ctx, webhook, gateway, plan, &pair).await?);
    Ok(())
}

/// Auth, then the route; a route that is not live yet is handed to the gateway to
/// deploy (deployments, stage throttles and the resource policy are the gateway's).
/// Also returns the route's authorization as AWS has it (an authorizer's id).
async fn route(
    ctx: &Context,
    webhook: &Webhook,
    plan: &RoutePlan,
    pair: &QueuePair,
) -> Result<(RouteDone, RouteAuth), Stop> {
    let aws = &ctx.aws;
    let api_id = &plan.api.id;
    let auth = auth(ctx, webhook, plan, pair).await?;
    let authorizer_in_use = match &auth {
        RouteAuth::Cognito { authorizer_id, .. } | RouteAuth::Lambda { authorizer_id } => {
            Some(authorizer_id.clone())
        }
        RouteAuth::None | RouteAuth::ApiKey => None,
    };
    let (resource_id, changed) = aws
        .apis
        .ensure_route(&plan.api, &plan.route_spec(pair, auth.clone()))
        .await
        .map_err(at(ROUTE_READY))?;
    // Unchanged now is not deployed: a change made just before the operator stopped
    // may never have been deployed. AWS knows; memory does not survive a restart.
    // Still in the request for the next deployment: not live, no need to ask.
    let live = !changed
        && !ctx.deploys.is_waiting(api_id, webhook)
        && aws
            .apis
            .route_is_live(api_id, &resource_id, &plan.stage)
            .await
            .map_err(at(ROUTE_READY))?;
    let route = RouteRef {
        rest_api_id: api_id.clone(),
        resource_id,
    };
    if !live {
        if changed {
            ctx.deploys.request(api_id, &plan.gateway, webhook);
        } else {
            ctx.deploys.remind(api_id, &plan.gateway, webhook);
        }
        let undeployed = RouteDone::Undeployed {
            route,
            stage: plan.stage.clone(),
        };
        return Ok((undeployed, auth));
    }
    let uid = webhook.metadata.uid.as_deref().unwrap_or_default();
    if ctx.deploys.awaits(uid) {
        // Authorizers the route no longer uses (replaced, or the mode changed), now
        // that the deployment that stopped using them is live.
        let deleted = aws
            .apis
            .delete_authorizers(api_id, &plan.authorizer_name, authorizer_in_use.as_deref())
            .await
            .map_err(at(ROUTE_READY))?;
        revoke_invoke_permissions(&*aws.functions, api_id, &deleted)
            .await
            .map_err(at(ROUTE_READY))?;
        ctx.deploys.seen_live(uid);
    }
    if !plan.allow_list.is_empty()
        && !index::policy_enforces(
            ctx.known_policy(api_id).flatten().as_ref(),
            &plan.path,
            &plan.allow_list,
        )
    {
        return Ok((RouteDone::PolicyPending { route }, auth));
    }
    let live = RouteDone::Live {
        route,
        url: plan.url.clone(),
        stage: plan.stage.clone(),
    };
    Ok((live, auth))
}

/// The route's auth as API Gateway needs it: the API key, or the authorizer (and for
/// Lambda, API Gateway's grant to invoke the function).
async fn auth(
    ctx: &Context,
    webhook: &Webhook,
    plan: &RoutePlan,
    pair: &QueuePair,
) -> Result<RouteAuth, Stop> {
    let aws = &ctx.aws;
    let api_id = &plan.api.id;
    Ok(match &plan.auth {
        AuthPlan::None => RouteAuth::None,
        AuthPlan::ApiKey {
            key_name,
            value,
            secret,
        } => {
            let value = match value {
                Some(value) => value.clone(),
                None => generate_api_key(ctx, webhook, secret).await?,
            };
            aws.apis
                .ensure_api_key(
                    key_name,
                    &value,
                    api_id,
                    &plan.stage,
                    &webhook_owner(webhook),
                )
                .await
                .map_err(at(ROUTE_READY))?;
            RouteAuth::ApiKey
        }
        AuthPlan::Cognito { authorizer, scopes } => RouteAuth::Cognito {
            authorizer_id: aws
                .apis
                .ensure_authorizer(api_id, authorizer)
                .await
                .map_err(at(ROUTE_READY))?,
            scopes: scopes.clone(),
        },
        AuthPlan::Lambda {
            authorizer,
            function_arn,
        } => {
            let authorizer_id = aws
                .apis
                .ensure_authorizer(api_id, authorizer)
                .await
                .map_err(at(ROUTE_READY))?;
            // API Gateway may invoke the function only with a grant on it.
            let source = authorizer_source_arn(&pair.queue.arn, api_id, &authorizer_id)
                .ok_or(Error::Malformed("queue ARN"))?;
            aws.functions
                .ensure_invoke_permission(
                    function_arn,
                    &authorizer_statement_id(api_id, &authorizer_id),
                    &source,
                )
                .await
                .map_err(at(ROUTE_READY))?;
            RouteAuth::Lambda { authorizer_id }
        }
    })
}

/// A generated API key, stored in a new Secret owned by the Webhook.
async fn generate_api_key(
    ctx: &Context,
    webhook: &Webhook,
    secret: &(String, String),
) -> Result<String> {
    let value: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect();
    let namespace = webhook
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::Malformed("namespace"))?;
    Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .create(
            &PostParams::default(),
            &plan::api_key_secret(webhook, secret, &value),
        )
        .await?;
    Ok(value)
}

/// Removes the grants that let API Gateway invoke deleted Lambda authorizers.
pub(super) async fn revoke_invoke_permissions(
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

/// The worker's identity, its Deployment, and KEDA's objects for it.
async fn worker(
    ctx: &Context,
    webhook: &Webhook,
    gateway: &WebhookGateway,
    plan: &Plan,
    pair: &QueuePair,
) -> Result<WorkerDone, Stop> {
    let namespace = webhook
        .metadata
        .namespace
        .as_deref()
        .ok_or(Error::Malformed("namespace"))?;
    let account = match identity::ensure(ctx, webhook, gateway, namespace).await? {
        Ok(account) => account,
        Err(report) => return Ok(WorkerDone::NoIdentity(report)),
    };
    // Known as soon as the gateway has its REST API, so the first Deployment already
    // carries the URL that status.url will show; a route that cannot be planned now
    // (its auth Secret missing) keeps the one it had.
    let public_url = plan
        .route
        .as_ref()
        .ok()
        .map(|route| route.url.as_str())
        .or_else(|| webhook.status.as_ref().and_then(|s| s.url.as_deref()));
    let deployment = plan::worker_deployment(webhook, pair, &account, &ctx.settings, public_url);
    let applied = Api::<Deployment>::namespaced(ctx.client.clone(), namespace)
        .patch(
            &plan.worker_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&deployment),
        )
        .await?;
    match &plan.keda {
        KedaPlan::Missing(report) => return Ok(WorkerDone::KedaMissing(report.clone())),
        KedaPlan::Absent => {}
        KedaPlan::Apply => {
            // The TriggerAuthentication first: the ScaledObject names it.
            keda_object(ctx, namespace, "TriggerAuthentication")
                .patch(
                    &plan.worker_name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&desired::keda_trigger_authentication(webhook, gateway)),
                )
                .await?;
            keda_object(ctx, namespace, "ScaledObject")
                .patch(
                    &plan.worker_name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&desired::keda_scaled_object(webhook, pair, &ctx.settings)),
                )
                .await?;
        }
        KedaPlan::Remove => {
            // Switched back to the built-in engine: KEDA must let go of the Deployment.
            let objects = keda_object(ctx, namespace, "ScaledObject");
            if let Err(e) = objects.delete(&plan.worker_name, &Default::default()).await
                && !matches!(&e, kube::Error::Api(s) if s.code == 404)
            {
                return Err(e.into());
            }
        }
    }
    Ok(WorkerDone::Deployed {
        name: plan.worker_name.clone(),
        desired: applied.spec.replicas.unwrap_or(1),
        ready: applied.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    })
}

fn keda_object(ctx: &Context, namespace: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("keda.sh", "v1alpha1", kind));
    Api::namespaced_with(ctx.client.clone(), namespace, &resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_waiting_for_its_deployment_waits_for_the_gateway_to_wake_it() {
        let timing = Timing::default();
        let route = RouteRef {
            rest_api_id: "api".to_owned(),
            resource_id: "res".to_owned(),
        };
        let ends = |route: Option<RouteDone>| {
            Applied {
                route,
                ..Applied::default()
            }
            .action(&timing)
            .ok()
        };
        let undeployed = RouteDone::Undeployed {
            route: route.clone(),
            stage: "live".to_owned(),
        };
        assert_eq!(ends(Some(undeployed)), Some(Action::requeue(timing.resync)));
        assert_eq!(
            ends(Some(RouteDone::PolicyPending { route })),
            Some(Action::requeue(timing.pending))
        );
        assert_eq!(ends(None), Some(Action::requeue(timing.pending)));
    }
}
