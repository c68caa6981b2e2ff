//! The controllers run at most `--reconcile-concurrency` reconciles of a kind at
//! once: 24 Webhooks created together (real API server, AWS in memory) converge
//! with no more than 3 Webhook reconciles in flight at any moment.
//!
//! Unbounded (kube-runtime's default), every new Webhook's reconcile started at once
//! and held its observed state while it waited for the AWS rate limits: 138 MB of
//! heap at the peak of a 1,000-Webhook create (docs/benchmarks.md "Memory").

mod common;

use anyhow::{Result, ensure};
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::memory::MemoryAws;
use hookline_operator::controller::context::{Context, Timing};
use hookline_operator::desired::Settings;
use hookline_tests::util::wait_for;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

const REGION: &str = "eu-west-1";
const WEBHOOKS: usize = 24;
const CONCURRENCY: u16 = 3;

fn ready(webhook: &Webhook) -> bool {
    webhook.status.as_ref().is_some_and(|status| {
        ["QueueReady", "RouteReady"].iter().all(|kind| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == *kind && c.status == "True")
        })
    })
}

#[tokio::test]
async fn no_more_than_the_configured_reconciles_run_at_once() -> Result<()> {
    let cluster = hookline_tests::shared_cluster().await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(&client, "concurrency").await?;
    let aws = MemoryAws::new(REGION);
    let zone = format!("{namespace}.example.com");
    aws.create_zone(&zone);
    let ctx = Context::with_services(
        client.clone(),
        aws.services(),
        Settings {
            name_prefix: "hk".to_owned(),
            region: REGION.to_owned(),
            worker_image: "hookline-worker:test".to_owned(),
            aws_endpoint_url: None,
            irsa_oidc_provider_arn: None,
        },
        Timing {
            resync: Duration::from_secs(300),
            pending: Duration::from_secs(1),
            error: Duration::from_secs(1),
            deploy_window: Duration::from_millis(20),
            drain_stall: Duration::from_secs(3600),
        },
        "concurrency".to_owned(),
        Vec::new(),
    )
    .with_concurrency(CONCURRENCY);
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let gateway = format!("gw-{namespace}");
    gateways
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookGateway",
                "metadata": {"name": gateway},
                "spec": {"hostname": format!("hooks.{zone}"), "hostedZone": {"name": zone}}
            }))?,
        )
        .await?;
    let operator = Operator::start(ctx.clone());
    wait_for("the gateway Ready", Duration::from_secs(60), || async {
        let gateway = gateways.get(&gateway).await?;
        Ok(gateway.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        }))
    })
    .await?;

    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
    for i in 0..WEBHOOKS {
        webhooks
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "hookline.dev/v1alpha1", "kind": "Webhook",
                    "metadata": {"name": format!("wh-{i}")},
                    "spec": {
                        "gatewayRef": {"name": gateway},
                        "path": format!("/concurrency/wh-{i}"),
                        "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h:1"}]}}}
                    }
                }))?,
            )
            .await?;
    }
    wait_for(
        &format!("{WEBHOOKS} Webhooks serving"),
        Duration::from_secs(120),
        || async {
            let all = webhooks.list(&Default::default()).await?;
            Ok(all.items.iter().filter(|w| ready(w)).count() == WEBHOOKS)
        },
    )
    .await?;
    operator.stop().await;

    let peak = ctx.metrics.peak_in_flight("webhook");
    eprintln!("most Webhook reconciles in flight at once: {peak} (limit {CONCURRENCY})");
    ensure!(
        peak <= i64::from(CONCURRENCY),
        "{peak} Webhook reconciles ran at once, over the limit of {CONCURRENCY}"
    );
    // Reconciles wait on the API server, so 24 new Webhooks do overlap: the limit,
    // not a lack of work, kept the count down.
    ensure!(
        peak >= 2,
        "only {peak} reconcile in flight: nothing overlapped"
    );
    Ok(())
}
