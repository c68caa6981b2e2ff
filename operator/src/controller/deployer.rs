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

/// What a gateway's next deployment must cover: the Webhooks waiting to see their
/// routes live, each with the moment its latest route change was complete (`None`:
/// built earlier, by a pass or a process before, and any deployment covers it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pending {
    /// The Webhooks whose routes wait for the deployment, and when each changed.
    pub waiting: Vec<(ObjectRef<Webhook>, Option<Instant>)>,
    /// A change of the gateway's own that no deployment has carried yet (a resource
    /// policy whose deployment failed), and when it was made.
    pub own_change: Option<Instant>,
}

impl Pending {
    /// A change of the gateway's own, made at `at`, to deploy.
    pub fn own(at: Instant) -> Self {
        Self {
            waiting: Vec::new(),
            own_change: Some(at),
        }
    }

    /// When the latest change it covers was complete.
    pub fn changed_at(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|(_, at)| *at)
            .chain(self.own_change)
            .max()
    }

    /// The Webhooks it covers.
    pub fn webhooks(&self) -> Vec<ObjectRef<Webhook>> {
        self.waiting.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Adds `reference`, or moves its change time to `at` when it has one.
    fn add(&mut self, reference: ObjectRef<Webhook>, at: Option<Instant>) {
        match self.waiting.iter_mut().find(|(r, _)| *r == reference) {
            Some((_, known)) => *known = (*known).max(at),
            None => self.waiting.push((reference, at)),
        }
    }
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
        self.ask(api_id, gateway, webhook, Some(Instant::now()));
    }

    /// Asks again for `webhook`'s route, built earlier and not live yet (a pass that
    /// changed nothing): it joins the next deployment without moving the moment a
    /// deployment must start after. Only a change does that; otherwise hundreds of
    /// waiting Webhooks, each asking again every pass, would keep that moment later
    /// than any gateway reconcile's reading (see [`Self::take_before`]), and the
    /// deployment that would make them live would never be taken.
    pub fn remind(&self, api_id: &str, gateway: &str, webhook: &Webhook) {
        self.ask(api_id, gateway, webhook, None);
    }

    fn ask(&self, api_id: &str, gateway: &str, webhook: &Webhook, changed_at: Option<Instant>) {
        let reference = ObjectRef::from_obj(webhook);
        locked(&self.pending)
            .entry(api_id.to_owned())
            .or_default()
            .add(reference, changed_at);
        if let Some(uid) = &webhook.metadata.uid {
            locked(&self.awaiting).insert(uid.clone());
        }
        locked(&self.gateways)
            .retain(|sender| sender.unbounded_send(ObjectRef::new(gateway)).is_ok());
    }

    /// What the next deployment of `api_id` covers, taken (a deployment that fails
    /// gives it back with [`Self::restore`]): the routes changed before `read_at`, the
    /// moment the gateway read the Webhooks it applies. A route changed since may
    /// rest on state it did not see (a new route's source-IP allow list); it stays
    /// for the next deployment, which its request has already queued a gateway
    /// reconcile for. Taking what is covered rather than all or nothing keeps a
    /// stream of new Webhooks from holding back the ones before them.
    pub fn take_before(&self, api_id: &str, read_at: Instant) -> Option<Pending> {
        let mut pending = locked(&self.pending);
        let entry = pending.get_mut(api_id)?;
        let (covered, later): (Vec<_>, Vec<_>) = std::mem::take(&mut entry.waiting)
            .into_iter()
            .partition(|(_, at)| at.is_none_or(|at| at <= read_at));
        entry.waiting = later;
        let own_change = entry.own_change.take_if(|at| *at <= read_at);
        if entry.waiting.is_empty() && entry.own_change.is_none() {
            pending.remove(api_id);
        }
        let taken = Pending {
            waiting: covered,
            own_change,
        };
        (!taken.waiting.is_empty() || taken.own_change.is_some()).then_some(taken)
    }

    /// Whether a deployment of `api_id` was asked for and not yet taken.
    pub fn is_pending(&self, api_id: &str) -> bool {
        locked(&self.pending).contains_key(api_id)
    }

    /// Puts back what a failed deployment did not cover (merged with what came since).
    pub fn restore(&self, api_id: &str, taken: Pending) {
        let mut pending = locked(&self.pending);
        let entry = pending.entry(api_id.to_owned()).or_default();
        for (reference, at) in taken.waiting {
            entry.add(reference, at);
        }
        entry.own_change = entry.own_change.max(taken.own_change);
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
            .is_some_and(|p| p.waiting.iter().any(|(r, _)| *r == reference))
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
    async fn waiting_webhooks_that_ask_again_do_not_hold_back_their_deployment() {
        let requests = DeployRequests::default();
        requests.request("api", "gw", &webhook("a"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let read_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // After the gateway's read: "a" asks again while it waits, "c" (built by an
        // earlier process) asks for the first time, "b" is a new change.
        requests.remind("api", "gw", &webhook("a"));
        requests.remind("api", "gw", &webhook("c"));
        requests.request("api", "gw", &webhook("b"));
        assert!(requests.is_waiting("api", &webhook("b")));
        assert!(!requests.is_waiting("other", &webhook("b")));
        let taken = requests.take_before("api", read_at).map(|p| p.webhooks());
        assert_eq!(
            taken,
            Some(vec![
                ObjectRef::from_obj(&webhook("a")),
                ObjectRef::from_obj(&webhook("c"))
            ])
        );
        assert!(
            !requests.is_waiting("api", &webhook("a")),
            "taken: AWS says if live"
        );
        let next = requests
            .take_before("api", Instant::now())
            .map(|p| p.webhooks());
        assert_eq!(
            next,
            Some(vec![ObjectRef::from_obj(&webhook("b"))]),
            "the new one waits for the next deployment"
        );
    }

    #[test]
    fn a_failed_deployment_of_the_gateways_own_change_is_taken_again() {
        let requests = DeployRequests::default();
        let changed = Instant::now();
        requests.restore("api", Pending::own(changed));
        let taken = requests.take_before("api", Instant::now());
        assert_eq!(taken.and_then(|p| p.changed_at()), Some(changed));
        assert_eq!(requests.take_before("api", Instant::now()), None);
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
