//! One scenario: its own namespace and gateway on the shared API server, its own
//! in-memory AWS, and the real reconcilers driven pass by pass.
//!
//! The controllers' own loop (`controller::run`) is not started: a gateway is
//! cluster-scoped, so two operators on one API server would both reconcile every
//! gateway. A pass instead calls `gateway::reconcile` on this scenario's gateway and
//! `webhook::reconcile` on each of its Webhooks, with the latest object from the API
//! server, and plays the kubelet for the worker Deployments (the bench has none).

use anyhow::{Context as _, Result, bail};
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::memory::{MemoryAws, is_write};
use hookline_operator::aws::{actions, dns::Record};
use hookline_operator::controller::context::{Context, Timing};
use hookline_operator::controller::{gateway, webhook};
use hookline_operator::desired::Settings;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The region of every scenario's objects.
pub const REGION: &str = "eu-west-1";
/// The prefix of every AWS name.
pub const PREFIX: &str = "hl";

/// Passes [`Scenario::until`] makes before it gives up.
const MAX_PASSES: usize = 60;

/// Scenario timing: the deployment window short, everything else as in production
/// (requeues do not matter: passes are driven).
pub const TIMING: Timing = Timing {
    resync: Duration::from_secs(300),
    pending: Duration::from_secs(1),
    error: Duration::from_secs(1),
    deploy_window: Duration::from_millis(20),
    drain_stall: Duration::from_secs(3600),
};

/// A scenario on the shared API server.
pub struct Scenario {
    /// Admin client.
    pub client: kube::Client,
    /// The AWS the operator sees.
    pub aws: MemoryAws,
    /// The operator's context on it.
    pub ctx: Arc<Context>,
    /// This scenario's namespace.
    pub namespace: String,
    /// This scenario's gateway.
    pub gateway: String,
    /// The gateway's hosted zone name and id.
    pub zone: (String, String),
    /// What the last pass's reconciles failed with (for failure messages).
    pub errors: Vec<String>,
}

/// The settings a scenario's operator runs with.
pub fn settings() -> Settings {
    Settings {
        name_prefix: PREFIX.to_owned(),
        region: REGION.to_owned(),
        worker_image: "hookline-worker:test".to_owned(),
        aws_endpoint_url: None,
        irsa_oidc_provider_arn: None,
    }
}

