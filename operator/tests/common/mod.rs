//! Helpers shared by the operator's bench tests (each test binary uses a subset).
#![allow(dead_code)]

use anyhow::{Context as _, Result};
use hookline_crds::WebhookGateway;
use hookline_operator::aws::AwsClients;
use hookline_operator::controller::context::{Context, Timing};
use hookline_operator::desired::Settings;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The operator's controllers and scaler, run as the binary runs them, in this process.
pub struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Operator {
    /// Starts the operator on `ctx`.
    pub fn start(ctx: Arc<Context>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = futures::FutureExt::shared(Box::pin(async move {
            let _ = stopped.await;
        }));
        let task =
            tokio::spawn(
                async move { hookline_operator::controller::run::run(ctx, shutdown).await },
            );
        Self { stop, task }
    }

    /// Stops it abruptly, as a crash would: in-flight reconciles are dropped.
    pub fn kill(self) {
        self.task.abort();
        drop(self.stop);
    }

    /// Stops it as SIGTERM would, waiting (bounded) for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// The operator's settings on the bench: names under `prefix`, AWS at `endpoint`. One
/// place, so a new setting is one line here rather than one per test file.
pub fn settings(endpoint: &str, prefix: &str) -> Settings {
    Settings {
        name_prefix: prefix.to_owned(),
        region: hookline_tests::aws::REGION.to_owned(),
        worker_image: "hookline-worker:test".to_owned(),
        aws_endpoint_url: Some(endpoint.to_owned()),
        irsa_oidc_provider_arn: None,
    }
}

/// Creates a public hosted zone `name` on the emulator; returns its id.
pub async fn hosted_zone(clients: &AwsClients, name: &str) -> Result<String> {
    Ok(clients
        .route53
        .create_hosted_zone()
        .name(name)
        .caller_reference(name)
        .send()
        .await
        .with_context(|| format!("creating the hosted zone {name}"))?
        .hosted_zone
        .context("CreateHostedZone returned no zone")?
        .id)
}

/// Bench timing: quick requeues and deployments, the resync the test needs.
pub fn fast_timing(resync: Duration) -> Timing {
    Timing {
        resync,
        pending: Duration::from_secs(1),
        error: Duration::from_secs(1),
        deploy_window: Duration::from_millis(100),
        ..Timing::default()
    }
}

/// Creates the gateway `name` for `hooks.<zone>` in the hosted zone `zone`, with
/// `extra` merged into its spec.
pub async fn create_gateway(
    client: &kube::Client,
    name: &str,
    zone: &str,
    extra: serde_json::Value,
) -> Result<WebhookGateway> {
    let mut spec =
        serde_json::json!({"hostname": format!("hooks.{zone}"), "hostedZone": {"name": zone}});
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    let gateway: WebhookGateway = serde_json::from_value(serde_json::json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": name},
        "spec": spec,
    }))?;
    kube::Api::<WebhookGateway>::all(client.clone())
        .create(&kube::api::PostParams::default(), &gateway)
        .await
        .with_context(|| format!("creating the gateway {name}"))
}
