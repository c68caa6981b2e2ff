//! The operator end to end on the bench (a real API server, and MiniStack or
//! LocalStack), for what only real AWS behaviour shows: the gateway and a Webhook
//! become Ready through the SDK implementations (and a restart mid-creation finds
//! everything by id or tag), a POST to the URL lands in the queue, an untagged
//! custom domain someone else created is not adopted, and deletion removes every
//! part. On MiniStack IAM is enforced: the operator runs as an IAM user whose only
//! policy is the chart's, every call it made is in that policy, and a policy
//! missing one statement makes the operator say AccessDenied in a condition.
//!
//! Each reconcile decision has its own scenario test on the in-memory AWS
//! (`tests/scenarios/`); this file proves the wiring.
//!
//! Each run starts its own API server: two operators against one would both
//! reconcile every gateway. The bench has no kubelet, so where the operator waits
//! for worker pods, the test plays the kubelet and reports the Deployment ready.

mod common;

use anyhow::{Context as _, Result};
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy, Route53Dns};
use hookline_operator::controller::context::{Context, Timing};
use hookline_tests::aws::Options;
use hookline_tests::iam::{
    PolicyValues, as_evaluated_by, chart_policy, user_with_policy, without_statement,
};
use hookline_tests::util::{post, wait_for};
use hookline_tests::{Bench, EmulatorKind, data_plane_test};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn webhook_reason(webhook: &Webhook) -> (String, String) {
    webhook
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

fn gateway_reason(gateway: &WebhookGateway) -> (String, String) {
    gateway
        .status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// A failed wait on a gateway, with the gateway's conditions (e.g. the
/// AccessDenied that IAM enforcement produced) in the error.
async fn explain(waited: Result<()>, gateways: &Api<WebhookGateway>, name: &str) -> Result<()> {
    let Err(error) = waited else {
        return Ok(());
    };
    let conditions = gateways
        .get(name)
        .await
        .map(|g| g.status.unwrap_or_default().conditions);
    Err(error.context(format!("gateway {name}'s conditions: {conditions:?}")))
}

/// Plays the kubelet: reports the worker Deployment's pods ready.
async fn report_ready(client: &kube::Client, namespace: &str, name: &str) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
    deployments
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

fn webhook_yaml(name: &str, namespace: &str, gateway: &str, path: &str) -> serde_json::Value {
    json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayRef": {"name": gateway},
            "path": path,
            "ordering": {"type": "BodyField", "bodyField": "$.data.object.customer"},
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook"}},
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    })
}

/// A bench of this test's own on `kind`, enforcing IAM where the emulator can.
async fn own_bench(kind: EmulatorKind) -> Result<Bench> {
    Bench::start_on(
        kind,
        Options {
            enforce_iam: kind == EmulatorKind::MiniStack,
        },
    )
    .await
}

/// The operator's AWS clients: an IAM user holding only `policy` (on an emulator
/// that does not enforce IAM the user exists but is not checked).
async fn operator_clients(
    bench: &Bench,
    user: &str,
    policy: &serde_json::Value,
) -> Result<AwsClients> {
    let credentials = user_with_policy(&bench.aws, user, policy).await?;
    Ok(AwsClients::new(
        &bench.aws.sdk_config_as(credentials).await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    ))
}

/// The chart's operator policy for `prefix` and the zone `zone_id`, as the bench's
/// emulator evaluates it.
fn operator_policy(bench: &Bench, prefix: &str, zone_id: &str) -> Result<serde_json::Value> {
    let policy = chart_policy(
        "operator-iam-policy.json",
        &PolicyValues {
            region: hookline_tests::aws::REGION.to_owned(),
            account: bench.aws.account_id().to_owned(),
            prefix: prefix.to_owned(),
            zone_id: zone_id.trim_start_matches("/hostedzone/").to_owned(),
            namespace: String::new(),
        },
    )?;
    Ok(as_evaluated_by(bench.aws.kind(), &policy))
}

const TIMING: Timing = Timing {
    resync: Duration::from_secs(3),
    pending: Duration::from_secs(1),
    error: Duration::from_secs(1),
    deploy_window: Duration::from_millis(100),
    drain_stall: Duration::from_secs(3600),
};

