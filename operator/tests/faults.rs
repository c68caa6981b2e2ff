//! The operator under AWS-shaped faults (hookline_tests::faults):
//! - the SDK parses each error the fault proxy answers into the code AWS would send,
//!   and `AwsError` classifies it as the operator needs (throttled, retryable);
//! - the operator binary with a share of API Gateway calls throttled
//!   (`TooManyRequestsException`, `LimitExceededException`) and, for a while, every
//!   Route 53 call throttled: the gateway says "throttled, retrying" meanwhile,
//!   every Webhook converges to Ready, and the process stays up.

use anyhow::{Context as _, Result};
use aws_sdk_apigateway::error::ProvideErrorMetadata as _;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_operator::aws::{AwsError, Service as AwsService};
use hookline_tests::EmulatorKind;
use hookline_tests::faults::{BATCH_ENTRY_CODE, Fault, FaultProxy, Rule, Service};
use hookline_tests::stack::{Stack, sample};
use hookline_tests::util::{ready, wait_for};
use kube::api::Api;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An SDK config for `endpoint` with the SDK's retries off, as the operator has them.
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(hookline_tests::aws::REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "faults",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// Every fault the proxy answers reaches the operator as AWS's code, and the
/// operator's one classification makes it Throttled (or retryable).
#[tokio::test]
async fn the_sdk_reads_each_injected_error_as_aws_sends_it() -> Result<()> {
    // Nothing is forwarded: every call matches a rule with share 1.
    let unused = "http://127.0.0.1:9";
    let one = |service, fault| vec![Rule::new(service, &[], 1.0, fault)];

    let proxy = FaultProxy::start(unused, one(Service::Sqs, Fault::SqsRequestThrottled)).await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk(proxy.endpoint()).await);
    let error = sqs
        .get_queue_attributes()
        .queue_url("http://127.0.0.1/000000000000/q.fifo")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(error.code(), Some("RequestThrottled"));
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(403));
    let mapped = AwsError::from_sdk(AwsService::Sqs, "GetQueueAttributes", error);
    assert!(matches!(mapped, AwsError::Throttled { .. }), "{mapped:?}");

    proxy.set_rules(one(Service::Sqs, Fault::SqsServiceUnavailable));
    let error = sqs
        .receive_message()
        .queue_url("http://127.0.0.1/000000000000/q.fifo")
        .send()
        .await
        .expect_err("unavailable");
    assert_eq!(error.code(), Some("ServiceUnavailable"));
    let mapped = AwsError::from_sdk(AwsService::Sqs, "ReceiveMessage", error);
    assert!(mapped.is_retryable(), "{mapped:?}");

    // Every entry failed: the proxy answers without asking the emulator.
    proxy.set_rules(one(Service::Sqs, Fault::BatchEntryFailure));
    let entries = (0..3)
        .map(|i| {
            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(format!("rh{i}"))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = sqs
        .delete_message_batch()
        .queue_url("http://127.0.0.1/000000000000/q.fifo")
        .set_entries(Some(entries))
        .send()
        .await
        .context("a batch with failed entries is a 200")?;
    assert!(output.successful.is_empty());
    assert_eq!(output.failed.len(), 3);
    assert!(
        output
            .failed
            .iter()
            .all(|f| f.code == BATCH_ENTRY_CODE && !f.sender_fault)
    );

    proxy.set_rules(one(Service::ApiGateway, Fault::ApiGatewayTooManyRequests));
    let apigateway = aws_sdk_apigateway::Client::new(&sdk(proxy.endpoint()).await);
    let error = apigateway
        .get_rest_apis()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(error.code(), Some("TooManyRequestsException"));
    assert!(matches!(
        AwsError::from_sdk(AwsService::ApiGateway, "GetRestApis", error),
        AwsError::Throttled { .. }
    ));
    proxy.set_rules(one(Service::ApiGateway, Fault::ApiGatewayLimitExceeded));
    let error = apigateway
        .create_deployment()
        .rest_api_id("abc")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(error.code(), Some("LimitExceededException"));
    assert!(matches!(
        AwsError::from_sdk(AwsService::ApiGateway, "CreateDeployment", error),
        AwsError::Throttled { .. }
    ));

    proxy.set_rules(one(Service::Route53, Fault::Route53Throttling));
    let route53 = aws_sdk_route53::Client::new(&sdk(proxy.endpoint()).await);
    let error = route53
        .list_resource_record_sets()
        .hosted_zone_id("Z1")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(error.code(), Some("Throttling"));
    assert_eq!(error.message(), Some("Rate exceeded"));
    assert!(matches!(
        AwsError::from_sdk(AwsService::Route53, "ListResourceRecordSets", error),
        AwsError::Throttled { .. }
    ));

    proxy.set_rules(one(Service::Acm, Fault::AcmThrottling));
    let acm = aws_sdk_acm::Client::new(&sdk(proxy.endpoint()).await);
    let error = acm
        .describe_certificate()
        .certificate_arn("arn:aws:acm:us-east-1:000000000000:certificate/x")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(error.code(), Some("ThrottlingException"));
    assert!(matches!(
        AwsError::from_sdk(AwsService::Acm, "DescribeCertificate", error),
        AwsError::Throttled { .. }
    ));

    let counts = proxy.counts();
    eprintln!("{counts}");
    assert_eq!(counts.of(Fault::BatchEntryFailure), 3);
    assert_eq!(counts.service(Service::ApiGateway), 2);
    Ok(())
}

/// The conditions' messages of every Hookline object that mention throttling.
async fn throttled_messages(client: &kube::Client) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let webhooks: Api<Webhook> = Api::all(client.clone());
    let mut conditions = Vec::new();
    for gateway in gateways.list(&Default::default()).await? {
        conditions.extend(gateway.status.map(|s| s.conditions).unwrap_or_default());
    }
    for webhook in webhooks.list(&Default::default()).await? {
        conditions.extend(webhook.status.map(|s| s.conditions).unwrap_or_default());
    }
    for c in conditions {
        if c.status == "False" && c.message.contains("throttled") {
            found.insert(format!("{} {}: {}", c.type_, c.reason, c.message));
        }
    }
    Ok(found)
}

