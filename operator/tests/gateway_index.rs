//! What a gateway's Webhooks share (the stage's per-route throttles, the REST API's
//! source-IP resource policy) follows the Webhooks there are now, with the operator
//! running against the bench (real API server + MiniStack): removing a Webhook's
//! throttle override removes it from the stage, and deleting the last Webhook with a
//! source-IP allow list removes its limit from the policy.
//!
//! One test function, as in operator.rs: two operators against one API server would
//! both reconcile every gateway.

mod common;

use anyhow::{Context as _, Result};
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::Context;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

const PATH: &str = "/partners/limited";

fn route_ready(webhook: &Webhook) -> bool {
    webhook.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "RouteReady" && c.status == "True")
    })
}

/// The stage's per-route overrides, by decoded resource path.
async fn route_overrides(
    apigateway: &aws_sdk_apigateway::Client,
    api_id: &str,
    stage: &str,
) -> Result<Vec<String>> {
    let stage = apigateway
        .get_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .send()
        .await?;
    Ok(stage
        .method_settings
        .unwrap_or_default()
        .into_keys()
        .filter(|k| k != "*/*")
        .map(|k| k.replace("~1", "/"))
        .collect())
}

/// The REST API's resource policy as stored (AWS returns it JSON-escaped), or "".
async fn policy(apigateway: &aws_sdk_apigateway::Client, api_id: &str) -> Result<String> {
    Ok(apigateway
        .get_rest_api()
        .rest_api_id(api_id)
        .send()
        .await?
        .policy
        .unwrap_or_default()
        .replace('\\', ""))
}

#[tokio::test]
async fn shared_settings_follow_the_webhooks_that_ask_for_them() -> Result<()> {
    // The operator's log, printed by the test harness when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hookline_operator=info")
        .with_test_writer()
        .try_init();
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let sdk = bench.aws.sdk_config().await;
    let id = std::process::id();
    let settings = common::settings(bench.aws.endpoint(), &format!("gi{id}"));
    let clients = AwsClients::new(&sdk, &RateLimits::unlimited(), RetryPolicy::default());
    let zone_name = format!("gi{id}.example.com");
    common::hosted_zone(&clients, &zone_name).await?;
    let ns = bench.kube.namespace(&client, "index").await?;
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let gw_name = format!("gi-{id}");
    common::create_gateway(
        &client,
        &gw_name,
        &zone_name,
        json!({"allowedNamespaces": {"from": "All"}}),
    )
    .await?;
    // A long resync: what changes must come from the Webhooks' changes, not a timer.
    let operator = Operator::start(Context::new(
        client.clone(),
        &clients,
        settings.clone(),
        common::fast_timing(Duration::from_secs(600)),
        "bench".to_owned(),
        Vec::new(),
    ));

    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    webhooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "hookline.dev/v1alpha1",
                "kind": "Webhook",
                "metadata": {"name": "limited", "namespace": ns},
                "spec": {
                    "gatewayRef": {"name": gw_name},
                    "path": PATH,
                    "throttling": {"rateLimit": 5, "burstLimit": 10},
                    "auth": {"sourceIpAllowList": ["192.0.2.0/24"]},
                    "ordering": {"type": "Constant", "constant": "all"},
                    "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
                }
            }))?,
        )
        .await?;
    wait_for("RouteReady", Duration::from_secs(90), || async {
        Ok(route_ready(&webhooks.get("limited").await?))
    })
    .await?;
    let gateway = gateways
        .get(&gw_name)
        .await?
        .status
        .context("gateway status")?;
    let api_id = gateway.rest_api_id.context("API id")?;
    let stage = gateway.stage_name.context("stage")?;
    let overrides = route_overrides(&clients.apigateway, &api_id, &stage).await?;
    assert_eq!(overrides, vec![format!("{PATH}/POST")]);
    let stored = policy(&clients.apigateway, &api_id).await?;
    assert!(
        stored.contains(&format!("POST{PATH}")) && stored.contains("192.0.2.0/24"),
        "{stored}"
    );

    // The override dropped from the spec: the stage keeps none for the route.
    webhooks
        .patch(
            "limited",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"throttling": null}})),
        )
        .await?;
    wait_for(
        "the route's throttle override to leave the stage",
        Duration::from_secs(60),
        || async {
            Ok(route_overrides(&clients.apigateway, &api_id, &stage)
                .await?
                .is_empty())
        },
    )
    .await?;

    // The last Webhook with a source-IP allow list deleted: its limit leaves the policy.
    webhooks.delete("limited", &DeleteParams::default()).await?;
    wait_for(
        "the Webhook to be deleted",
        Duration::from_secs(90),
        || async { Ok(webhooks.get_opt("limited").await?.is_none()) },
    )
    .await?;
    wait_for(
        "its source-IP limit to leave the resource policy",
        Duration::from_secs(60),
        || async {
            Ok(!policy(&clients.apigateway, &api_id)
                .await?
                .contains(&format!("POST{PATH}")))
        },
    )
    .await?;
    operator.stop().await;
    Ok(())
}