/// Where a POST to the gateway's `path` goes, as `(Host, request path)`: its custom
/// domain where the emulator serves custom domains by `Host` (as AWS serves them at
/// the domain's endpoint), else the stage's execute-api URL (LocalStack's community
/// edition serves no custom domains).
fn invoke(
    kind: EmulatorKind,
    host: &str,
    api_id: &str,
    stage: &str,
    path: &str,
) -> (String, String) {
    if kind.serves_custom_domains() {
        (host.to_owned(), path.to_owned())
    } else {
        (
            "127.0.0.1".to_owned(),
            format!("/restapis/{api_id}/{stage}/_user_request_{path}"),
        )
    }
}

// On LocalStack, which drops a custom domain's tags, the gateway's domain is its own
// by the regional domain name its status recorded at creation (docs/operator.md); IAM
// is enforced on MiniStack only.
data_plane_test!(the_operator_end_to_end);

async fn the_operator_end_to_end(kind: EmulatorKind) -> Result<()> {
    // The operator's warnings (a cleanup step refused by IAM shows only there),
    // printed by the test harness when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hookline_operator=warn")
        .with_test_writer()
        .try_init();
    let bench = own_bench(kind).await?;
    let client = bench.kube.client().await?;
    // The test's own reads and the platform team's setup use the account's root
    // keys; the operator gets nothing but the chart's policy.
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let port = bench.aws.port();
    let id = std::process::id();
    let prefix = format!("op{id}");

    // What the platform team has: a zone; what the app team has: a namespace and a secret.
    let zone_name = format!("op{id}.example.com");
    let zone_id = common::hosted_zone(&clients, &zone_name).await?;
    let operator_aws = operator_clients(
        &bench,
        &format!("{prefix}-operator"),
        &operator_policy(&bench, &prefix, &zone_id)?,
    )
    .await?;
    let ctx = Context::new(
        client.clone(),
        &operator_aws,
        common::settings(bench.aws.endpoint(), &prefix),
        TIMING,
        "bench".to_owned(),
        Vec::new(),
    );
    let host = format!("hooks.{zone_name}");
    let ns = bench.kube.namespace(&client, "shop").await?;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"hookline.dev/webhooks": "allowed"}}})),
        )
        .await?;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "stripe-webhook"}, "stringData": {"secret": "whsec_test"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;

    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let gw_name = format!("gw-{id}");
    let gateway: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": gw_name},
        "spec": {
            "hostname": host,
            "hostedZone": {"name": zone_name},
            "allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"hookline.dev/webhooks": "allowed"}}}
        }
    }))?;
    gateways.create(&PostParams::default(), &gateway).await?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    webhooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(webhook_yaml("stripe", &ns, &gw_name, "/payments/stripe"))?,
        )
        .await?;

    // Start the operator, and kill it once the gateway's API exists: the restarted
    // operator must find everything by id or tag and create nothing twice.
    let operator = Operator::start(ctx.clone());
    let waited = wait_for(
        "the gateway's REST API id in status",
        Duration::from_secs(60),
        || async {
            Ok(gateways
                .get(&gw_name)
                .await?
                .status
                .and_then(|s| s.rest_api_id)
                .is_some())
        },
    )
    .await;
    explain(waited, &gateways, &gw_name).await?;
    operator.kill();
    let operator = Operator::start(ctx.clone());

    let waited = wait_for("the gateway Ready", Duration::from_secs(90), || async {
        Ok(gateway_reason(&gateways.get(&gw_name).await?).0 == "True")
    })
    .await;
    explain(waited, &gateways, &gw_name).await?;
    let gateway = gateways.get(&gw_name).await?;
    let gw_status = gateway.status.clone().context("gateway status")?;
    assert_eq!(
        gw_status.url.as_deref(),
        Some(format!("https://{host}").as_str())
    );
    let uid = gateway.metadata.uid.clone().unwrap_or_default();
    let apis = clients
        .apigateway
        .get_rest_apis()
        .limit(500)
        .send()
        .await?
        .items
        .unwrap_or_default();
    let ours = apis
        .iter()
        .filter(|a| a.tags.as_ref().and_then(|t| t.get("hookline.dev/owner")) == Some(&uid))
        .count();
    assert_eq!(ours, 1, "one REST API for the gateway, despite the restart");
    let certs = clients
        .acm
        .list_certificates()
        .send()
        .await?
        .certificate_summary_list
        .unwrap_or_default();
    let ours = certs
        .iter()
        .filter(|c| c.domain_name.as_deref() == Some(host.as_str()))
        .count();
    assert_eq!(ours, 1, "one certificate, despite the restart");

    wait_for("the worker Deployment", Duration::from_secs(60), || async {
        Ok(Api::<Deployment>::namespaced(client.clone(), &ns)
            .get_opt("stripe-worker")
            .await?
            .is_some())
    })
    .await?;
    report_ready(&client, &ns, "stripe-worker").await?;
    wait_for("the webhook Ready", Duration::from_secs(60), || async {
        Ok(webhook_reason(&webhooks.get("stripe").await?).0 == "True")
    })
    .await?;
    let status = webhooks
        .get("stripe")
        .await?
        .status
        .context("webhook status")?;
    assert_eq!(
        status.url.as_deref(),
        Some(format!("https://{host}/payments/stripe").as_str())
    );
    let queue_url = status.queue.clone().context("queue in status")?.url;

    // The URL works: through the custom domain (where the emulator serves it) into
    // the queue.
    let (invoke_host, invoke_path) = invoke(
        kind,
        &host,
        gw_status.rest_api_id.as_deref().context("api id")?,
        gw_status.stage_name.as_deref().context("stage")?,
        "/payments/stripe",
    );
    let event = r#"{"id":"evt_1","data":{"object":{"customer":"cus_1"}}}"#;
    let status_code = post(
        port,
        &invoke_host,
        &invoke_path,
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", "t=1,v1=00"),
        ],
        event,
    )
    .await?;
    assert_eq!(status_code.0, 200);
    let received = clients
        .sqs
        .receive_message()
        .queue_url(&queue_url)
        .wait_time_seconds(2)
        .send()
        .await?
        .messages
        .unwrap_or_default();
    assert_eq!(
        received.first().and_then(|m| m.body.as_deref()),
        Some(event)
    );
    // Delivered, as the worker would: deletion waits for a queue that still holds
    // (or has in flight) what the route accepted.
    for message in &received {
        clients
            .sqs
            .delete_message()
            .queue_url(&queue_url)
            .set_receipt_handle(message.receipt_handle.clone())
            .send()
            .await?;
    }

    // A custom domain someone else created, untagged, under a free hostname: the
    // gateway never recorded it, so it is not adopted (on either emulator, whether
    // or not it keeps tags), and the gateway says so. Boxed: the test's future is
    // large enough as it is for the test thread's stack.
    let certificate = gw_status.certificate_arn.clone().context("certificate")?;
    Box::pin(a_foreign_domain_is_not_adopted(
        &clients,
        &gateways,
        &format!("squatter-{id}"),
        &format!("squatted.{zone_name}"),
        &zone_name,
        &certificate,
    ))
    .await?;

    // Deleting the Webhook removes its route and queues, then the finalizer.
    webhooks.delete("stripe", &DeleteParams::default()).await?;
    wait_for("the webhook gone", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("stripe").await?.is_none())
    })
    .await?;
    assert!(
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .send()
            .await
            .is_err(),
        "queue deleted"
    );
    let api_id = gw_status.rest_api_id.clone().context("api id")?;
    let resources = clients
        .apigateway
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await?
        .items
        .unwrap_or_default();
    assert!(
        !resources
            .iter()
            .any(|r| r.path.as_deref() == Some("/payments/stripe")),
        "route deleted"
    );

    // And the gateway, once nothing is attached, with all its parts.
    gateways.delete(&gw_name, &DeleteParams::default()).await?;
    gateways
        .delete(&format!("squatter-{id}"), &DeleteParams::default())
        .await?;
    let waited = wait_for("the gateway gone", Duration::from_secs(60), || async {
        Ok(gateways.get_opt(&gw_name).await?.is_none())
    })
    .await;
    explain(waited, &gateways, &gw_name).await?;
    assert!(
        clients
            .apigateway
            .get_rest_api()
            .rest_api_id(&api_id)
            .send()
            .await
            .is_err(),
        "REST API deleted"
    );
    let dns = Route53Dns::new(clients.route53.clone(), clients.caller.clone());
    let zone = gw_status.hosted_zone_id.clone().context("zone in status")?;
    assert!(
        dns.records(&zone, &host).await?.is_empty(),
        "alias records deleted"
    );
    operator.stop().await;
    every_call_is_in_the_chart_iam_policy(&operator_aws.caller.snapshot())?;
    Ok(())
}

