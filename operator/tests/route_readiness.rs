//! What a Webhook's RouteReady means, with the operator running against the bench
//! (real API server + MiniStack): a route is ready only once a deployment that
//! contains it is live on the stage, even when the operator that built the route
//! stopped before deploying it; and a Webhook that would exceed an AWS quota is told
//! so before any AWS call, while the older ones keep working.
//!
//! One test function, as in operator.rs: two operators against one API server would
//! both reconcile every gateway.

mod common;

use anyhow::{Context as _, Result};
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::Context;
use hookline_operator::desired::Settings;
use hookline_operator::quotas::Quotas;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn condition(webhook: &Webhook, type_: &str) -> Option<(String, String)> {
    webhook
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// A fresh operator: new caches, new deployer, nothing remembered.
fn operator_context(
    client: &kube::Client,
    clients: &AwsClients,
    settings: &Settings,
) -> Arc<Context> {
    Context::new(
        client.clone(),
        clients,
        settings.clone(),
        common::fast_timing(Duration::from_secs(3)),
        "bench".to_owned(),
        Vec::new(),
    )
}

/// The paths in the deployment the stage serves now, and its id.
async fn live_paths(
    apigateway: &aws_sdk_apigateway::Client,
    api_id: &str,
    stage: &str,
) -> Result<(String, Vec<String>)> {
    let deployment = apigateway
        .get_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .send()
        .await?
        .deployment_id
        .context("the stage has no deployment")?;
    let summary = apigateway
        .get_deployment()
        .rest_api_id(api_id)
        .deployment_id(&deployment)
        .embed("apisummary")
        .send()
        .await?
        .api_summary
        .unwrap_or_default();
    Ok((deployment, summary.into_keys().collect()))
}

#[tokio::test]
async fn a_route_is_ready_only_once_deployed() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let sdk = bench.aws.sdk_config().await;
    let id = std::process::id();
    let settings = common::settings(bench.aws.endpoint(), &format!("rr{id}"));
    let clients = AwsClients::new(&sdk, &RateLimits::unlimited(), RetryPolicy::default());

    let zone_name = format!("rr{id}.example.com");
    common::hosted_zone(&clients, &zone_name).await?;
    let ns = bench.kube.namespace(&client, "ready").await?;
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let gw_name = format!("rr-{id}");
    common::create_gateway(
        &client,
        &gw_name,
        &zone_name,
        json!({"allowedNamespaces": {"from": "All"}}),
    )
    .await?;
    let operator = Operator::start(operator_context(&client, &clients, &settings));
    // The gateway first: its stage's first deployment has no webhook route.
    wait_for("the gateway's stage", Duration::from_secs(90), || async {
        let status = gateways.get(&gw_name).await?.status.unwrap_or_default();
        Ok(match (status.rest_api_id, status.stage_name) {
            (Some(api), Some(stage)) => live_paths(&clients.apigateway, &api, &stage).await.is_ok(),
            _ => false,
        })
    })
    .await?;
    let gateway = gateways
        .get(&gw_name)
        .await?
        .status
        .context("gateway status")?;
    let api_id = gateway.rest_api_id.context("API id")?;
    let stage = gateway.stage_name.context("stage")?;
    let (before_route, paths) = live_paths(&clients.apigateway, &api_id, &stage).await?;
    assert!(!paths.contains(&"/orders/created".to_owned()), "{paths:?}");

    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    webhooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hookline.dev/v1alpha1",
                "kind": "Webhook",
                "metadata": {"name": "orders", "namespace": ns},
                "spec": {
                    "gatewayRef": {"name": gw_name},
                    "path": "/orders/created",
                    "ordering": {"type": "Constant", "constant": "all"},
                    "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
                }
            }))?,
        )
        .await?;
    wait_for("RouteReady", Duration::from_secs(90), || async {
        Ok(condition(&webhooks.get("orders").await?, "RouteReady")
            .is_some_and(|(status, _)| status == "True"))
    })
    .await?;
    operator.stop().await;
    let (deployed, paths) = live_paths(&clients.apigateway, &api_id, &stage).await?;
    assert!(paths.contains(&"/orders/created".to_owned()), "{paths:?}");
    assert_ne!(deployed, before_route);

    // The crash: the route was built, and the operator stopped before its deployment.
    // AWS is then exactly as if the stage still served the deployment from before the
    // route; so put it back on that one.
    clients
        .apigateway
        .update_stage()
        .rest_api_id(&api_id)
        .stage_name(&stage)
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/deploymentId")
                .value(&before_route)
                .build(),
        )
        .send()
        .await?;
    let (_, paths) = live_paths(&clients.apigateway, &api_id, &stage).await?;
    assert!(!paths.contains(&"/orders/created".to_owned()), "{paths:?}");
    // What the stopped operator had reported goes, so that the next report is seen.
    webhooks
        .patch_status(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await?;

    let fresh = AwsClients::new(&sdk, &RateLimits::unlimited(), RetryPolicy::default());
    let operator = Operator::start(operator_context(&client, &fresh, &settings));
    wait_for("RouteReady again", Duration::from_secs(60), || async {
        Ok(condition(&webhooks.get("orders").await?, "RouteReady")
            .is_some_and(|(status, _)| status == "True"))
    })
    .await?;
    let (_, paths) = live_paths(&clients.apigateway, &api_id, &stage).await?;
    assert!(
        paths.contains(&"/orders/created".to_owned()),
        "RouteReady=True while the stage serves a deployment without the route: {paths:?}"
    );
    assert!(
        fresh.caller.count(
            hookline_operator::aws::Service::ApiGateway,
            "CreateDeployment",
            "ok"
        ) >= 1,
        "the restarted operator deployed"
    );
    operator.stop().await;

    // Quotas: four resources per API fit `/`, /orders, /orders/created and
    // /orders/refunded; /refunds would be a fifth. The newer Webhook is refused.
    let operator = Operator::start(operator_context(&client, &clients, &settings).with_quotas(
        Quotas {
            resources_per_api: 4,
            ..Quotas::default()
        },
    ));
    for (name, path) in [("refunded", "/orders/refunded"), ("refunds", "/refunds")] {
        webhooks
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "hookline.dev/v1alpha1",
                    "kind": "Webhook",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "gatewayRef": {"name": gw_name},
                        "path": path,
                        "ordering": {"type": "Constant", "constant": "all"},
                        "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
                    }
                }))?,
            )
            .await?;
        // Creation order decides (creationTimestamp has whole seconds).
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    wait_for("the quota refusal", Duration::from_secs(60), || async {
        Ok(condition(&webhooks.get("refunds").await?, "Ready")
            == Some((
                "False".to_owned(),
                "ResourcesPerApiQuotaExceeded".to_owned(),
            )))
    })
    .await?;
    wait_for(
        "the older Webhook's route",
        Duration::from_secs(60),
        || async {
            Ok(condition(&webhooks.get("refunded").await?, "RouteReady")
                .is_some_and(|(status, _)| status == "True"))
        },
    )
    .await?;
    let refused = webhooks.get("refunds").await?;
    let message = refused
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "RouteReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("5 resources") && message.contains("quotas.resourcesPerApi"),
        "{message}"
    );
    assert!(
        refused.status.and_then(|s| s.queue).is_none(),
        "no AWS object for a refused Webhook"
    );
    assert!(
        condition(&webhooks.get("orders").await?, "RouteReady")
            .is_some_and(|(status, _)| status == "True")
    );
    operator.stop().await;
    Ok(())
}
