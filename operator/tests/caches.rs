//! The controllers read Webhooks from their caches, not the API: with the operator's
//! controllers running (real API server, AWS in memory), 20 Webhooks converge while
//! the API server serves Webhook LISTs only to the watches that fill the caches; and
//! a gateway woken by a Webhook's change applies that change (its cache has it).
//!
//! Listing every Webhook in every reconcile made the operator's memory and the API
//! server's load grow with the square of the Webhook count (docs/benchmarks.md).
//!
//! Its own test binary: its API server's request counts are this test's alone.

mod common;

use anyhow::{Context as _, Result, ensure};
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::memory::MemoryAws;
use hookline_tests::util::wait_for;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const WEBHOOKS: usize = 20;

/// The API server's count of Webhook LIST requests so far, from its `/metrics`.
async fn webhook_lists(client: &kube::Client) -> Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let metrics = client.request_text(request).await?;
    Ok(metrics
        .lines()
        .filter(|line| {
            line.starts_with("apiserver_request_total{")
                && line.contains("resource=\"webhooks\"")
                && line.contains("verb=\"LIST\"")
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

fn ready(webhook: &Webhook) -> bool {
    let ok = |kind: &str| {
        webhook.status.as_ref().is_some_and(|status| {
            status
                .conditions
                .iter()
                .any(|c| c.type_ == kind && c.status == "True")
        })
    };
    ok("QueueReady") && ok("RouteReady")
}

#[tokio::test]
async fn reconciles_read_webhooks_from_the_caches_and_see_what_woke_them() -> Result<()> {
    let cluster = hookline_tests::shared_cluster().await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(&client, "caches").await?;
    let aws = MemoryAws::new(common::IN_MEMORY_REGION);
    let zone = format!("{namespace}.example.com");
    aws.create_zone(&zone);
    let ctx = common::in_memory_context(&client, &aws, "hc");
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let gateway = format!("gw-{namespace}");
    common::create_gateway(&client, &gateway, &zone, json!({})).await?;
    let operator = Operator::start(ctx);
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
    common::gateway_ready(&client, &gateway).await?;

    let before = webhook_lists(&client).await?;
    common::create_webhooks(&webhooks, &gateway, "caches", WEBHOOKS).await?;
    // The wait's own lists are the test's, not the operator's: counted to subtract.
    let own_lists = AtomicU32::new(0);
    wait_for(
        &format!("{WEBHOOKS} Webhooks serving"),
        Duration::from_secs(120),
        || async {
            own_lists.fetch_add(1, Ordering::Relaxed);
            let all = webhooks.list(&Default::default()).await?;
            Ok(all.items.iter().filter(|w| ready(w)).count() == WEBHOOKS)
        },
    )
    .await?;
    let by_operator = webhook_lists(&client).await? - before - f64::from(own_lists.into_inner());
    eprintln!("Webhook LISTs by the operator while {WEBHOOKS} converged: {by_operator}");
    // The caches' watches listed before `before`; a relist of each (a watch that
    // expired) is all that may come on top.
    ensure!(
        by_operator <= 2.0,
        "the operator listed Webhooks {by_operator} times while {WEBHOOKS} converged; \
         reconciles must read the caches"
    );
    let status = gateways
        .get(&gateway)
        .await?
        .status
        .context("gateway status")?;
    let (api_id, stage) = (
        status.rest_api_id.context("rest API id")?,
        status.stage_name.context("stage")?,
    );

    // A change the gateway index reads: the gateway applies it from its cache.
    webhooks
        .patch(
            "wh-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"throttling": {"rateLimit": 5, "burstLimit": 10}}})),
        )
        .await?;
    let throttles = || {
        aws.rest_api(&api_id)
            .and_then(|api| api.stages.get(&stage).cloned())
            .map(|stage| stage.route_throttles)
            .unwrap_or_default()
    };
    wait_for(
        "the gateway to apply wh-0's throttle",
        Duration::from_secs(30),
        || async { Ok(throttles().get("/caches/wh-0") == Some(&(5.0, 10))) },
    )
    .await?;
    operator.stop().await;
    Ok(())
}
