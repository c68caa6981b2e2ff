//! Coalesced stage deployments, and the requests for them ([`DeployRequests`]). A
//! deployment snapshots the whole REST API, so one started after a change includes it: many webhooks changing at once share one
//! `CreateDeployment` per gateway, instead of one each. AWS allows one
//! `CreateDeployment` per 5 s per *account* (all gateways together), which the
//! caller's rate limits enforce (see `aws::limits`); coalescing is what keeps many
//! gateways from queueing behind each other there.

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use hookline_crds::{Webhook, WebhookGateway};
use kube::runtime::reflector::ObjectRef;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::aws::{AwsError, Stages};

/// Per-API deployment state.
#[derive(Debug, Default)]
struct ApiState {
    /// When the last deployment that succeeded was started.
    last_started: Option<Instant>,
}

/// Coalesces deployments per REST API.
#[derive(Debug)]
pub struct Deployer {
    window: Duration,
    apis: Mutex<HashMap<String, Arc<Mutex<ApiState>>>>,
    deployments: std::sync::atomic::AtomicU64,
}

impl Deployer {
    /// Waits `window` to collect changes before each deployment.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            apis: Mutex::default(),
            deployments: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Deployments made so far (for tests and benchmarks).
    pub fn count(&self) -> u64 {
        self.deployments.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes sure a deployment of `api_id` to `stage` started after `changed_at` (the
    /// moment the caller's change was complete) exists; shares one with every caller
    /// whose change it covers.
    pub async fn deploy_after(
        &self,
        apis: &dyn Stages,
        api_id: &str,
        stage: &str,
        changed_at: Instant,
    ) -> Result<(), AwsError> {
        let state = self
            .apis
            .lock()
            .await
            .entry(api_id.to_owned())
            .or_default()
            .clone();
        let mut state = state.lock().await;
        if state
            .last_started
            .is_some_and(|started| started > changed_at)
        {
            return Ok(());
        }
        // Others changing the same API now will queue on the lock and find their
        // change covered by this deployment.
        tokio::time::sleep(self.window).await;
        let started = Instant::now();
        apis.deploy(api_id, stage).await?;
        self.deployments
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        state.last_started = Some(started);
        Ok(())
    }
}

/// What a gateway's next deployment must cover: the latest route change a Webhook
/// reconcile made on the REST API, and the Webhooks waiting to see theirs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// When the latest change was complete.
    pub changed_at: Instant,
    /// The Webhooks whose routes wait for the deployment.
    pub waiting: Vec<ObjectRef<Webhook>>,
}

/// Deployment requests from Webhook reconciles to gateway reconciles. A Webhook
/// reconcile changes only its own route; the gateway reconcile deploys (the stage
/// and the resource policy are its, and a deployment snapshots the whole API), then
/// wakes the Webhooks that waited so they report their routes live. Memory only: a
/// restarted operator finds undeployed routes from AWS's markers
/// ([`crate::aws::RestApis::route_is_live`]) and asks again.
#[derive(Debug, Default)]
pub struct DeployRequests {
    pending: std::sync::Mutex<HashMap<String, Pending>>,
    /// Webhooks (by uid) that asked for a deployment and have not yet seen it live:
    /// once they do, the authorizers their routes stopped using can go.
    awaiting: std::sync::Mutex<HashSet<String>>,
    gateways: std::sync::Mutex<Vec<UnboundedSender<ObjectRef<WebhookGateway>>>>,
    webhooks: std::sync::Mutex<Vec<WebhookTrigger>>,
}

/// A webhook controller's trigger, with the namespace it watches (all when `None`).
type WebhookTrigger = (Option<String>, UnboundedSender<ObjectRef<Webhook>>);

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeployRequests {
    /// Gateways to reconcile because a Webhook asked for a deployment (one stream
    /// per running gateway controller).
    pub fn gateway_triggers(&self) -> UnboundedReceiver<ObjectRef<WebhookGateway>> {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        locked(&self.gateways).push(sender);
        receiver
    }

    /// Webhooks (of `namespace`, or all) to reconcile because the deployment they
    /// waited for is live.
    pub fn webhook_triggers(
        &self,
        namespace: Option<String>,
    ) -> UnboundedReceiver<ObjectRef<Webhook>> {
        let (sender, receiver) = futures::channel::mpsc::unbounded();
        locked(&self.webhooks).push((namespace, sender));
        receiver
    }

    /// Asks `gateway`'s reconcile to deploy `api_id`, for `webhook`'s route changed
    /// just now.
    pub fn request(&self, api_id: &str, gateway: &str, webhook: &Webhook) {
        self.ask(api_id, gateway, webhook, true);
    }

    /// Asks again for `webhook`'s route changed earlier and not live yet (a pass
    /// that changed nothing): it joins the next deployment without moving the
    /// moment the changes were complete. Only a change does that; otherwise the
    /// Webhooks still waiting, each asking again every pass, would keep that moment
    /// later than any gateway reconcile's reading (see [`Self::take_before`]), and
    /// the deployment that would make them live would never be taken.
    pub fn remind(&self, api_id: &str, gateway: &str, webhook: &Webhook) {
        self.ask(api_id, gateway, webhook, false);
    }

    fn ask(&self, api_id: &str, gateway: &str, webhook: &Webhook, changed: bool) {
        let reference = ObjectRef::from_obj(webhook);
        {
            let mut pending = locked(&self.pending);
            let entry = pending.entry(api_id.to_owned()).or_insert_with(|| Pending {
                changed_at: Instant::now(),
                waiting: Vec::new(),
            });
            if changed {
                entry.changed_at = Instant::now();
            }
            if !entry.waiting.contains(&reference) {
                entry.waiting.push(reference);
            }
        }
        if let Some(uid) = &webhook.metadata.uid {
            locked(&self.awaiting).insert(uid.clone());
        }
        locked(&self.gateways)
            .retain(|sender| sender.unbounded_send(ObjectRef::new(gateway)).is_ok());
    }

    /// What the next deployment of `api_id` must cover, taken (a deployment that
    /// fails gives it back with [`Self::restore`]), when every change it covers was
    /// made before `read_at`, the moment the gateway read the Webhooks it applies:
    /// a change made since may rest on state it did not see (a new route's
    /// source-IP allow list), and its request has queued another gateway reconcile.
    pub fn take_before(&self, api_id: &str, read_at: Instant) -> Option<Pending> {
        let mut pending = locked(&self.pending);
        if pending.get(api_id)?.changed_at > read_at {
            return None;
        }
        pending.remove(api_id)
    }

    /// Puts back what a failed deployment did not cover (merged with what came since).
    pub fn restore(&self, api_id: &str, taken: Pending) {
        let mut pending = locked(&self.pending);
        match pending.get_mut(api_id) {
            Some(entry) => {
                for reference in taken.waiting {
                    if !entry.waiting.contains(&reference) {
                        entry.waiting.push(reference);
                    }
                }
            }
            None => {
                pending.insert(api_id.to_owned(), taken);
            }
        }
    }

    /// Wakes the Webhooks whose routes a deployment made live.
    pub fn deployed(&self, waiting: &[ObjectRef<Webhook>]) {
        let mut webhooks = locked(&self.webhooks);
        for reference in waiting {
            webhooks.retain(|(namespace, sender)| {
                if namespace.is_some() && namespace != &reference.namespace {
                    return !sender.is_closed();
                }
                sender.unbounded_send(reference.clone()).is_ok()
            });
        }
    }

    /// Whether `webhook` waits in the request for `api_id`'s next deployment, which
    /// no gateway reconcile has taken yet: its route is certainly not live, and
    /// asking AWS would only spend the API Gateway quota the routes being made need.
    pub fn is_waiting(&self, api_id: &str, webhook: &Webhook) -> bool {
        let reference = ObjectRef::from_obj(webhook);
        locked(&self.pending)
            .get(api_id)
            .is_some_and(|p| p.waiting.contains(&reference))
    }

    /// Whether the Webhook `uid` asked for a deployment and has not yet done what
    /// waited for it ([`Self::seen_live`]).
    pub fn awaits(&self, uid: &str) -> bool {
        locked(&self.awaiting).contains(uid)
    }

    /// The Webhook `uid` saw its route live and cleaned up after the deployment.
    pub fn seen_live(&self, uid: &str) {
        locked(&self.awaiting).remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(name: &str) -> Webhook {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "n", "uid": name},
            "spec": {"path": "/w", "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}}
        }))
        .expect("a valid Webhook")
    }

    #[tokio::test]
    async fn a_request_is_taken_only_by_a_reconcile_that_read_after_it() {
        let requests = DeployRequests::default();
        let mut gateways = requests.gateway_triggers();
        let before = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        requests.request("api", "gw", &webhook("a"));
        assert_eq!(
            futures::StreamExt::next(&mut gateways).await,
            Some(ObjectRef::new("gw"))
        );
        assert_eq!(requests.take_before("api", before), None, "read too early");
        let taken = requests.take_before("api", Instant::now());
        let waiting = taken.as_ref().map(|p| p.waiting.len());
        assert_eq!(waiting, Some(1));
        assert_eq!(requests.take_before("api", Instant::now()), None);
        // A failed deployment gives it back, merged with what came meanwhile.
        requests.request("api", "gw", &webhook("b"));
        if let Some(taken) = taken {
            requests.restore("api", taken);
        }
        let again = requests.take_before("api", Instant::now());
        assert_eq!(again.map(|p| p.waiting.len()), Some(2));
        assert!(requests.awaits("a"));
        requests.seen_live("a");
        assert!(!requests.awaits("a"));
    }

    /// 200 Webhooks waiting for one deployment each ask again on every pass; the
    /// gateway must still find the changes settled.
    #[tokio::test]
    async fn reminders_of_waiting_webhooks_do_not_postpone_the_deployment() {
        let requests = DeployRequests::default();
        requests.request("api", "gw", &webhook("a"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let read_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        requests.remind("api", "gw", &webhook("a"));
        requests.remind("api", "gw", &webhook("b"));
        let taken = requests.take_before("api", read_at);
        assert_eq!(
            taken.map(|p| p.waiting.len()),
            Some(2),
            "the reminders join the deployment the change asked for"
        );
        assert!(
            !requests.is_waiting("api", &webhook("a")),
            "taken: the deployment may be live, AWS says"
        );
        // A reminder with nothing pending (a restarted operator) asks anew.
        requests.remind("api", "gw", &webhook("c"));
        assert!(requests.is_waiting("api", &webhook("c")));
        assert!(!requests.is_waiting("other", &webhook("c")));
        assert!(requests.take_before("api", Instant::now()).is_some());
    }

    #[tokio::test]
    async fn a_deployment_wakes_the_waiting_webhooks_in_their_namespace() {
        let requests = DeployRequests::default();
        let mut here = requests.webhook_triggers(Some("n".to_owned()));
        let mut elsewhere = requests.webhook_triggers(Some("other".to_owned()));
        let reference = ObjectRef::from_obj(&webhook("a"));
        requests.deployed(std::slice::from_ref(&reference));
        assert_eq!(here.try_recv().ok(), Some(reference));
        assert!(
            elsewhere.try_recv().is_err(),
            "nothing for another namespace"
        );
    }
}
