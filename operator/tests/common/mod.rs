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

/// A context on the in-memory AWS of `aws` (in `REGION` eu-west-1), names under
/// `prefix`, quick requeues and deployments: for tests of the controllers themselves
/// (caches, concurrency) where AWS's behaviour is not the subject.
pub fn in_memory_context(
    client: &kube::Client,
    aws: &hookline_operator::aws::memory::MemoryAws,
    prefix: &str,
) -> Arc<Context> {
    Context::with_services(
        client.clone(),
        aws.services(),
        Settings {
            name_prefix: prefix.to_owned(),
            region: IN_MEMORY_REGION.to_owned(),
            worker_image: "hookline-worker:test".to_owned(),
            aws_endpoint_url: None,
            irsa_oidc_provider_arn: None,
        },
        Timing {
            deploy_window: Duration::from_millis(20),
            ..fast_timing(Duration::from_secs(300))
        },
        prefix.to_owned(),
        Vec::new(),
    )
}

/// The region of [`in_memory_context`].
pub const IN_MEMORY_REGION: &str = "eu-west-1";

/// Waits (up to a minute) until the gateway `name` is Ready.
pub async fn gateway_ready(client: &kube::Client, name: &str) -> Result<()> {
    let gateways = kube::Api::<WebhookGateway>::all(client.clone());
    hookline_tests::util::wait_for(
        &format!("the gateway {name} Ready"),
        Duration::from_secs(60),
        || async {
            let gateway = gateways.get(name).await?;
            Ok(gateway.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }))
        },
    )
    .await
}

/// Creates `count` Webhooks `wh-0`… in `namespace` on `gateway`, at paths
/// `/<path_prefix>/wh-N`, each with a one-container worker.
pub async fn create_webhooks(
    webhooks: &kube::Api<hookline_crds::Webhook>,
    gateway: &str,
    path_prefix: &str,
    count: usize,
) -> Result<()> {
    for i in 0..count {
        let webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1", "kind": "Webhook",
            "metadata": {"name": format!("wh-{i}")},
            "spec": {
                "gatewayRef": {"name": gateway},
                "path": format!("/{path_prefix}/wh-{i}"),
                "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}}}
            }
        }))?;
        webhooks
            .create(&kube::api::PostParams::default(), &webhook)
            .await
            .with_context(|| format!("creating the Webhook wh-{i}"))?;
    }
    Ok(())
}

/// The log at `info`, as the operator writes it by default, readable afterwards.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// The test binary's log, from now on. Process-wide: a thread's own subscriber
    /// (`set_default`) missed events while other tests ran in parallel, so the log
    /// holds every test's lines and a test reads those about its own objects.
    pub fn capture() -> Result<Self> {
        static LOG: std::sync::OnceLock<Result<LogBuffer, String>> = std::sync::OnceLock::new();
        LOG.get_or_init(|| {
            let log = Self::default();
            let writer = log.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .map(|()| log)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("capturing the log: {e}"))
    }

    /// The lines logged so far that mention `object`.
    pub fn lines_about(&self, object: &str) -> Vec<String> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(object))
            .map(str::to_owned)
            .collect()
    }

    /// The lines logged so far for `operation` that mention `object`.
    pub fn changes(&self, operation: &str, object: &str) -> Vec<String> {
        self.lines_about(object)
            .into_iter()
            .filter(|l| l.contains(&format!("operation=\"{operation}\"")))
            .collect()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
