//! One writer per status field, on the bench (real API server + MiniStack): the
//! reconciler's server-side applies own the conditions, queue ids and URL; the
//! scaler's own `backlog`, `replicas` and `lastScaleTime`, under its own field
//! manager, also for a Webhook that KEDA scales (the scaler does not scale it, but
//! it is still the one that shows its backlog).
//!
//! Its own test binary, so its operator is the only one on its API server.

mod common;

use anyhow::{Context as _, Result};
use common::Operator;
use hookline_crds::Webhook;
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::MANAGER;
use hookline_operator::controller::context::Context;
use hookline_operator::scaler::{self, Scaler};
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

fn webhook(name: &str, gateway: &str, engine: &str) -> Result<Webhook> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name},
        "spec": {
            "gatewayRef": {"name": gateway},
            "path": format!("/{name}"),
            "ordering": {"type": "Constant", "constant": "all"},
            "worker": {
                "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
                "scaling": {"engine": engine, "minReplicas": 0, "maxReplicas": 3}
            }
        }
    }))?)
}

/// The top-level status fields each field manager owns through the status
/// subresource, as the API server records them.
fn status_fields(webhook: &Webhook, manager: &str) -> Vec<String> {
    let mut fields: Vec<String> = webhook
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry.manager.as_deref() == Some(manager)
                && entry.subresource.as_deref() == Some("status")
        })
        .filter_map(|entry| entry.fields_v1.as_ref())
        .filter_map(|fields| fields.0.get("f:status")?.as_object().cloned())
        .flat_map(|status| status.into_iter().map(|(key, _)| key))
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

#[tokio::test]
async fn the_scaler_alone_writes_backlog_and_replicas() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let sdk = bench.aws.sdk_config().await;
    let id = std::process::id();
    let settings = common::settings(bench.aws.endpoint(), &format!("so{id}"));
    let clients = AwsClients::new(&sdk, &RateLimits::unlimited(), RetryPolicy::default());
    let zone = format!("so{id}.example.com");
    common::hosted_zone(&clients, &zone).await?;
    let ns = bench.kube.namespace(&client, "owners").await?;
    let gateway = format!("so-{id}");
    common::create_gateway(
        &client,
        &gateway,
        &zone,
        json!({"allowedNamespaces": {"from": "All"}}),
    )
    .await?;
    let ctx = Context::new(
        client.clone(),
        &clients,
        settings,
        common::fast_timing(Duration::from_secs(3)),
        "bench".to_owned(),
        Vec::new(),
    );
    let operator = Operator::start(ctx.clone());
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    for (name, engine) in [("builtin", "Builtin"), ("keda", "Keda")] {
        webhooks
            .create(&PostParams::default(), &webhook(name, &gateway, engine)?)
            .await?;
    }
    // Both queues exist and both Deployments are applied, in the operator's own cache
    // (which the scaler reads).
    wait_for(
        "the queues and the workers",
        Duration::from_secs(90),
        || async {
            let cached = ctx.webhooks().await?;
            let queued = cached
                .iter()
                .filter(|w| w.status.as_ref().is_some_and(|s| s.queue.is_some()))
                .count();
            let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
            Ok(queued == 2
                && deployments.get_opt("builtin-worker").await?.is_some()
                && deployments.get_opt("keda-worker").await?.is_some())
        },
    )
    .await?;
    Scaler::default().tick(&ctx).await?;

    for name in ["builtin", "keda"] {
        let webhook = webhooks.get(name).await?;
        let status = webhook.status.clone().context("status")?;
        assert!(
            status.backlog.is_some(),
            "{name}: the scaler shows the backlog"
        );
        assert!(status.replicas.is_some(), "{name}: and the replicas");
        let scalers = status_fields(&webhook, scaler::MANAGER);
        let operators = status_fields(&webhook, MANAGER);
        assert!(
            scalers.contains(&"f:backlog".to_owned()) && scalers.contains(&"f:replicas".to_owned()),
            "{name}: the scaler owns backlog and replicas: {scalers:?}"
        );
        assert!(
            !scalers.contains(&"f:conditions".to_owned()),
            "{name}: and nothing else: {scalers:?}"
        );
        assert!(
            operators.contains(&"f:conditions".to_owned())
                && operators.contains(&"f:queue".to_owned()),
            "{name}: the operator owns conditions and queue ids: {operators:?}"
        );
        for field in ["f:backlog", "f:replicas", "f:lastScaleTime"] {
            assert!(
                !operators.contains(&field.to_owned()),
                "{name}: the operator never writes {field}: {operators:?}"
            );
        }
        let others: Vec<String> = webhook
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| e.subresource.as_deref() == Some("status"))
            .filter_map(|e| e.manager.clone())
            .filter(|m| m != MANAGER && m != scaler::MANAGER)
            .collect();
        assert!(
            others.is_empty(),
            "{name}: no third status writer: {others:?}"
        );
    }
    operator.stop().await;
    Ok(())
}
