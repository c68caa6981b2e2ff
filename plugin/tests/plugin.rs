//! `kubectl hookline` on the bench: a real API server, MiniStack, the operator and a
//! worker process, with the plugin run as a process the way kubectl runs it.
//!
//! One Webhook goes through what an on-call engineer does: `get` it, `send-test`
//! it (handled, then dead-lettered once the signing secret drifts), fill its
//! dead-letter queue from a failing handler in three groups, `dlq list` and `show`
//! them, redrive one group, one id and then the rest, each keeping the order of its
//! group, and `purge` (refused without `--yes`). Plus the errors that say what to do.

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use hookline_crds::Webhook;
use hookline_tests::EmulatorKind;
use hookline_tests::stack::Stack;
use hookline_tests::util::wait_for;
use serde_json::json;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NAMESPACE: &str = "payments";
const SECRET: &str = "whsec_plugin_test";

/// What the test handler received: (customer, seq) per event, in arrival order.
type Received = Arc<Mutex<Vec<(String, i64)>>>;

fn webhook() -> serde_json::Value {
    json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": "stripe", "namespace": NAMESPACE},
        "spec": {
            "gatewayRef": {"name": "public"},
            "path": "/payments/stripe",
            "ordering": {"type": "BodyField", "bodyField": "$.data.object.customer"},
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook", "keys": ["signing-secret"]}},
            "delivery": {"maxReceiveCount": 2, "visibilityTimeoutSeconds": 30},
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    })
}

