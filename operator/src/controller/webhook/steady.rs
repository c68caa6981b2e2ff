//! The steady-state resync of a Webhook (see [`crate::controller::steady`]): when
//! the last full pass left the queue pair and the route live and the plan is the
//! same, two reads instead of the full pass: `GetQueueAttributes` of the queue (it
//! exists, with the planned settings and its redrive policy to the dead-letter
//! queue) and `GetMethod` of the route (it exists, with the planned authorization,
//! the SQS integration to that queue and its responses). These are the two objects
//! an accepted request passes through on its way to the queue; a miss in either
//! means the full pass, in the same reconcile, which recreates what is gone.
//!
//! Left to the audit (the first pass after a start, then every audit interval):
//! the dead-letter queue itself (its existence, retention and redrive-allow policy),
//! the queues' tags, whether the stage still serves a deployment containing the
//! route (only Hookline deploys; the gateway's steady read sees a stage that lost
//! its deployment), the API key and its usage plan, the authorizer and a Lambda
//! authorizer's invoke permission. The worker's identity (with the namespace's IRSA
//! role), ServiceAccount and Deployment are applied on every pass as before.

use hookline_crds::{RouteRef, Webhook};

use super::super::context::Context;
use super::super::index;
use super::super::steady::fingerprint;
use super::apply::RouteDone;
use super::plan::Plan;
use crate::aws::{AwsError, QueuePair, QueueRef};

/// What a full pass's result is fingerprinted with: the plan and the ids the steady
/// reads name (the queue pair and the route), at the Webhook's generation.
pub fn applied_fingerprint(
    generation: Option<i64>,
    plan: &Plan,
    pair: &QueuePair,
    route: &RouteRef,
) -> u64 {
    fingerprint(&(plan, generation, pair, route))
}

/// The queue pair and the live route, when the pass may end its AWS part after the
/// two reads: the status is at this generation with a live route, the last full
/// pass proved this plan, nothing waits for a deployment, an allow list is known
/// enforced, and both reads match. `None`: run the full pass. An AWS failure of
/// either read is the full pass's to report.
pub async fn holds(
    ctx: &Context,
    webhook: &Webhook,
    plan: &Plan,
) -> Option<(QueuePair, RouteDone)> {
    let uid = webhook.metadata.uid.as_deref()?;
    let status = webhook.status.as_ref()?;
    if status.observed_generation != webhook.metadata.generation || status.url.is_none() {
        return None;
    }
    let route_plan = plan.route.as_ref().ok()?;
    let (queue, dead_letter) = (status.queue.as_ref()?, status.dead_letter_queue.as_ref()?);
    let pair = QueuePair {
        queue: QueueRef {
            url: queue.url.clone(),
            arn: queue.arn.clone(),
        },
        dead_letter: QueueRef {
            url: dead_letter.url.clone(),
            arn: dead_letter.arn.clone(),
        },
    };
    let route = status.route.clone()?;
    let fingerprint = applied_fingerprint(webhook.metadata.generation, plan, &pair, &route);
    let verified = ctx.steady.trusted(uid, fingerprint)?;
    let auth = verified.evidence.auth?;
    if ctx.deploys.awaits(uid)
        || (!route_plan.allow_list.is_empty()
            && !index::policy_enforces(
                ctx.known_policy(&route.rest_api_id).flatten().as_ref(),
                &route_plan.path,
                &route_plan.allow_list,
            ))
    {
        return None;
    }
    let aws = &ctx.aws;
    let spec = route_plan.route_spec(&pair, auth);
    let checked: Result<bool, AwsError> = async {
        Ok(aws.queues.queue_matches(&plan.queues, &pair).await?
            && aws
                .apis
                .route_matches(&route.rest_api_id, &route.resource_id, &spec)
                .await?)
    }
    .await;
    match checked {
        Ok(true) => Some((
            pair,
            RouteDone::Live {
                route,
                url: route_plan.url.clone(),
                stage: route_plan.stage.clone(),
            },
        )),
        Ok(false) => {
            tracing::info!("drift in the queue or the route: full pass");
            None
        }
        Err(e) => {
            tracing::info!(error = %e, "steady-state read failed: full pass");
            None
        }
    }
}
