//! Benchmark (prints figures, asserts nothing): how long from a backlog forming to
//! the worker Deployment's replicas being patched, with the scaler at its default
//! 10 s interval. A backlog appears at an arbitrary moment of the scaler's cycle, so
//! the figure spreads over one interval; KEDA's documented default polling interval
//! is 30 s.
//!
//! `cargo run -p hookline-operator --example reaction -- [trials=8]`

#![allow(clippy::print_stdout)]

use anyhow::{Context as _, Result};
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::{Context, Timing};
use hookline_operator::desired::Settings;
use hookline_operator::scaler::Scaler;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const INTERVAL: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<()> {
    let trials: usize = std::env::args()
        .nth(1)
        .map_or(Ok(8), |a| a.parse())
        .context("trials")?;
    let bench = Bench::start().await?;
    let client = bench.kube.client().await?;
    let sdk = bench.aws.sdk_config().await;
    let clients = AwsClients::new(&sdk, &RateLimits::default(), RetryPolicy::default());
    let settings = Settings {
        name_prefix: "rx".to_owned(),
        region: hookline_tests::aws::REGION.to_owned(),
        worker_image: "hookline-worker:bench".to_owned(),
        aws_endpoint_url: Some(bench.aws.endpoint().to_owned()),
        irsa_oidc_provider_arn: None,
    };
    let timing = Timing {
        pending: Duration::from_secs(1),
        error: Duration::from_secs(1),
        ..Timing::default()
    };
    let ctx = Context::new(
        client.clone(),
        &clients,
        settings,
        timing,
        "bench".to_owned(),
        Vec::new(),
    );
    let stop = CancellationToken::new();
    let shutdown = {
        let stop = stop.clone();
        futures::FutureExt::shared(Box::pin(async move { stop.cancelled_owned().await }))
    };
    let controllers = tokio::spawn(hookline_operator::controller::run::run(
        ctx.clone(),
        shutdown.clone(),
    ));
    let scaler = tokio::spawn(Arc::new(Scaler::default()).run(ctx.clone(), INTERVAL, shutdown));

    aws_sdk_route53::Client::new(&sdk)
        .create_hosted_zone()
        .name("rx.example.com")
        .caller_reference("rx")
        .send()
        .await?;
    let gateway: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookGateway",
        "metadata": {"name": "rx"},
        "spec": {"hostname": "hooks.rx.example.com", "hostedZone": {"name": "rx.example.com"}}
    }))?;
    Api::<WebhookGateway>::all(client.clone())
        .create(&PostParams::default(), &gateway)
        .await?;
    let namespace = bench.kube.namespace(&client, "rx").await?;
    let webhook: Webhook = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1", "kind": "Webhook",
        "metadata": {"name": "rx", "namespace": namespace},
        "spec": {
            "gatewayRef": {"name": "rx"}, "path": "/rx",
            "worker": {
                "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
                "scaling": {"minReplicas": 0, "maxReplicas": 5, "targetBacklogPerReplica": 1, "scaleDownDelaySeconds": 0}
            }
        }
    }))?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
    webhooks.create(&PostParams::default(), &webhook).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    wait_for("the queue", Duration::from_secs(120), || async {
        Ok(webhooks
            .get("rx")
            .await?
            .status
            .and_then(|s| s.queue)
            .is_some())
    })
    .await?;
    let queue = webhooks
        .get("rx")
        .await?
        .status
        .and_then(|s| s.queue)
        .context("queue")?
        .url;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let replicas = || async {
        Ok::<_, anyhow::Error>(
            deployments
                .get("rx-worker")
                .await?
                .spec
                .replicas
                .unwrap_or(1),
        )
    };
    wait_for(
        "the idle worker at zero",
        Duration::from_secs(60),
        || async { Ok(replicas().await? == 0) },
    )
    .await?;

    let mut reactions = Vec::new();
    for trial in 0..trials {
        // An arbitrary phase of the scaler's cycle.
        tokio::time::sleep(Duration::from_millis(1_300 * (trial as u64 % 7) + 500)).await;
        let started = Instant::now();
        for i in 0..3 {
            sqs.send_message()
                .queue_url(&queue)
                .message_group_id(format!("g{i}"))
                .message_body(format!("t{trial}-{i}"))
                .send()
                .await?;
        }
        wait_for("a scale-up", INTERVAL * 3, || async {
            Ok(replicas().await? > 0)
        })
        .await?;
        let took = started.elapsed();
        println!(
            "trial {trial}: replicas patched {:.2}s after the backlog appeared",
            took.as_secs_f64()
        );
        reactions.push(took.as_secs_f64());
        sqs.purge_queue().queue_url(&queue).send().await?;
        wait_for("the scale-down", INTERVAL * 3, || async {
            Ok(replicas().await? == 0)
        })
        .await?;
    }
    reactions.sort_by(f64::total_cmp);
    let median = reactions[reactions.len() / 2];
    println!(
        "\nreaction over {trials} trials at a {}s interval: min {:.2}s, median {median:.2}s, max {:.2}s",
        INTERVAL.as_secs(),
        reactions[0],
        reactions[reactions.len() - 1]
    );
    println!(
        "KEDA's default pollingInterval is 30s: a backlog waits up to 30s (15s on average) before KEDA sees it."
    );
    stop.cancel();
    let _ = controllers.await;
    let _ = scaler.await;
    Ok(())
}