impl Scenario {
    /// A new namespace `<name>-…`, a hosted zone, and the gateway `gw-<namespace>` for
    /// `hooks.<zone>` with `gateway_spec` merged into its spec (not yet reconciled).
    pub async fn new(name: &str, gateway_spec: Value) -> Result<Self> {
        let cluster = hookline_tests::shared_cluster().await?;
        let client = cluster.client().await?;
        let namespace = cluster.namespace(&client, name).await?;
        let aws = MemoryAws::new(REGION);
        let zone_name = format!("{namespace}.example.com");
        let zone_id = aws.create_zone(&zone_name);
        let ctx = Context::with_services(
            client.clone(),
            aws.services(),
            settings(),
            TIMING,
            "scenario".to_owned(),
            Vec::new(),
        );
        let gateway = format!("gw-{namespace}");
        let mut spec =
            json!({"hostname": format!("hooks.{zone_name}"), "hostedZone": {"name": zone_name}});
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), gateway_spec) {
            spec.extend(extra);
        }
        let object: WebhookGateway = serde_json::from_value(json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "WebhookGateway",
            "metadata": {"name": gateway},
            "spec": spec,
        }))?;
        Api::<WebhookGateway>::all(client.clone())
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating the gateway {gateway}"))?;
        Ok(Self {
            client,
            aws,
            ctx,
            namespace,
            gateway,
            zone: (zone_name, zone_id),
            errors: Vec::new(),
        })
    }

    /// This scenario's Webhooks' API.
    pub fn webhooks(&self) -> Api<Webhook> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The gateways' API.
    pub fn gateways(&self) -> Api<WebhookGateway> {
        Api::all(self.client.clone())
    }

    /// Creates Webhook `name` at `path` on this scenario's gateway, with `extra`
    /// merged into its spec.
    pub async fn create_webhook(&self, name: &str, path: &str, extra: Value) -> Result<Webhook> {
        let object = webhook_object(name, &self.gateway, path, extra)?;
        self.webhooks()
            .create(&PostParams::default(), &object)
            .await
            .with_context(|| format!("creating the Webhook {name}"))
    }

    /// Merges `patch` into Webhook `name`.
    pub async fn patch_webhook(&self, name: &str, patch: Value) -> Result<()> {
        self.webhooks()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching the Webhook {name}"))?;
        Ok(())
    }

    /// Starts deleting Webhook `name`.
    pub async fn delete_webhook(&self, name: &str) -> Result<()> {
        self.webhooks()
            .delete(name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting the Webhook {name}"))?;
        Ok(())
    }

    /// The gateway as it is now.
    pub async fn gateway_now(&self) -> Result<WebhookGateway> {
        Ok(self.gateways().get(&self.gateway).await?)
    }

    /// Webhook `name` as it is now (`None` once gone).
    pub async fn webhook_now(&self, name: &str) -> Result<Option<Webhook>> {
        Ok(self.webhooks().get_opt(name).await?)
    }

    /// One pass: the gateway's reconcile, then each Webhook's, then the kubelet.
    pub async fn pass(&mut self) -> Result<()> {
        self.errors.clear();
        if let Some(gw) = self.gateways().get_opt(&self.gateway).await?
            && let Err(e) = gateway::reconcile(Arc::new(gw), self.ctx.clone()).await
        {
            self.errors.push(format!("gateway: {e}"));
        }
        for hook in self.webhooks().list(&ListParams::default()).await?.items {
            let name = hook.metadata.name.clone().unwrap_or_default();
            if let Err(e) = webhook::reconcile(Arc::new(hook), self.ctx.clone()).await {
                self.errors.push(format!("webhook {name}: {e}"));
            }
        }
        self.play_kubelet().await
    }

    /// One reconcile of this scenario's gateway, as a resync would run it.
    pub async fn reconcile_gateway(&self) -> Result<()> {
        let gw = self.gateway_now().await?;
        gateway::reconcile(Arc::new(gw), self.ctx.clone())
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("gateway: {e}"))
    }

    /// One reconcile of Webhook `name`, as a resync would run it.
    pub async fn reconcile_webhook(&self, name: &str) -> Result<()> {
        let hook = self.webhooks().get(name).await?;
        webhook::reconcile(Arc::new(hook), self.ctx.clone())
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("webhook {name}: {e}"))
    }

    /// The AWS calls made since the last [`MemoryAws::reset_calls`], as (reads,
    /// writes), each `Operation×n`.
    pub fn reads_and_writes(&self) -> (Vec<String>, Vec<String>) {
        let (mut reads, mut writes) = (Vec::new(), Vec::new());
        for ((_, operation), n) in self.aws.all_calls() {
            for _ in 0..n {
                if is_write(operation) {
                    writes.push(operation.to_owned());
                } else {
                    reads.push(operation.to_owned());
                }
            }
        }
        (reads, writes)
    }

    /// A fresh operator on the same AWS and API server, as after a restart (or a
    /// new leader): nothing remembered.
    pub fn restart(&mut self) {
        self.ctx = Context::with_services(
            self.client.clone(),
            self.aws.services(),
            settings(),
            TIMING,
            "scenario".to_owned(),
            Vec::new(),
        );
    }

    /// Passes until `check` holds (bounded), failing with what the reconciles said.
    pub async fn until<F, Fut>(&mut self, what: &str, mut check: F) -> Result<()>
    where
        F: FnMut(Probe) -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        for _ in 0..MAX_PASSES {
            self.pass().await?;
            if check(self.probe()).await? {
                return Ok(());
            }
        }
        bail!(
            "{what}: not after {MAX_PASSES} passes; last errors {:?}; gateway conditions {:?}; webhook conditions {:?}",
            self.errors,
            self.gateway_now()
                .await?
                .status
                .unwrap_or_default()
                .conditions,
            self.webhooks()
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|w| (
                    w.metadata.name.clone(),
                    w.status.clone().unwrap_or_default().conditions
                ))
                .collect::<Vec<_>>()
        )
    }

    /// What a check in [`Scenario::until`] reads: cheap clones of the scenario's handles.
    pub fn probe(&self) -> Probe {
        Probe {
            aws: self.aws.clone(),
            webhooks: self.webhooks(),
            gateways: self.gateways(),
            gateway: self.gateway.clone(),
        }
    }

    /// Reports every worker Deployment of the namespace ready, as a kubelet would.
    async fn play_kubelet(&self) -> Result<()> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        for deployment in deployments.list(&ListParams::default()).await?.items {
            let replicas = deployment.spec.replicas.unwrap_or(1);
            let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas);
            if ready == Some(replicas) {
                continue;
            }
            let status = json!({"status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas, "observedGeneration": deployment.metadata.generation}});
            deployments
                .patch_status(
                    deployment.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(&status),
                )
                .await?;
        }
        Ok(())
    }

    /// Every AWS operation the scenario made is one the IAM table knows (so the
    /// in-memory AWS makes the calls the SDK implementation makes, by name).
    pub fn calls_are_known(&self) -> Result<()> {
        for (service, operation) in self.aws.all_calls().keys() {
            if actions::needs(service.as_str(), operation).is_none() {
                bail!("{service} {operation} is not in aws::actions::CALLS");
            }
        }
        Ok(())
    }

    /// The gateway's zone records named `name`.
    pub fn records(&self, name: &str) -> Vec<Record> {
        self.aws.records_named(&self.zone.1, name)
    }
}

