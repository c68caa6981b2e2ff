//! What every reconcile shares.

use hookline_crds::Webhook;
use kube::api::{Api, ListParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::deployer::{DeployRequests, Deployer};
use crate::aws::{
    Account, AcmCertificates, ApiGatewayAccount, ApiGatewayRestApis, AwsClients, Certificates,
    CloudWatchLogGroups, Dns, Functions, IamRoles, LambdaFunctions, LogGroups, Queues, RestApis,
    Roles, Route53Dns, SqsQueues,
};
use crate::desired::Settings;
use crate::quotas::Quotas;

/// Per REST API: the resource policy it has, and when that was seen.
pub type KnownPolicies =
    std::collections::HashMap<String, (Option<serde_json::Value>, std::time::Instant)>;

/// The AWS services, each behind its domain trait: the SDK implementations in
/// production ([`AwsServices::new`]), any other implementation (an in-memory one in
/// scenario tests) through the fields. Reconciles only ever see the traits.
#[derive(Clone)]
pub struct AwsServices {
    /// SQS.
    pub queues: Arc<dyn Queues>,
    /// API Gateway's REST APIs (routes, stages, domains, keys, authorizers).
    pub apis: Arc<dyn RestApis>,
    /// ACM.
    pub certificates: Arc<dyn Certificates>,
    /// Route 53.
    pub dns: Arc<dyn Dns>,
    /// IAM.
    pub roles: Arc<dyn Roles>,
    /// CloudWatch Logs.
    pub logs: Arc<dyn LogGroups>,
    /// Lambda.
    pub functions: Arc<dyn Functions>,
    /// API Gateway's account settings (read only).
    pub account: Arc<dyn Account>,
}

impl std::fmt::Debug for AwsServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsServices").finish_non_exhaustive()
    }
}

impl AwsServices {
    /// All services on the SDK, from one set of clients (and so one set of rate limits).
    pub fn new(clients: &AwsClients) -> Self {
        let caller = clients.caller.clone();
        Self {
            queues: Arc::new(SqsQueues::new(clients.sqs.clone(), caller.clone())),
            apis: Arc::new(ApiGatewayRestApis::new(
                clients.apigateway.clone(),
                caller.clone(),
            )),
            certificates: Arc::new(AcmCertificates::new(clients.acm.clone(), caller.clone())),
            dns: Arc::new(Route53Dns::new(clients.route53.clone(), caller.clone())),
            roles: Arc::new(IamRoles::new(clients.iam.clone(), caller.clone())),
            logs: Arc::new(CloudWatchLogGroups::new(
                clients.logs.clone(),
                caller.clone(),
            )),
            functions: Arc::new(LambdaFunctions::new(clients.lambda.clone(), caller.clone())),
            account: Arc::new(ApiGatewayAccount::new(clients.apigateway.clone(), caller)),
        }
    }
}

/// Timing of reconciles.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Re-read AWS and repair drift this often when all is well.
    pub resync: Duration,
    /// Check again this soon while something is in progress (a certificate, a gateway).
    pub pending: Duration,
    /// Retry at most this long after an error: retries start sooner and double up to
    /// it, jittered ([`super::retry`]).
    pub error: Duration,
    /// Collect route changes this long before one deployment.
    pub deploy_window: Duration,
    /// A deleted Webhook whose queue has not drained this long after deletion
    /// began is reported as stalled (deletion keeps waiting).
    pub drain_stall: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            pending: Duration::from_secs(15),
            error: Duration::from_secs(30),
            deploy_window: Duration::from_secs(2),
            drain_stall: Duration::from_secs(3600),
        }
    }
}

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// AWS services.
    pub aws: AwsServices,
    /// Naming, region, worker image.
    pub settings: Settings,
    /// Reconcile timing.
    pub timing: Timing,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Coalesces stage deployments.
    pub deployer: Arc<Deployer>,
    /// Webhooks' requests for their gateway to deploy their route changes.
    pub deploys: Arc<DeployRequests>,
    /// Identifies this cluster in hostname ownership records.
    pub cluster: String,
    /// Reconcile counts and durations.
    pub metrics: super::metrics::ReconcileMetrics,
    /// The resource policy last written (and deployed) or read per REST API, and
    /// when: the gateway reconcile re-reads it only once a resync period, and a
    /// Webhook with a source-IP allow list reads here whether it is enforced.
    pub policies: Arc<std::sync::Mutex<KnownPolicies>>,
    /// The webhook controllers' caches, replaced each time they start: a Webhook
    /// reconcile reads the other Webhooks (path conflicts, quotas) and the scaler its
    /// Webhooks from here, not the API.
    pub webhook_stores: Arc<RwLock<Option<Vec<Store<Webhook>>>>>,
    /// The gateway controller's caches of Webhooks (without worker templates), filled
    /// by the watch that wakes it: a gateway reconcile reads its index from here, so it
    /// sees at least the change that woke it.
    pub index_stores: Arc<RwLock<Option<Vec<Store<Webhook>>>>>,
    /// The namespaces whose Webhooks this operator manages; all when empty. Every
    /// read of Webhooks stays inside them, so a namespaced install needs no
    /// cluster-wide access to Webhooks.
    pub namespaces: Vec<String>,
    /// The AWS quotas Webhooks are checked against before any AWS call.
    pub quotas: Quotas,
    /// What the last full passes proved, so that a steady-state resync reads less.
    pub steady: Arc<super::steady::Steady>,
    /// Reconciles of one kind that run at once, per watch scope
    /// ([`DEFAULT_CONCURRENCY`]).
    pub concurrency: u16,
    /// Consecutive failures per object, for their retries' backoff.
    pub retries: Arc<super::retry::Retries>,
}

