//! The `WebhookGateway` reconciler, as five steps, a module each:
//!
//! ```text
//! observe ──► validate ──► plan ──► apply ──► status
//! (reads)     (pure)       (pure)   (calls)   (pure)
//! ```
//!
//! # Layout
//! - [`observe`]: the Webhooks, the hosted zone, the ownership record, the
//!   account's CloudWatch role, the certificate in status.
//! - [`validate`]: the zone exists and no other owner claims the hostname.
//! - [`plan`]: role, log group, REST API and stage (per-route throttles from the
//!   gateway index), certificate, resource policy, records.
//! - [`apply`]: the calls, ids checkpointed as they appear; one part's failure does
//!   not stop the parts that do not depend on it.
//! - [`status`]: each part's report, and the error the pass returns.
//! - [`steady`]: two reads instead of the full pass while nothing changed.
//! - [`cleanup`]: deletion, records before the domain before the API.

pub mod apply;
pub mod cleanup;
pub mod observe;
pub mod plan;
pub mod status;
pub mod steady;
pub mod validate;

use hookline_crds::{Webhook, WebhookGateway};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use std::sync::Arc;

use super::context::Context;
use super::steady::Evidence;
use super::{Error, FINALIZER, Result};

/// Reconciles one gateway; the only top-level action is the finalizer.
#[tracing::instrument(skip(gateway, ctx), fields(gateway = %gateway.name_any()))]
pub async fn reconcile(gateway: Arc<WebhookGateway>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<WebhookGateway> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, gateway, |event| async {
        match event {
            Finalizer::Apply(gateway) => converge(&api, &gateway, &ctx).await,
            Finalizer::Cleanup(gateway) => cleanup::cleanup(&api, &gateway, &ctx).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// The five steps, then the one status write of the pass.
async fn converge(
    api: &Api<WebhookGateway>,
    gateway: &WebhookGateway,
    ctx: &Context,
) -> Result<Action> {
    let current = gateway.status.clone();
    let mut next = current.clone().unwrap_or_default();
    next.observed_generation = gateway.metadata.generation;
    let webhooks = observe::webhooks(ctx).await?;
    let plan = plan::plan(
        gateway,
        &webhooks.1,
        &ctx.settings,
        &ctx.quotas,
        &ctx.cluster,
    );
    let generation = gateway.metadata.generation;
    let uid = gateway.metadata.uid.clone().unwrap_or_default();
    let fingerprint = steady::applied_fingerprint(generation, current.as_ref(), &plan);
    if steady::holds(ctx, gateway, &plan, fingerprint).await {
        return Ok(Action::requeue(ctx.timing.resync));
    }
    ctx.steady.forget(&uid);
    let observed = observe::observe(ctx, gateway, webhooks).await;
    if let Ok(zone) = &observed.zone {
        next.hosted_zone_id = Some(zone.clone());
    }
    let (mut applied, mut derived) = match validate::validate(gateway, &observed, &ctx.cluster) {
        Ok(valid) => {
            let applied =
                apply::apply(ctx, api, gateway, &observed, &plan, &valid.zone, &mut next).await;
            if applied.stopped.is_none() {
                next.url = Some(plan.url.clone());
                next.attached_webhooks = Some(plan.attached);
            }
            let derived = status::derive(gateway, &ctx.settings.region, &applied);
            (applied, derived)
        }
        Err(invalid) => (
            apply::Applied::default(),
            status::Derived {
                reports: vec![invalid.report],
                error: invalid.error.map(|e| *e),
            },
        ),
    };
    // What the Webhooks share is applied even while the hostname waits: their routes
    // live on the REST API, which exists apart from the domain.
    let aliased = applied.aliased();
    let stopped = applied.stopped.take();
    if stopped.is_none() {
        let mut shared = apply::Applied::default();
        apply::shared(ctx, &next, &plan, observed.read_at, &mut shared).await;
        derived
            .reports
            .extend(status::derive_shared(&shared, &mut derived.error));
        applied.deploy_pending = shared.deploy_pending;
    }
    let reports = super::status::conditions(
        &derived.reports,
        status::INFORMATIONAL,
        "the gateway serves webhooks",
    );
    super::status::merge_informational(ctx, gateway, &mut next.conditions, &reports).await;
    super::status::write(api, gateway, current.as_ref(), &next).await?;
    match (stopped, derived.error) {
        (Some(e), _) => Err(e),
        (None, Some(e)) => Err(e.into()),
        (None, None) if aliased && !applied.deploy_pending => {
            // Every part ready, informational ones included: access logs waiting
            // for the account's CloudWatch role keep the full pass, which reads it.
            if reports.iter().all(|r| r.ok) {
                let evidence = Evidence {
                    auth: None,
                    access_log: applied.access_log(),
                };
                let fingerprint = steady::applied_fingerprint(generation, Some(&next), &plan);
                ctx.steady.verified(&uid, fingerprint, evidence);
            }
            Ok(Action::requeue(ctx.timing.resync))
        }
        (None, None) => Ok(Action::requeue(ctx.timing.pending)),
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

/// The gateway the step modules' unit tests start from.
#[cfg(test)]
mod fixtures {
    use hookline_crds::WebhookGateway;

    pub(super) fn gateway() -> WebhookGateway {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "WebhookGateway",
            "metadata": {"name": "gw", "uid": "g1"},
            "spec": {"hostname": "hooks.example.com", "hostedZone": {"name": "example.com"}},
        }))
        .expect("a valid WebhookGateway")
    }
}