/// Read-only handles for checks.
#[derive(Clone)]
pub struct Probe {
    /// The in-memory AWS.
    pub aws: MemoryAws,
    /// The scenario's Webhooks.
    pub webhooks: Api<Webhook>,
    /// The gateways.
    pub gateways: Api<WebhookGateway>,
    /// The scenario's gateway name.
    pub gateway: String,
}

impl Probe {
    /// Webhook `name`'s condition `type_` as (status, reason), if set.
    pub async fn webhook_condition(
        &self,
        name: &str,
        type_: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(self
            .webhooks
            .get_opt(name)
            .await?
            .and_then(|w| w.status)
            .and_then(|s| find(&s.conditions, type_)))
    }

    /// The gateway's condition `type_` as (status, reason), if set.
    pub async fn gateway_condition(&self, type_: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .gateways
            .get(&self.gateway)
            .await?
            .status
            .and_then(|s| find(&s.conditions, type_)))
    }

    /// Whether Webhook `name`'s condition `type_` is `status` with `reason`.
    pub async fn webhook_is(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Result<bool> {
        Ok(self.webhook_condition(name, type_).await?
            == Some((status.to_owned(), reason.to_owned())))
    }

    /// Whether the gateway's condition `type_` is `status` with `reason`.
    pub async fn gateway_is(&self, type_: &str, status: &str, reason: &str) -> Result<bool> {
        Ok(self.gateway_condition(type_).await? == Some((status.to_owned(), reason.to_owned())))
    }

    /// Whether Webhook `name` is gone.
    pub async fn webhook_gone(&self, name: &str) -> Result<bool> {
        Ok(self.webhooks.get_opt(name).await?.is_none())
    }
}

fn find(conditions: &[Condition], type_: &str) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A Webhook `name` at `path` on `gateway`, no signature check, `extra` merged into
/// its spec.
pub fn webhook_object(name: &str, gateway: &str, path: &str, extra: Value) -> Result<Webhook> {
    let mut spec = json!({
        "gatewayRef": {"name": gateway},
        "path": path,
        "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name},
        "spec": spec,
    }))?)
}

/// The queue names of Webhook `name` in `namespace`: (queue, dead-letter queue).
pub fn queue_names(namespace: &str, name: &str) -> (String, String) {
    hookline_operator::aws::queues::queue_names(&hookline_operator::names::queue_base(
        PREFIX, namespace, name,
    ))
}
