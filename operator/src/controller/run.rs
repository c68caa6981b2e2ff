//! Runs both controllers until shutdown.

use futures::StreamExt;
use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use super::context::Context;
use super::index::GatewayConcern;
use super::{Error, gateway, webhook};

async fn measured(
    kind: &'static str,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    };
    ctx.metrics.observe(kind, outcome, started.elapsed());
    result
}

/// The gateways to reconcile for a watch event of `webhook`: none when nothing the
/// gateway index reads changed (the scaler's writes, most status updates).
fn gateways_concerned(
    concerns: &Mutex<HashMap<String, GatewayConcern>>,
    webhook: &Webhook,
) -> Vec<ObjectRef<WebhookGateway>> {
    let Some(uid) = webhook.metadata.uid.clone() else {
        return Vec::new();
    };
    let concern = GatewayConcern::of(webhook);
    let mut concerns = concerns.lock().unwrap_or_else(PoisonError::into_inner);
    let changed = if webhook.metadata.deletion_timestamp.is_some() {
        // Possibly the last event of it: not kept, it would never be removed.
        concerns.remove(&uid);
        true
    } else {
        concerns.insert(uid, concern.clone()).as_ref() != Some(&concern)
    };
    if !changed {
        return Vec::new();
    }
    GatewayConcern::gateways(webhook)
        .iter()
        .map(|name| ObjectRef::new(name))
        .collect()
}

/// Reconciles of one kind running at once.
pub const CONCURRENCY: u16 = 16;

fn error_policy<K>(_obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, kind = error.metric_label(), "reconcile failed; retrying");
    Action::requeue(ctx.timing.error)
}

/// Runs the gateway controller and one webhook controller per watched namespace
/// (`ctx.namespaces`; all namespaces when empty) until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let scopes: Vec<Option<String>> = if ctx.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.namespaces.iter().cloned().map(Some).collect()
    };
    let mut gateways = Controller::new(
        Api::<WebhookGateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .reconcile_on(ctx.deploys.gateway_triggers());
    // The gateway applies what its Webhooks share (stage throttles, resource policy),
    // so a Webhook's change that the index reads reconciles its gateway.
    let concerns = Arc::new(Mutex::new(HashMap::new()));
    for namespace in &scopes {
        let webhooks = match namespace {
            Some(ns) => Api::<Webhook>::namespaced(client.clone(), ns),
            None => Api::<Webhook>::all(client.clone()),
        };
        let concerns = concerns.clone();
        gateways = gateways.watches(webhooks, watcher::Config::default(), move |webhook| {
            gateways_concerned(&concerns, &webhook)
        });
    }
    let gateways = gateways
        .graceful_shutdown_on(shutdown.clone())
        .run(gateway::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gateway controller");
            }
        });
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|namespace| {
            let (webhooks, deployments) = match &namespace {
                Some(ns) => (
                    Api::<Webhook>::namespaced(client.clone(), ns),
                    Api::<Deployment>::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::<Webhook>::all(client.clone()),
                    Api::<Deployment>::all(client.clone()),
                ),
            };
            Controller::new(webhooks, watcher::Config::default())
                .owns(
                    deployments,
                    watcher::Config::default().labels("app.kubernetes.io/managed-by=hookline"),
                )
                // Woken once the deployment its route waited for is live.
                .reconcile_on(ctx.deploys.webhook_triggers(namespace))
        })
        .collect();
    // Reconciles read other Webhooks from these caches.
    let stores: Vec<_> = controllers.iter().map(Controller::store).collect();
    *ctx.webhook_stores
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stores);
    let webhooks = futures::future::join_all(controllers.into_iter().map(|controller| {
        controller
            .graceful_shutdown_on(shutdown.clone())
            .run(
                |obj, ctx: Arc<Context>| async move {
                    measured("webhook", ctx.clone(), webhook::reconcile(obj, ctx)).await
                },
                error_policy,
                ctx.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "webhook controller");
                }
            })
    }));
    tokio::join!(gateways, webhooks);
}
