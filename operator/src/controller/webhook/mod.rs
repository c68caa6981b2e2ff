//! The `Webhook` reconciler, as five steps, a module each:
//!
//! ```text
//! observe ──► validate ──► plan ──► apply ──► status
//! (reads)     (pure)       (pure)   (calls)   (pure)
//! ```
//!
//! # Layout
//! - [`observe`]: the gateway, the namespace's labels, the Secrets, the other
//!   Webhooks, KEDA's CRDs: every read, into one value.
//! - [`validate`]: what the schema cannot check, `Result<Valid, Invalid>`; an invalid
//!   spec gets no AWS call.
//! - [`plan`]: what the queue pair, the route and the worker should be.
//! - [`apply`]: queue pair (ids checkpointed into status) → route (deployed by the
//!   gateway's reconcile, which owns the stage and the resource policy) → worker.
//! - [`status`]: the status fields and the parts' reports from what apply came to.
//! - [`steady`]: two AWS reads instead of the queue pair's and the route's full
//!   pass while nothing changed.
//! - [`cleanup`]: deletion, route first, queues once drained.

pub mod apply;
pub mod cleanup;
pub mod observe;
pub mod plan;
pub mod status;
pub mod steady;
pub mod validate;

use hookline_crds::{Webhook, WebhookStatus};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use std::sync::Arc;

use super::context::Context;
use super::{Error, FINALIZER, Result};
use validate::Invalid;

/// Reconciles one webhook; the only top-level action is the finalizer.
#[tracing::instrument(skip(webhook, ctx), fields(webhook = %format!("{}/{}", webhook.namespace().unwrap_or_default(), webhook.name_any())))]
pub async fn reconcile(webhook: Arc<Webhook>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    let api: Api<Webhook> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, webhook, |event| async {
        match event {
            Finalizer::Apply(webhook) => converge(&api, &webhook, &ctx).await,
            Finalizer::Cleanup(webhook) => cleanup::cleanup(&api, &webhook, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// The five steps, then the one status write of the pass.
async fn converge(api: &Api<Webhook>, webhook: &Webhook, ctx: &Context) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    webhook
        .metadata
        .uid
        .as_ref()
        .ok_or(Error::Malformed("uid"))?;
    let observed = observe::observe(ctx, webhook, &namespace).await?;
    let mut base = status::base(webhook);
    let valid = match validate::validate(webhook, &observed, &ctx.quotas) {
        Ok(valid) => valid,
        Err(Invalid(report)) => {
            super::status::merge_reports(ctx, webhook, &mut base.conditions, &[report], "").await;
            write(api, webhook, webhook.status.as_ref(), &base).await?;
            return Ok(Action::requeue(ctx.timing.error));
        }
    };
    base.gateway = Some(valid.gateway.name_any());
    let plan = plan::plan(webhook, &valid, &observed, &ctx.settings);
    let applied = apply::apply(ctx, api, webhook, &valid.gateway, &plan, &base).await;
    let (mut next, reports) = status::status(base, webhook, &applied);
    super::status::merge_reports(
        ctx,
        webhook,
        &mut next.conditions,
        &reports,
        "requests are queued and delivered",
    )
    .await;
    write(api, webhook, webhook.status.as_ref(), &next).await?;
    applied.action(&ctx.timing)
}

/// Writes the fields the reconcile owns ([`status::operator_fields`]) unless they are
/// unchanged from `current`.
pub(crate) async fn write(
    api: &Api<Webhook>,
    webhook: &Webhook,
    current: Option<&WebhookStatus>,
    next: &WebhookStatus,
) -> Result<()> {
    let current = current.map(status::operator_fields);
    super::status::write(
        api,
        webhook,
        current.as_ref(),
        &status::operator_fields(next),
    )
    .await
}