/// Three in ten API Gateway calls throttled (mostly 429 TooManyRequests, some 429
/// LimitExceeded), and every Route 53 call throttled until the gateway said so.
#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn throttled_control_planes_converge_and_the_conditions_say_so() -> Result<()> {
    const WEBHOOKS: usize = 3;
    let api_gateway = vec![
        Rule::new(
            Service::ApiGateway,
            &[],
            0.25,
            Fault::ApiGatewayTooManyRequests,
        ),
        // 0.25 + 0.75 × 0.067 ≈ 0.30 of API Gateway calls in all.
        Rule::new(
            Service::ApiGateway,
            &[],
            0.067,
            Fault::ApiGatewayLimitExceeded,
        ),
    ];
    let mut rules = api_gateway.clone();
    rules.push(Rule::new(
        Service::Route53,
        &[],
        1.0,
        Fault::Route53Throttling,
    ));
    let (mut stack, proxy) = Stack::start_with_faults(EmulatorKind::MiniStack, rules).await?;
    let started = Instant::now();
    stack.apply_gateway().await?;

    // What the conditions said about throttling, all along.
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watcher = {
        let (client, seen) = (stack.client.clone(), seen.clone());
        tokio::spawn(async move {
            // Bounded by the test: aborted at its end.
            loop {
                if let Ok(found) = throttled_messages(&client).await {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).extend(found);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let gateways: Api<WebhookGateway> = Api::all(stack.client.clone());
    wait_for(
        "the gateway to say Route 53 throttles it",
        Duration::from_secs(120),
        || async {
            let conditions = gateways
                .get("public")
                .await?
                .status
                .map(|s| s.conditions)
                .unwrap_or_default();
            Ok(conditions.iter().any(|c| {
                c.status == "False"
                    && c.message.contains("route53")
                    && c.message.contains("throttled, retrying")
            }))
        },
    )
    .await
    .with_context(|| format!("operator log:\n{}", stack.operator().log_tail(30)))?;
    let said = gateways.get("public").await?;
    for c in said.status.map(|s| s.conditions).unwrap_or_default() {
        eprintln!(
            "while Route 53 throttles: {} {} {}: {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    let route53_faults = proxy.counts().service(Service::Route53);
    proxy.set_rules(api_gateway);

    wait_for("the gateway Ready", Duration::from_secs(240), || async {
        Ok(ready(
            gateways.get("public").await?.status.map(|s| s.conditions),
        ))
    })
    .await
    .with_context(|| format!("operator log:\n{}", stack.operator().log_tail(40)))?;
    let gateway_ready = started.elapsed();

    for i in 0..WEBHOOKS {
        let mut webhook: serde_json::Value = sample("webhook.yaml")?;
        webhook["metadata"]["name"] = format!("hook{i}").into();
        webhook["spec"]["path"] = format!("/payments/hook{i}").into();
        stack
            .webhook(
                webhook,
                ("stripe-webhook", "signing-secret", "whsec_faults"),
            )
            .await
            .with_context(|| format!("Webhook hook{i} under throttling"))?;
    }
    let converged = started.elapsed();
    watcher.abort();
    stack.operator_mut().check_running()?;

    let counts = proxy.counts();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    eprintln!(
        "throttling (seed {}): gateway Ready after {gateway_ready:?}, {WEBHOOKS} Webhooks Ready after {converged:?}; {} API Gateway calls, {} throttled; {route53_faults} Route 53 calls throttled\n{counts}",
        proxy.seed(),
        counts.requests_of(Service::ApiGateway),
        counts.service(Service::ApiGateway),
    );
    eprintln!("conditions said meanwhile:");
    for message in &seen {
        eprintln!("  {message}");
    }
    assert!(counts.of(Fault::ApiGatewayTooManyRequests) > 0, "{counts}");
    assert!(counts.of(Fault::ApiGatewayLimitExceeded) > 0, "{counts}");
    assert!(route53_faults > 0);
    assert!(
        seen.iter()
            .any(|m| m.contains("Progressing") && m.contains("throttled, retrying")),
        "{seen:?}"
    );
    Ok(())
}

/// The operator with toxiproxy between it and both the API server and MiniStack:
/// latency on both, then a share of connections reset, then both unreachable for
/// 15 s. A Webhook is created in each phase; every one converges once the phase
/// ends, and the process never exits.
#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn network_faults_to_the_api_server_and_aws_delay_but_never_stop_reconciles() -> Result<()> {
    use hookline_tests::toxiproxy::Toxiproxy;
    let bench =
        hookline_tests::Bench::start_on(EmulatorKind::MiniStack, Default::default()).await?;
    let toxiproxy = Toxiproxy::start(bench.workdir()).await?;
    let aws = toxiproxy
        .proxy("operator-aws", &format!("127.0.0.1:{}", bench.aws.port()))
        .await?;
    let server = bench.kube.server_url().to_owned();
    let kube_addr = server.trim_start_matches("https://").to_owned();
    let kube = toxiproxy.proxy("operator-kube", &kube_addr).await?;
    // The same credentials and CA, another port: the serving certificate names
    // 127.0.0.1, not a port.
    let kubeconfig = bench.workdir().join("kubeconfig-toxiproxy");
    let original = std::fs::read_to_string(bench.kube.kubeconfig_path())?;
    std::fs::write(
        &kubeconfig,
        original.replace(&server, &format!("https://127.0.0.1:{}", kube.port)),
    )?;
    let endpoint = format!("http://127.0.0.1:{}", aws.port);
    let mut stack = Stack::on_via(bench, &endpoint, &kubeconfig).await?;
    let started = Instant::now();

    let both = [&aws, &kube];
    let phases: [(&str, &str, serde_json::Value, f64); 3] = [
        (
            "latency",
            "latency",
            serde_json::json!({"latency": 200, "jitter": 100}),
            1.0,
        ),
        (
            "resets",
            "reset_peer",
            serde_json::json!({"timeout": 100}),
            0.3,
        ),
        ("gone", "", serde_json::json!({}), 1.0),
    ];
    for (i, (name, kind, attributes, toxicity)) in phases.iter().enumerate() {
        if *name == "gone" {
            for proxy in both {
                toxiproxy.set_enabled(proxy, false).await?;
            }
        } else {
            for proxy in both {
                for stream in ["upstream", "downstream"] {
                    toxiproxy
                        .add_toxic(
                            proxy,
                            &format!("{name}-{stream}"),
                            kind,
                            stream,
                            *toxicity,
                            attributes.clone(),
                        )
                        .await?;
                }
            }
        }
        let phase_started = Instant::now();
        if i == 0 {
            stack.apply_gateway().await?;
        }
        let mut webhook: serde_json::Value = sample("webhook.yaml")?;
        webhook["metadata"]["name"] = format!("net{i}").into();
        webhook["spec"]["path"] = format!("/payments/net{i}").into();
        // Applied during the phase, lifted after 15 s, then waited for.
        let lift = async {
            tokio::time::sleep(Duration::from_secs(15)).await;
            if *name == "gone" {
                for proxy in both {
                    toxiproxy.set_enabled(proxy, true).await?;
                }
            } else {
                for proxy in both {
                    for stream in ["upstream", "downstream"] {
                        toxiproxy
                            .remove_toxic(proxy, &format!("{name}-{stream}"))
                            .await?;
                    }
                }
            }
            anyhow::Ok(())
        };
        let webhook_ready = async {
            let ready = stack
                .webhook(webhook, ("stripe-webhook", "signing-secret", "whsec_net"))
                .await;
            (ready, phase_started.elapsed())
        };
        let ((ready, took), lifted) = tokio::join!(webhook_ready, lift);
        lifted?;
        ready.with_context(|| format!("the Webhook of phase {name}"))?;
        eprintln!(
            "phase {name} (lifted after 15 s): Webhook net{i} Ready {took:?} after the phase began ({:?} since start)",
            started.elapsed()
        );
        stack.operator_mut().check_running()?;
    }
    Ok(())
}