/// The gateway `name` for `squatted`, where someone else has created an untagged
/// custom domain, reports NotOwned and leaves that domain untouched; then the
/// squatter deletes its domain.
async fn a_foreign_domain_is_not_adopted(
    clients: &AwsClients,
    gateways: &Api<WebhookGateway>,
    name: &str,
    squatted: &str,
    zone_name: &str,
    certificate: &str,
) -> Result<()> {
    clients
        .apigateway
        .create_domain_name()
        .domain_name(squatted)
        .regional_certificate_arn(certificate)
        .endpoint_configuration(
            aws_sdk_apigateway::types::EndpointConfiguration::builder()
                .types(aws_sdk_apigateway::types::EndpointType::Regional)
                .build(),
        )
        .send()
        .await?;
    let squatter: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": name},
        "spec": {"hostname": squatted, "hostedZone": {"name": zone_name}}
    }))?;
    gateways.create(&PostParams::default(), &squatter).await?;
    let waited = wait_for(
        "NotOwned for the foreign domain",
        Duration::from_secs(60),
        || async {
            let status = gateways.get(name).await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| c.type_ == "DnsReady" && c.status == "False" && c.reason == "NotOwned"))
        },
    )
    .await;
    explain(waited, gateways, name).await?;
    let foreign = clients
        .apigateway
        .get_base_path_mappings()
        .domain_name(squatted)
        .send()
        .await?
        .items
        .unwrap_or_default();
    assert!(
        foreign.is_empty(),
        "the foreign domain is left untouched: {foreign:?}"
    );
    // The squatter leaves; the gateway's own parts can then be deleted with it.
    clients
        .apigateway
        .delete_domain_name()
        .domain_name(squatted)
        .send()
        .await?;
    Ok(())
}