/// A handler that records each event and answers 500 while `broken`.
async fn handler(received: Received, broken: Arc<AtomicBool>) -> Result<String> {
    let app = Router::new().route(
        "/",
        post(move |body: Bytes| {
            let received = received.clone();
            let broken = broken.clone();
            async move {
                if broken.load(Ordering::SeqCst) {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let customer = event["data"]["object"]["customer"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let seq = event["data"]["object"]["seq"].as_i64().unwrap_or(0);
                received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((customer, seq));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Runs the plugin with the stack's kubeconfig and AWS settings, changed by `env`
/// (an empty value removes the variable).
async fn plugin(stack: &Stack, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-hookline"));
    command.args(args).envs(stack.env());
    for (name, value) in env {
        if value.is_empty() {
            command.env_remove(name);
        } else {
            command.env(name, value);
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .context("kubectl-hookline did not finish within 120 s")??;
    Ok(output)
}

/// The plugin's stdout, which must have succeeded.
async fn ok(stack: &Stack, args: &[&str]) -> Result<String> {
    let output = plugin(stack, args, &[]).await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // Shown with a failing assertion's output.
    eprintln!(
        "kubectl-hookline {args:?} stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        output.status.success(),
        "kubectl-hookline {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(text)
}

fn stripe_signature(body: &str, secret: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

/// POSTs a Stripe-signed event for `customer` to the gateway's custom domain.
async fn send(stack: &Stack, customer: &str, seq: i64) -> Result<()> {
    let body = format!(
        r#"{{"id":"evt_{customer}_{seq}","type":"invoice.paid","data":{{"object":{{"customer":"{customer}","seq":{seq}}}}}}}"#
    );
    let signature = stripe_signature(&body, SECRET);
    let (status, answer) = hookline_tests::util::post(
        stack.bench.aws.port(),
        "hooks.example.com",
        "/payments/stripe",
        &[
            ("Content-Type", "application/json"),
            ("Stripe-Signature", &signature),
        ],
        &body,
    )
    .await?;
    anyhow::ensure!(status == 200, "POST {customer} #{seq}: {status} {answer}");
    Ok(())
}

async fn dead_letter_depth(stack: &Stack, webhook: &Webhook) -> Result<u64> {
    let url = webhook
        .status
        .as_ref()
        .and_then(|s| s.dead_letter_queue.as_ref())
        .context("DLQ")?
        .url
        .clone();
    hookline_worker::dead_letters::depth(&aws_sdk_sqs::Client::new(&stack.sdk), &url)
        .await
        .map_err(anyhow::Error::msg)
}

/// A point of `AWS/SQS` `ApproximateAgeOfOldestMessage` for the Webhook's queue.
async fn put_oldest_age(
    sdk: &aws_config::SdkConfig,
    webhook: &Webhook,
    seconds: f64,
) -> Result<()> {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
    let arn = webhook
        .status
        .as_ref()
        .and_then(|s| s.queue.as_ref())
        .context("queue")?
        .arn
        .clone();
    let queue = arn.rsplit(':').next().unwrap_or_default().to_owned();
    aws_sdk_cloudwatch::Client::new(sdk)
        .put_metric_data()
        .namespace("AWS/SQS")
        .metric_data(
            MetricDatum::builder()
                .metric_name("ApproximateAgeOfOldestMessage")
                .dimensions(Dimension::builder().name("QueueName").value(queue).build())
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(
                    SystemTime::now() - Duration::from_secs(30),
                ))
                .value(seconds)
                .unit(StandardUnit::Seconds)
                .build(),
        )
        .send()
        .await
        .context("putting the oldest message's age into CloudWatch")?;
    Ok(())
}

/// The `ID` column of `dlq list`'s rows of `customer`'s group, in the listed order.
/// A group taken from a body field is `b:` and the field's value.
fn listed_ids(list: &str, customer: &str) -> Vec<String> {
    let group = format!("b:{customer}");
    list.lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(group.as_str()))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn seqs_of(received: &Received, customer: &str) -> Vec<i64> {
    received
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(c, _)| c == customer)
        .map(|(_, s)| *s)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_call_commands_on_the_bench() -> Result<()> {
    let mut stack = Stack::start(EmulatorKind::MiniStack).await?;
    stack.gateway().await?;
    let webhook = stack
        .webhook(webhook(), ("stripe-webhook", "signing-secret", SECRET))
        .await?;
    let url = webhook
        .status
        .as_ref()
        .and_then(|s| s.url.clone())
        .context("URL")?;
    let via = stack.bench.aws.endpoint().to_owned();

    // Before any worker runs: the test event waits in the queue.
    let get = ok(&stack, &["get", "-n", NAMESPACE]).await?;
    assert!(get.contains("NAME") && get.contains("LAST ERROR"), "{get}");
    let line = get
        .lines()
        .find(|l| l.starts_with("stripe"))
        .context("a stripe row")?;
    assert!(line.contains("True") && line.contains(&url), "{get}");
    let sent = ok(
        &stack,
        &[
            "send-test",
            "-n",
            NAMESPACE,
            "stripe",
            "--via",
            &via,
            "--wait",
            "0",
        ],
    )
    .await?;
    assert!(sent.contains(": 200"), "{sent}");
    // SQS publishes the age of the oldest message to CloudWatch once a minute; no
    // emulator's SQS does, so the test puts the point SQS would. MiniStack's
    // CloudWatch cannot answer the SDK's CBOR protocol (docs/emulators.md), so
    // CloudWatch is LocalStack's.
    let cloudwatch = stack.bench.start_emulator(EmulatorKind::LocalStack).await?;
    put_oldest_age(&cloudwatch.sdk_config().await, &webhook, 125.0).await?;
    let all = String::from_utf8_lossy(
        &plugin(
            &stack,
            &["get", "-A"],
            &[("AWS_ENDPOINT_URL_CLOUDWATCH", cloudwatch.endpoint())],
        )
        .await?
        .stdout,
    )
    .into_owned();
    let line = all
        .lines()
        .find(|l| l.starts_with(NAMESPACE))
        .context("a payments row")?;
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..3], [NAMESPACE, "stripe", "True"], "{all}");
    assert_eq!(cells[4], "1", "BACKLOG counts the queued test event: {all}");
    assert_eq!(cells[5], "2m", "OLDEST from CloudWatch: {all}");

    // The worker drains it into the handler.
    let received: Received = Arc::default();
    let broken = Arc::new(AtomicBool::new(false));
    let handler_url = handler(received.clone(), broken.clone()).await?;
    let secret_file = stack.bench.workdir().join("signing-secret");
    std::fs::write(&secret_file, SECRET)?;
    let _worker = stack.worker(
        &webhook,
        &handler_url,
        ("stripe", &secret_file),
        &[
            ("HOOKLINE_MAX_RECEIVE_COUNT", "2"),
            ("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1"),
            ("HOOKLINE_BACKOFF_MAX_SECONDS", "1"),
        ],
    )?;
    wait_for(
        "the queued test event at the handler",
        Duration::from_secs(60),
        || async { Ok(!seqs_of(&received, "hookline-send-test").is_empty()) },
    )
    .await?;
    let sent = ok(
        &stack,
        &["send-test", "-n", NAMESPACE, "stripe", "--via", &via],
    )
    .await?;
    assert!(
        sent.contains(": 200") && sent.contains("Handled after"),
        "{sent}"
    );
    assert_eq!(seqs_of(&received, "hookline-send-test").len(), 2);

    // A Secret that no longer matches the worker's: the test event is dead-lettered.
    stack
        .put_secret(
            NAMESPACE,
            (
                "stripe-webhook",
                "signing-secret",
                "whsec_rotated_elsewhere",
            ),
        )
        .await?;
    let output = plugin(
        &stack,
        &["send-test", "-n", NAMESPACE, "stripe", "--via", &via],
        &[],
    )
    .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("Dead-lettered") && text.contains("signature does not match"),
        "{text}"
    );
    ok(
        &stack,
        &["dlq", "purge", "-n", NAMESPACE, "stripe", "--yes"],
    )
    .await?;
    wait_for("the purge", Duration::from_secs(60), || async {
        Ok(dead_letter_depth(&stack, &webhook).await? == 0)
    })
    .await?;

    // A failing handler dead-letters three events in each of three groups.
    broken.store(true, Ordering::SeqCst);
    for seq in 1..=3 {
        for customer in ["cus_A", "cus_B", "cus_C"] {
            send(&stack, customer, seq).await?;
        }
    }
    wait_for("nine dead letters", Duration::from_secs(120), || async {
        Ok(dead_letter_depth(&stack, &webhook).await? == 9)
    })
    .await?;
    let get = ok(&stack, &["get", "-n", NAMESPACE]).await?;
    assert!(
        get.contains("not handled after 2 deliveries"),
        "LAST ERROR: {get}"
    );

    let list = ok(&stack, &["dlq", "list", "-n", NAMESPACE, "stripe"]).await?;
    for customer in ["cus_A", "cus_B", "cus_C"] {
        assert_eq!(listed_ids(&list, customer).len(), 3, "{list}");
    }
    assert!(list.contains("not handled after 2 deliveries"), "{list}");
    let first_b = listed_ids(&list, "cus_B")[0].clone();
    let shown = ok(
        &stack,
        &["dlq", "show", "-n", NAMESPACE, "stripe", &first_b],
    )
    .await?;
    assert!(shown.contains("Group:       b:cus_B"), "{shown}");
    assert!(
        shown.contains("stripe-signature: t="),
        "forwarded headers: {shown}"
    );
    assert!(shown.contains(r#""customer":"cus_B","seq":1"#), "{shown}");

    // Fixed: one group, then one id, then the rest, each in its group's order.
    broken.store(false, Ordering::SeqCst);
    let moved = ok(
        &stack,
        &[
            "dlq", "redrive", "-n", NAMESPACE, "stripe", "--group", "b:cus_A",
        ],
    )
    .await?;
    assert!(moved.contains("Moved 3 "), "{moved}");
    wait_for("cus_A redriven", Duration::from_secs(60), || async {
        Ok(seqs_of(&received, "cus_A").len() == 3)
    })
    .await?;
    assert_eq!(seqs_of(&received, "cus_A"), [1, 2, 3]);
    assert!(
        seqs_of(&received, "cus_B").is_empty(),
        "only the group asked for"
    );
    let moved = ok(
        &stack,
        &[
            "dlq", "redrive", "-n", NAMESPACE, "stripe", "--id", &first_b,
        ],
    )
    .await?;
    assert!(moved.contains("Moved 1 "), "{moved}");
    let moved = ok(&stack, &["dlq", "redrive", "-n", NAMESPACE, "stripe"]).await?;
    assert!(moved.contains("Moved 5 "), "{moved}");
    wait_for("every group redriven", Duration::from_secs(60), || async {
        Ok(seqs_of(&received, "cus_B").len() == 3 && seqs_of(&received, "cus_C").len() == 3)
    })
    .await?;
    assert_eq!(seqs_of(&received, "cus_B"), [1, 2, 3]);
    assert_eq!(seqs_of(&received, "cus_C"), [1, 2, 3]);
    assert_eq!(dead_letter_depth(&stack, &webhook).await?, 0);

    // Purge refuses without --yes, and says what else to do.
    broken.store(true, Ordering::SeqCst);
    send(&stack, "cus_D", 1).await?;
    wait_for("one dead letter", Duration::from_secs(60), || async {
        Ok(dead_letter_depth(&stack, &webhook).await? == 1)
    })
    .await?;
    let output = plugin(&stack, &["dlq", "purge", "-n", NAMESPACE, "stripe"], &[]).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("not empty") && stderr.contains("--yes") && stderr.contains("dlq redrive"),
        "{stderr}"
    );
    assert_eq!(
        dead_letter_depth(&stack, &webhook).await?,
        1,
        "nothing purged"
    );

    // Errors that say what to do.
    let output = plugin(&stack, &["dlq", "list", "-n", NAMESPACE, "nosuch"], &[]).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no Webhook nosuch in namespace payments")
            && stderr.contains("kubectl hookline get"),
        "{stderr}"
    );
    let no_credentials = [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let output = plugin(
        &stack,
        &["dlq", "list", "-n", NAMESPACE, "stripe"],
        &no_credentials,
    )
    .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    Ok(())
}
