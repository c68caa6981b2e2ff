//! The operator running against the bench (a real API server, and MiniStack or
//! LocalStack): gateway and webhook become Ready with a URL, a POST to it lands
//! in the queue, spec changes and out-of-band deletions are repaired, conflicts and
//! disallowed namespaces are reported, deletion cleans up, and a restart mid-creation
//! leaves no duplicates. On MiniStack IAM is enforced: the operator runs as an IAM
//! user whose only policy is the chart's, rendered as its README says; and a policy
//! missing one statement makes the operator say AccessDenied in a condition.
//!
//! Each run starts its own API server: two operators against one would both
//! reconcile every gateway. The bench has no kubelet, so where the operator waits
//! for worker pods, the test plays the kubelet and reports the Deployment ready.

mod common;

use anyhow::{Context as _, Result};
use aws_sdk_route53::types::RrType;
use common::Operator;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::dns::Record;
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
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
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

    // A spec change reaches AWS.
    webhooks
        .patch(
            "stripe",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"delivery": {"maxReceiveCount": 8}}})),
        )
        .await?;
    wait_for(
        "maxReceiveCount 8 on the queue",
        Duration::from_secs(30),
        || async {
            let attrs = clients
                .sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                .send()
                .await?
                .attributes
                .unwrap_or_default();
            Ok(attrs.values().any(|p| {
                p.contains("\"maxReceiveCount\":8") || p.contains("\"maxReceiveCount\":\"8\"")
            }))
        },
    )
    .await?;

    // Drift: the alias record and the queue deleted by hand come back.
    let dns = Route53Dns::new(clients.route53.clone(), clients.caller.clone());
    let zone = gw_status.hosted_zone_id.clone().context("zone in status")?;
    let alias: Vec<Record> = dns
        .records(&zone, &host)
        .await?
        .into_iter()
        .filter(|r| r.kind == RrType::A)
        .collect();
    assert_eq!(alias.len(), 1);
    dns.delete_records(&zone, &alias).await?;
    clients
        .sqs
        .delete_queue()
        .queue_url(&queue_url)
        .send()
        .await?;
    wait_for(
        "the alias record repaired",
        Duration::from_secs(30),
        || async {
            Ok(dns
                .records(&zone, &host)
                .await?
                .iter()
                .any(|r| r.kind == RrType::A))
        },
    )
    .await?;
    wait_for("the queue repaired", Duration::from_secs(30), || async {
        Ok(clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .send()
            .await
            .is_ok())
    })
    .await?;

    // Backlog autoscaling: up at once (never past max), down to zero only after the delay.
    let mut scaled = webhook_yaml("scaled", &ns, &gw_name, "/scaled");
    scaled["spec"]["worker"]["scaling"] = json!({"minReplicas": 0, "maxReplicas": 3, "targetBacklogPerReplica": 5, "scaleDownDelaySeconds": 2});
    webhooks
        .create(&PostParams::default(), &serde_json::from_value(scaled)?)
        .await?;
    wait_for(
        "the scaled webhook's queue and Deployment",
        Duration::from_secs(30),
        || async {
            // The operator's own cache, which the scaler reads.
            let queued = ctx.webhooks().await?.iter().any(|w| {
                w.metadata.name.as_deref() == Some("scaled")
                    && w.status.as_ref().is_some_and(|s| s.queue.is_some())
            });
            Ok(queued
                && Api::<Deployment>::namespaced(client.clone(), &ns)
                    .get_opt("scaled-worker")
                    .await?
                    .is_some())
        },
    )
    .await?;
    let scaled_queue = webhooks
        .get("scaled")
        .await?
        .status
        .and_then(|s| s.queue)
        .context("queue")?
        .url;
    let replicas = || async {
        Ok::<_, anyhow::Error>(
            Api::<Deployment>::namespaced(client.clone(), &ns)
                .get("scaled-worker")
                .await?
                .spec
                .replicas,
        )
    };
    // The scaler's own loop (as the binary runs it) takes the idle worker to zero
    // once the delay has passed; then single ticks check each rule in turn.
    let stop_loop = tokio_util::sync::CancellationToken::new();
    let looping = tokio::spawn(
        std::sync::Arc::new(hookline_operator::scaler::Scaler::default()).run(
            ctx.clone(),
            Duration::from_millis(250),
            stop_loop.clone().cancelled_owned(),
        ),
    );
    assert_eq!(replicas().await?, Some(1), "idle: the delay has not passed");
    wait_for(
        "the scaler loop to reach zero",
        Duration::from_secs(20),
        || async { Ok(replicas().await? == Some(0)) },
    )
    .await?;
    stop_loop.cancel();
    looping.await?;
    let scaler = hookline_operator::scaler::Scaler::default();
    send_one_per_group(&clients.sqs, &scaled_queue, 0..12).await?;
    scaler.tick(&ctx).await?;
    assert_eq!(
        replicas().await?,
        Some(3),
        "12 messages at 5 per replica: 3 at once"
    );
    send_one_per_group(&clients.sqs, &scaled_queue, 12..40).await?;
    scaler.tick(&ctx).await?;
    assert_eq!(replicas().await?, Some(3), "never past max");
    let scaled_status = webhooks.get("scaled").await?.status.context("status")?;
    assert!(scaled_status.last_scale_time.is_some());
    assert_eq!(scaled_status.replicas.map(|r| r.desired), Some(3));
    clients
        .sqs
        .purge_queue()
        .queue_url(&scaled_queue)
        .send()
        .await?;
    scaler.tick(&ctx).await?;
    assert_eq!(
        replicas().await?,
        Some(3),
        "drained, but the delay has not passed"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    scaler.tick(&ctx).await?;
    assert_eq!(replicas().await?, Some(0), "drained past the delay");
    webhooks.delete("scaled", &DeleteParams::default()).await?;

    // KEDA as the engine: explained while its CRD is missing, a ScaledObject (that the
    // API server validates against KEDA's own schema) once it is installed.
    let mut keda = webhook_yaml("keda", &ns, &gw_name, "/keda");
    keda["spec"]["worker"]["scaling"] = json!({"engine": "Keda", "minReplicas": 0, "maxReplicas": 4, "targetBacklogPerReplica": 25});
    webhooks
        .create(&PostParams::default(), &serde_json::from_value(keda)?)
        .await?;
    wait_for("KedaNotInstalled", Duration::from_secs(30), || async {
        let status = webhooks.get("keda").await?.status.unwrap_or_default();
        Ok(status
            .conditions
            .iter()
            .any(|c| c.type_ == "WorkerReady" && c.reason == "KedaNotInstalled"))
    })
    .await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, crd) in [
        (
            "scaledobjects.keda.sh",
            hookline_tests::keda_scaled_object_crd()?,
        ),
        (
            "triggerauthentications.keda.sh",
            hookline_tests::keda_trigger_authentication_crd()?,
        ),
    ] {
        crds.patch(
            name,
            &PatchParams::apply("hookline-test").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(
                crds.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await??;
    }
    let scaled_objects: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "keda.sh",
            "v1alpha1",
            "ScaledObject",
        )),
    );
    wait_for("the ScaledObject", Duration::from_secs(60), || async {
        Ok(scaled_objects.get_opt("keda-worker").await?.is_some())
    })
    .await?;
    let scaled_object = scaled_objects.get("keda-worker").await?;
    assert_eq!(scaled_object.data["spec"]["maxReplicaCount"], 4);
    assert_eq!(
        scaled_object.data["spec"]["triggers"][0]["metadata"]["queueLength"],
        "25"
    );
    // The trigger reads the queue through a TriggerAuthentication (KEDA's `aws` pod
    // identity provider, KEDA's own role by default), which KEDA's schema accepted.
    let authentication = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "keda.sh",
            "v1alpha1",
            "TriggerAuthentication",
        )),
    )
    .get("keda-worker")
    .await?;
    assert_eq!(
        scaled_object.data["spec"]["triggers"][0]["authenticationRef"]["name"],
        "keda-worker"
    );
    assert_eq!(
        authentication.data["spec"]["podIdentity"],
        json!({"provider": "aws", "identityOwner": "keda"})
    );
    webhooks.delete("keda", &DeleteParams::default()).await?;

    // The newer Webhook on a taken path is refused, and nothing of the older changes.
    webhooks
        .create(
            &PostParams::default(),
            &serde_json::from_value(webhook_yaml(
                "stripe-copy",
                &ns,
                &gw_name,
                "/payments/stripe",
            ))?,
        )
        .await?;
    wait_for("PathConflict", Duration::from_secs(30), || async {
        Ok(webhook_reason(&webhooks.get("stripe-copy").await?)
            == ("False".to_owned(), "PathConflict".to_owned()))
    })
    .await?;

    // A namespace the gateway does not allow.
    let other = bench.kube.namespace(&client, "other").await?;
    let others: Api<Webhook> = Api::namespaced(client.clone(), &other);
    others
        .create(
            &PostParams::default(),
            &serde_json::from_value(webhook_yaml("stray", &other, &gw_name, "/stray"))?,
        )
        .await?;
    wait_for("NamespaceNotAllowed", Duration::from_secs(30), || async {
        Ok(webhook_reason(&others.get("stray").await?)
            == ("False".to_owned(), "NamespaceNotAllowed".to_owned()))
    })
    .await?;
    let stray = others.get("stray").await?.status.unwrap_or_default();
    assert!(stray.queue.is_none(), "no AWS call for an invalid spec");

    // A hostname someone else owns.
    let taken = format!("taken.{zone_name}");
    dns.ensure_records(
        &zone,
        &[Record::txt(
            &format!("_hookline.{taken}"),
            "hookline cluster=elsewhere gateway=x uid=y",
            300,
        )],
    )
    .await?;
    let rival: WebhookGateway = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": format!("rival-{id}")},
        "spec": {"hostname": taken, "hostedZone": {"name": zone_name}}
    }))?;
    gateways.create(&PostParams::default(), &rival).await?;
    wait_for("HostnameConflict", Duration::from_secs(30), || async {
        Ok(gateway_reason(&gateways.get(&format!("rival-{id}")).await?)
            == ("False".to_owned(), "HostnameConflict".to_owned()))
    })
    .await?;

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

    // A signature Secret that does not exist.
    let mut unsigned = webhook_yaml("unsigned", &ns, &gw_name, "/unsigned");
    unsigned["spec"]["signature"]["secretRef"]["name"] = json!("missing-secret");
    webhooks
        .create(&PostParams::default(), &serde_json::from_value(unsigned)?)
        .await?;
    wait_for("SecretNotFound", Duration::from_secs(30), || async {
        Ok(webhook_reason(&webhooks.get("unsigned").await?)
            == ("False".to_owned(), "SecretNotFound".to_owned()))
    })
    .await?;
    // Every key of a Secret (`keys: []`) that has none.
    let empty: Secret = serde_json::from_value(json!({"metadata": {"name": "empty-secret"}}))?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &empty)
        .await?;
    let mut keyless = webhook_yaml("keyless", &ns, &gw_name, "/keyless");
    keyless["spec"]["signature"]["secretRef"] = json!({"name": "empty-secret", "keys": []});
    webhooks
        .create(&PostParams::default(), &serde_json::from_value(keyless)?)
        .await?;
    wait_for(
        "SecretNotFound (no keys)",
        Duration::from_secs(30),
        || async {
            let webhook = webhooks.get("keyless").await?;
            let message = webhook
                .status
                .as_ref()
                .and_then(|s| condition(&s.conditions, "Ready"))
                .map(|c| c.message.clone())
                .unwrap_or_default();
            Ok(
                webhook_reason(&webhook) == ("False".to_owned(), "SecretNotFound".to_owned())
                    && message.contains("has no keys"),
            )
        },
    )
    .await?;

    // A Webhook whose dead-letter queue holds a message is not deleted without consent.
    let dlq_url = webhooks
        .get("stripe")
        .await?
        .status
        .and_then(|s| s.dead_letter_queue)
        .context("DLQ in status")?
        .url;
    clients
        .sqs
        .send_message()
        .queue_url(&dlq_url)
        .message_group_id("g")
        .message_deduplication_id("poison-1")
        .message_body("poison")
        .send()
        .await?;
    // Deleting a Webhook whose queue still holds what the route accepted: the route
    // goes, the queue stays until the worker has drained it (the test plays the
    // worker), and only then does the dead-letter check come.
    let queue_url = webhooks
        .get("stripe")
        .await?
        .status
        .and_then(|s| s.queue)
        .context("queue in status")?
        .url;
    let pending = r#"{"id":"evt_pending","data":{"object":{"customer":"cus_9"}}}"#;
    let accepted = post(
        port,
        &invoke_host,
        &invoke_path,
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", "t=1,v1=00"),
        ],
        pending,
    )
    .await?;
    assert_eq!(accepted.0, 200);
    webhooks.delete("stripe", &DeleteParams::default()).await?;
    wait_for("Draining", Duration::from_secs(30), || async {
        Ok(webhook_reason(&webhooks.get("stripe").await?)
            == ("False".to_owned(), "Draining".to_owned()))
    })
    .await?;
    let mut drained = Vec::new();
    for _ in 0..45 {
        let got = hookline_tests::util::receive_all(
            &clients.sqs,
            &queue_url,
            2,
            hookline_tests::util::AfterReceive::Delete,
        )
        .await?;
        drained.extend(got.into_iter().filter_map(|m| m.body));
        if drained.iter().any(|b| b == pending) {
            break;
        }
    }
    assert!(
        drained.iter().any(|b| b == pending),
        "the accepted event was still in the queue to be delivered: {drained:?}"
    );
    assert!(
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .send()
            .await
            .is_ok(),
        "the main queue is kept while it drains"
    );
    wait_for(
        "DeadLetterQueueNotEmpty",
        Duration::from_secs(30),
        || async {
            Ok(webhook_reason(&webhooks.get("stripe").await?)
                == ("False".to_owned(), "DeadLetterQueueNotEmpty".to_owned()))
        },
    )
    .await?;
    assert!(
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .send()
            .await
            .is_ok(),
        "DLQ kept"
    );
    webhooks
        .patch(
            "stripe",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"hookline.dev/allow-dlq-loss": "true"}}}),
            ),
        )
        .await?;

    // Deleting the Webhook removes its route and queues, then the finalizer.
    others.delete("stray", &DeleteParams::default()).await?;
    webhooks
        .delete("stripe-copy", &DeleteParams::default())
        .await?;
    webhooks
        .delete("unsigned", &DeleteParams::default())
        .await?;
    wait_for("the webhook gone", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("stripe").await?.is_none())
    })
    .await?;
    // stripe-copy took the path over once stripe was being deleted (a deleting
    // Webhook claims no path), so the path is free only once it is gone too.
    wait_for("stripe-copy gone", Duration::from_secs(60), || async {
        Ok(webhooks.get_opt("stripe-copy").await?.is_none())
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
        .delete(&format!("rival-{id}"), &DeleteParams::default())
        .await?;
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
    assert!(
        dns.records(&zone, &host).await?.is_empty(),
        "alias records deleted"
    );
    assert_eq!(
        dns.records(&zone, &format!("_hookline.{taken}"))
            .await?
            .len(),
        1,
        "the other owner's record is untouched"
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

/// Sends message `m{i}` to group `g{i}` for each `i`: one message per group, so every
/// message is receivable at once.
async fn send_one_per_group(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    range: std::ops::Range<u32>,
) -> Result<()> {
    for i in range {
        sqs.send_message()
            .queue_url(url)
            .message_group_id(format!("g{i}"))
            .message_body(format!("m{i}"))
            .send()
            .await?;
    }
    Ok(())
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
