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
use hookline_crds::Webhook;
use hookline_operator::aws::memory::MemoryAws;
use hookline_tests::util::wait_for;
use kube::api::Api;
use serde_json::json;
use std::time::Duration;

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
    let aws = MemoryAws::new(common::IN_MEMORY_REGION);
    let zone = format!("{namespace}.example.com");
    aws.create_zone(&zone);
    let ctx = common::in_memory_context(&client, &aws, "hk").with_concurrency(CONCURRENCY);
    let gateway = format!("gw-{namespace}");
    common::create_gateway(&client, &gateway, &zone, json!({})).await?;
    let operator = Operator::start(ctx.clone());
    common::gateway_ready(&client, &gateway).await?;

    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
    common::create_webhooks(&webhooks, &gateway, "concurrency", WEBHOOKS).await?;
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