/// Reconciles of one kind at once, per watch scope. Each waiting reconcile holds its
/// observed state (the Webhook, its gateway, the index's copies) while it waits for
/// its turn at the AWS rate limits, which it cannot speed up: the limits, not the
/// number waiting, set how fast a large create goes. Unbounded (kube-runtime's
/// default), 1,000 new Webhooks held 138 MB of heap at the peak
/// (docs/benchmarks.md "Memory").
pub const DEFAULT_CONCURRENCY: u16 = 16;

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context; `cluster` names this cluster in hostname ownership records.
    pub fn new(
        client: kube::Client,
        clients: &AwsClients,
        settings: Settings,
        timing: Timing,
        cluster: String,
        namespaces: Vec<String>,
    ) -> Arc<Self> {
        Self::with_services(
            client,
            AwsServices::new(clients),
            settings,
            timing,
            cluster,
            namespaces,
        )
    }

    /// A context on these AWS services (see [`AwsServices`]).
    pub fn with_services(
        client: kube::Client,
        aws: AwsServices,
        settings: Settings,
        timing: Timing,
        cluster: String,
        namespaces: Vec<String>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: super::MANAGER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            aws,
            deployer: Arc::new(Deployer::new(timing.deploy_window)),
            deploys: Arc::default(),
            client,
            settings,
            timing,
            cluster,
            metrics: super::metrics::ReconcileMetrics::default(),
            webhook_stores: Arc::new(RwLock::new(None)),
            index_stores: Arc::new(RwLock::new(None)),
            policies: Arc::default(),
            namespaces,
            quotas: Quotas::default(),
            steady: Arc::default(),
            concurrency: DEFAULT_CONCURRENCY,
            retries: Arc::default(),
        })
    }

    /// This context running `concurrency` reconciles of a kind at once per scope
    /// (at least one).
    pub fn with_concurrency(self: Arc<Self>, concurrency: u16) -> Arc<Self> {
        Arc::new(Self {
            concurrency: concurrency.max(1),
            ..(*self).clone()
        })
    }

    /// This context with a full pass (the audit) of each resource every
    /// `audit_interval` instead of [`super::steady::DEFAULT_AUDIT_INTERVAL`].
    pub fn with_audit_interval(self: Arc<Self>, audit_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            steady: Arc::new(super::steady::Steady::new(audit_interval)),
            ..(*self).clone()
        })
    }

    /// This context with other AWS quotas (an account where some were raised).
    pub fn with_quotas(self: Arc<Self>, quotas: Quotas) -> Arc<Self> {
        Arc::new(Self {
            quotas,
            ..(*self).clone()
        })
    }
}

impl Context {
    /// Every Webhook the operator watches, from the webhook controllers' caches once
    /// they are synced (so a decision never misses an older Webhook), from the API
    /// before they exist (a reconcile run outside the controllers).
    ///
    /// The cache is as good as a list for the decisions reconciles make from it: one
    /// watch delivers events in the order the API server stored them, so when a
    /// Webhook is in the cache every Webhook created before it is too. With several
    /// namespace-scoped watches that order holds per namespace only; see
    /// [`Context::claimants`].
    pub async fn webhooks(&self) -> super::Result<Vec<Arc<Webhook>>> {
        self.cached(&self.webhook_stores).await
    }

    /// Every Webhook, as the gateway controller's caches hold them (no worker
    /// templates): what the gateway index is built from.
    pub async fn indexed_webhooks(&self) -> super::Result<Vec<Arc<Webhook>>> {
        self.cached(&self.index_stores).await
    }