/// With IAM enforced, a policy missing one statement (here the log groups') stops
/// the gateway with the AccessDenied in its Ready condition, so the enforced run
/// above can fail when the chart's policy falls short.
#[tokio::test]
async fn a_missing_permission_is_reported_in_a_condition() -> Result<()> {
    let bench = own_bench(EmulatorKind::MiniStack).await?;
    let client = bench.kube.client().await?;
    let root = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let id = std::process::id();
    let prefix = format!("deny{id}");
    let zone_name = format!("deny{id}.example.com");
    let zone_id = common::hosted_zone(&root, &zone_name).await?;
    let policy = without_statement(
        &operator_policy(&bench, &prefix, &zone_id)?,
        "QueuesNamedByThePrefix",
    )?;
    let operator_aws = operator_clients(&bench, &format!("{prefix}-operator"), &policy).await?;
    let ctx = Context::new(
        client.clone(),
        &operator_aws,
        common::settings(bench.aws.endpoint(), &prefix),
        TIMING,
        "bench".to_owned(),
        Vec::new(),
    );
    let ns = bench.kube.namespace(&client, "shop").await?;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "stripe-webhook"}, "stringData": {"secret": "whsec_test"}}),
    )?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;
    let gateway: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": "denied"},
        "spec": {"hostname": format!("hooks.{zone_name}"), "hostedZone": {"name": zone_name}}
    }))?;
    Api::<WebhookGateway>::all(client.clone())
        .create(&PostParams::default(), &gateway)
        .await?;
    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &ns);
    webhooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(webhook_yaml("stripe", &ns, "denied", "/payments/stripe"))?,
        )
        .await?;
    let operator = Operator::start(ctx);
    let seen = wait_for(
        "AccessDenied in the webhook's conditions",
        Duration::from_secs(60),
        || async {
            let status = webhooks.get("stripe").await?.status.unwrap_or_default();
            Ok(status
                .conditions
                .iter()
                .any(|c| c.status == "False" && c.message.contains("AccessDenied")))
        },
    )
    .await;
    operator.stop().await;
    let last = webhooks.get("stripe").await?.status.unwrap_or_default();
    seen.with_context(|| format!("last conditions: {:?}", last.conditions))
}

/// The chart's IAM policy allows every AWS operation this run made, by the IAM
/// actions `aws::actions` lists for it (the one table the policy is written from).
fn every_call_is_in_the_chart_iam_policy(calls: &hookline_operator::aws::CallCounts) -> Result<()> {
    use hookline_operator::aws::actions;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/hookline/files/operator-iam-policy.json"
    );
    let policy: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let statements = actions::allowed(&policy);
    let mut missing = std::collections::BTreeSet::new();
    for (service, operation, _) in calls.keys() {
        let needs = actions::needs(service.as_str(), operation)
            .with_context(|| format!("{service} {operation} is not in aws::actions::CALLS"))?;
        for (action, resource) in needs {
            if !actions::grants(&statements, action, resource) {
                missing.insert(format!("{action} on {resource}"));
            }
        }
    }
    assert!(missing.is_empty(), "{path} does not allow {missing:?}");
    Ok(())
}
