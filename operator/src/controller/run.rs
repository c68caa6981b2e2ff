//! Runs both controllers until shutdown.

use futures::StreamExt;
use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use super::context::{self, Context};
use super::index::GatewayConcern;
use super::{Error, gateway, retry, webhook};

/// Runs one reconcile, counts it, and logs its outcome once (info; warn for a
/// failure): the object, the result and when it runs again, so a crashed instance's
/// log says what it was doing.
async fn measured<K>(
    kind: &'static str,
    obj: &K,
    ctx: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, Error>>,
) -> Result<Action, Error>
where
    K: kube::Resource,
{
    let object = match obj.meta().namespace.as_deref() {
        Some(namespace) => format!(
            "{namespace}/{}",
            obj.meta().name.as_deref().unwrap_or_default()
        ),
        None => obj.meta().name.clone().unwrap_or_default(),
    };
    let started = std::time::Instant::now();
    let in_flight = ctx.metrics.started(kind);
    let result = reconcile.await;
    drop(in_flight);
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    };
    ctx.metrics.observe(kind, outcome, elapsed);
    let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let key = retry::key(obj);
    match &result {
        Ok(action) => {
            ctx.retries.succeeded(&key);
            tracing::info!(
                kind,
                %object,
                result = outcome,
                requeue = %requeue(action, &ctx.timing),
                millis,
                "reconciled"
            );
        }
        Err(error) => {
            // error_policy reads this delay back: the log says when the retry runs.
            let delay = ctx.retries.failed(&key, ctx.timing.error);
            tracing::warn!(
                kind,
                %object,
                result = outcome,
                %error,
                requeue = %format!("{:.1}s", delay.as_secs_f64()),
                millis,
                "reconciled"
            );
        }
    }
    result
}

/// When an action runs the reconcile again, in words.
fn requeue(action: &Action, timing: &super::context::Timing) -> String {
    if *action == Action::await_change() {
        return "on change".to_owned();
    }
    [timing.resync, timing.pending, timing.error]
        .into_iter()
        .find(|d| *action == Action::requeue(*d))
        .map_or_else(|| format!("{action:?}"), |d| format!("{}s", d.as_secs()))
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

/// How every watch lists: in pages of [`context::LIST_PAGE`] objects, so the first
/// listing of thousands of Webhooks never sits in memory at once (the default page
/// is 500).
fn watch_config() -> watcher::Config {
    watcher::Config::default().page_size(context::LIST_PAGE)
}

/// Reconciles of one kind running at once.
pub const CONCURRENCY: u16 = 16;

/// Retries a failed reconcile after the delay [`measured`] chose for the object.
fn error_policy<K: kube::Resource>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::debug!(%error, kind = error.metric_label(), "reconcile failed; retrying");
    Action::requeue(ctx.retries.delay(&retry::key(&*obj), ctx.timing.error))
}

/// Runs the gateway controller and one webhook controller per watched namespace
/// (`ctx.namespaces`; all namespaces when empty) until `shutdown` completes.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let scopes: Vec<Option<String>> = if ctx.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.namespaces.iter().cloned().map(Some).collect()
    };
    tokio::join!(
        gateways(ctx.clone(), &scopes, shutdown.clone()),
        webhooks(ctx.clone(), scopes.clone(), shutdown)
    );
}

/// The gateway controller, woken by its own objects, by deploy requests, and by the
/// Webhook changes its index reads.
async fn gateways(
    ctx: Arc<Context>,
    scopes: &[Option<String>],
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let mut gateways = Controller::new(
        Api::<WebhookGateway>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(ctx.concurrency))
    .reconcile_on(ctx.deploys.gateway_triggers());
    // The gateway applies what its Webhooks share (stage throttles, resource policy),
    // so a Webhook's change that the index reads reconciles its gateway.
    let concerns = Arc::new(Mutex::new(HashMap::new()));
    let mut stores = Vec::new();
    for namespace in scopes {
        let webhooks = match namespace {
            Some(ns) => Api::<Webhook>::namespaced(client.clone(), ns),
            None => Api::<Webhook>::all(client.clone()),
        };
        let concerns = concerns.clone();
        // The index is read from the cache this watch fills, and the reflector stores
        // each event before passing it on: the reconcile it wakes sees that change.
        let (store, writer) = reflector::store();
        stores.push(store);
        let watch = watcher(webhooks, watch_config())
            .default_backoff()
            .modify(context::slim_for_index);
        let events = reflector::reflector(writer, watch).filter_map(move |event| {
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
    *ctx.index_stores
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some(stores);
    gateways
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |obj, ctx: Arc<Context>| async move {
                let seen = obj.clone();
                measured("gateway", &*seen, ctx.clone(), gateway::reconcile(obj, ctx)).await
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "gateway controller");
            }
        })
        .await;
}

/// One webhook controller per scope; their caches go into `ctx.webhook_stores`.
async fn webhooks(
    ctx: Arc<Context>,
    scopes: Vec<Option<String>>,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let client = ctx.client.clone();
    let controllers: Vec<_> = scopes
        .into_iter()
        .map(|namespace| {
            let (webhooks, deployments) = match &namespace {
                Some(ns) => (
                    Api::<Webhook>::namespaced(client.clone(), ns),
                    Api::<PartialObjectMeta<Deployment>>::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::<Webhook>::all(client.clone()),
                    Api::<PartialObjectMeta<Deployment>>::all(client.clone()),
                ),
            };
            let (store, writer) = reflector::store();
            let watch = watcher(webhooks, watch_config())
                .default_backoff()
                .modify(context::slim);
            // Only the owner references of worker Deployments wake a reconcile, so
            // their metadata is all that is watched: never a pod template.
            let workers = watcher(
                deployments,
                watch_config().labels("app.kubernetes.io/managed-by=hookline"),
            )
            .default_backoff()
            .touched_objects();
            Controller::for_stream(reflector::reflector(writer, watch).applied_objects(), store)
                .with_config(controller::Config::default().concurrency(ctx.concurrency))
                .owns_stream(workers)
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
                    let seen = obj.clone();
                    measured("webhook", &*seen, ctx.clone(), webhook::reconcile(obj, ctx)).await
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
    webhooks.await;
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
    fn the_outcome_says_when_the_reconcile_runs_again() {
        let timing = super::super::context::Timing::default();
        assert_eq!(requeue(&Action::requeue(timing.resync), &timing), "300s");
        assert_eq!(requeue(&Action::requeue(timing.pending), &timing), "15s");
        assert_eq!(requeue(&Action::await_change(), &timing), "on change");
        let other = requeue(&Action::requeue(std::time::Duration::from_secs(7)), &timing);
        assert!(other.contains("7s"), "{other}");
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
