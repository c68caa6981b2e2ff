//! Runs both controllers until shutdown.

use futures::StreamExt;
use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
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

/// The Webhook of a watch event, when its gateway's reconcile depends on the event:
/// a deletion always, a change only when something the gateway index reads changed
/// (not the scaler's backlog and replica writes, nor most status updates).
fn concerning(
    concerns: &Mutex<HashMap<String, GatewayConcern>>,
    event: watcher::Event<Webhook>,
) -> Option<Webhook> {
    let mut concerns = concerns.lock().unwrap_or_else(PoisonError::into_inner);
    match event {
        watcher::Event::Delete(webhook) => {
            if let Some(uid) = &webhook.metadata.uid {
                concerns.remove(uid);
            }
            Some(webhook)
        }
        watcher::Event::Apply(webhook) | watcher::Event::InitApply(webhook) => {
            let uid = webhook.metadata.uid.clone()?;
            let concern = GatewayConcern::of(&webhook);
            (concerns.insert(uid, concern.clone()).as_ref() != Some(&concern)).then_some(webhook)
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
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
        let events = watcher(webhooks, watcher::Config::default())
            .default_backoff()
            .filter_map(move |event| {
                let concerning = event.map(|event| concerning(&concerns, event)).transpose();
                std::future::ready(concerning)
            });
        gateways = gateways.watches_stream(events, |webhook| {
            GatewayConcern::gateways(&webhook)
                .iter()
                .map(|name| ObjectRef::new(name))
                .collect::<Vec<_>>()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(generation: i64) -> Webhook {
        let mut webhook: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n", "uid": "u", "generation": generation},
            "spec": {"path": "/w", "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}},
            "status": {"gateway": "gw"}
        }))
        .expect("a valid Webhook");
        webhook.metadata.generation = Some(generation);
        webhook
    }

    #[test]
    fn a_gateway_hears_of_changes_it_reads_and_of_removals() {
        let concerns = Mutex::new(HashMap::new());
        let passes = |event| concerning(&concerns, event).is_some();
        let mut scaled = webhook(1);
        scaled.status.get_or_insert_with(Default::default).backlog = Some(Default::default());
        let cases = [
            ("first sight", watcher::Event::InitApply(webhook(1)), true),
            ("the scaler's write", watcher::Event::Apply(scaled), false),
            ("a spec change", watcher::Event::Apply(webhook(2)), true),
            ("the same again", watcher::Event::Apply(webhook(2)), false),
            ("gone", watcher::Event::Delete(webhook(2)), true),
            (
                "seen anew after it",
                watcher::Event::Apply(webhook(2)),
                true,
            ),
        ];
        for (name, event, expected) in cases {
            assert_eq!(passes(event), expected, "{name}");
        }
    }
}