    /// The Webhooks to decide path ownership from, for a Webhook about to claim a path
    /// (`claiming`: it holds no route yet, or its spec changed since it last did). One
    /// cluster-wide watch keeps the cache in the API server's order, so the cache is
    /// enough. Namespace-scoped watches each lag on their own, so a Webhook created a
    /// moment earlier in another namespace may not be cached yet: a claim then reads
    /// the watched namespaces from the API (a path must never go to the newer of two
    /// claimants, even for a moment: its requests would reach the other team's queue).
    pub async fn claimants(&self, claiming: bool) -> super::Result<Vec<Arc<Webhook>>> {
        if claiming && self.namespaces.len() > 1 {
            return Ok(self
                .list_webhooks()
                .await?
                .into_iter()
                .map(Arc::new)
                .collect());
        }
        self.webhooks().await
    }

    async fn cached(
        &self,
        stores: &RwLock<Option<Vec<Store<Webhook>>>>,
    ) -> super::Result<Vec<Arc<Webhook>>> {
        let stores = stores
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match stores {
            Some(stores) => {
                for store in &stores {
                    wait_ready(store).await?;
                }
                Ok(stores.iter().flat_map(Store::state).collect())
            }
            None => Ok(self
                .list_webhooks()
                .await?
                .into_iter()
                .map(Arc::new)
                .collect()),
        }
    }

    /// Every Webhook in the watched namespaces, read from the API now: for decisions
    /// that must not act on a cache that lags (whether a gateway is still in use, a
    /// claim across namespace-scoped watches). Read in pages and kept as the caches
    /// keep them ([`slim`]), so a list of thousands stays small.
    pub async fn list_webhooks(&self) -> super::Result<Vec<Webhook>> {
        if self.namespaces.is_empty() {
            return list_slim(Api::<Webhook>::all(self.client.clone())).await;
        }
        let lists = futures::future::try_join_all(self.namespaces.iter().map(|namespace| {
            list_slim(Api::<Webhook>::namespaced(self.client.clone(), namespace))
        }))
        .await?;
        Ok(lists.into_iter().flatten().collect())
    }
}

/// Webhooks listed per page of [`LIST_PAGE`] objects.
pub const LIST_PAGE: u32 = 100;

async fn list_slim(api: Api<Webhook>) -> super::Result<Vec<Webhook>> {
    let mut webhooks = Vec::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        webhooks.extend(page.items.into_iter().map(|mut webhook| {
            slim(&mut webhook);
            webhook
        }));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(webhooks),
        }
    }
}

/// kubectl's copy of the last applied manifest.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a cache keeps of a Webhook: neither `managedFields` (server-side apply's
/// bookkeeping, larger than the rest of the object once a few managers wrote it) nor
/// kubectl's last-applied copy. No reconcile reads them, and holding them made the
/// operator's memory grow with every Webhook.
pub fn slim(webhook: &mut Webhook) {
    webhook.metadata.managed_fields = None;
    if let Some(annotations) = webhook.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// What the gateway index keeps: also no worker template (the team's pod spec),
/// which nothing the gateway applies depends on.
pub fn slim_for_index(webhook: &mut Webhook) {
    slim(webhook);
    webhook.spec.worker.template = Default::default();
}

impl Context {
    /// Whether `policy` is what the API had when last read or written, within one
    /// resync period (after that, it is read again to catch drift).
    pub fn policy_is_known(&self, api_id: &str, policy: Option<&serde_json::Value>) -> bool {
        let known = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        known.get(api_id).is_some_and(|(value, at)| {
            value.as_ref() == policy && at.elapsed() < self.timing.resync
        })
    }

    /// The policy the API was last seen with, if any was seen.
    pub fn known_policy(&self, api_id: &str) -> Option<Option<serde_json::Value>> {
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_id)
            .map(|(value, _)| value.clone())
    }

    /// Records the policy the API now has.
    pub fn remember_policy(&self, api_id: &str, policy: Option<serde_json::Value>) {
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(api_id.to_owned(), (policy, std::time::Instant::now()));
    }
}

/// Waits until a controller's cache has its first full listing. `Store::wait_until_ready`
/// wakes only the task that polled it last (a oneshot receiver keeps one waker), so
/// with many reconciles and the scaler waiting at once, the others would wait forever;
/// polling it again every 250 ms makes every waiter see the listing.
async fn wait_ready(store: &Store<Webhook>) -> super::Result<()> {
    for _ in 0..(20 * 60 * 4) {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(super::Error::Finalizer(format!("webhook cache: {e}"))),
            Err(_) => {}
        }
    }
    Err(super::Error::Finalizer(
        "the webhook cache did not sync within 20 minutes".to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::{reflector, watcher};

    /// Several tasks waiting for the same cache, as reconciles and the scaler do at
    /// start-up: every one of them must see it become ready, not only the last.
    #[tokio::test]
    async fn every_waiter_sees_the_cache_become_ready() {
        let (store, mut writer) = reflector::store::<Webhook>();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { wait_ready(&store).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let done = tokio::time::timeout(Duration::from_secs(2), waiter).await;
            assert!(
                matches!(done, Ok(Ok(Ok(())))),
                "a waiter never saw the cache ready: {done:?}"
            );
        }
    }
}
