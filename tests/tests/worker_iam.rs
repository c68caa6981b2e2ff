//! The `hookline-worker` binary under enforced IAM (MiniStack with `AUTH=true`), as an
//! IAM user holding only the chart's `worker-iam-policy.json` for its namespace: it
//! delivers and deletes, and moves a message whose last delivery failed to the
//! dead-letter queue. The same policy rendered for another namespace reads nothing,
//! so the test can fail when the policy does not cover what the worker calls.
//!
//! Needs `target/debug/hookline-worker`, which `cargo test --workspace` builds.

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use hookline_tests::aws::{Options, REGION};
use hookline_tests::iam::{PolicyValues, chart_policy, user_with_policy};
use hookline_tests::process::Supervised;
use hookline_tests::recorder::Recorder;
use hookline_tests::util::{AfterReceive, receive_all, wait_for};
use hookline_tests::{EmulatorKind, Workdir, emulator_venv, repo_root};
use std::time::Duration;

/// A FIFO queue tagged as the operator tags a Webhook's queues: the worker policy
/// grants a namespace only queues whose owner tag names a Webhook in it.
async fn create_fifo(sqs: &aws_sdk_sqs::Client, name: &str, owner: &str) -> Result<String> {
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .tags("hookline.dev/resource", owner)
        .send()
        .await
        .with_context(|| format!("creating {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")
}

#[tokio::test]
async fn the_worker_runs_with_only_the_charts_worker_policy() -> Result<()> {
    let worker_binary = repo_root().join("target/debug/hookline-worker");
    if !worker_binary.is_file() {
        bail!(
            "{} is not built; `cargo test --workspace` builds it (or `cargo build --workspace --bins`)",
            worker_binary.display()
        );
    }
    let workdir = Workdir::create()?;
    let aws = hookline_tests::Emulator::start_with(
        EmulatorKind::MiniStack,
        &emulator_venv()?,
        workdir.path(),
        Options { enforce_iam: true },
    )
    .await?;
    let root = aws_sdk_sqs::Client::new(&aws.sdk_config().await);
    // Named as the operator names a Webhook's queues in namespace `payments` with the
    // chart's default prefix `hl`.
    let id = std::process::id();
    let owner = format!("Webhook payments/w{id}");
    let queue = create_fifo(&root, &format!("hl-payments-w{id}.fifo"), &owner).await?;
    let dlq = create_fifo(&root, &format!("hl-payments-w{id}-dlq.fifo"), &owner).await?;
    for (group, body) in [("a", "first"), ("b", "poison")] {
        root.send_message()
            .queue_url(&queue)
            .message_group_id(group)
            .message_body(body)
            .send()
            .await?;
    }
    let handler = Recorder::start().await?;
    handler.fail_when(Some("poison"));
    let port = handler.port();
    let policy_for = |namespace: &str| {
        chart_policy(
            "worker-iam-policy.json",
            &PolicyValues {
                region: REGION.to_owned(),
                account: aws.account_id().to_owned(),
                prefix: "hl".to_owned(),
                zone_id: String::new(),
                namespace: namespace.to_owned(),
            },
        )
    };
    let spawn = |name: &str, keys: &aws_sdk_sqs::config::Credentials| {
        Supervised::spawn(
            name,
            &worker_binary,
            ["run"],
            &[
                ("AWS_ENDPOINT_URL", aws.endpoint()),
                ("AWS_REGION", REGION),
                ("AWS_ACCESS_KEY_ID", keys.access_key_id()),
                ("AWS_SECRET_ACCESS_KEY", keys.secret_access_key()),
                ("HOOKLINE_QUEUE_URL", &queue),
                ("HOOKLINE_DEAD_LETTER_QUEUE_URL", &dlq),
                ("HOOKLINE_HANDLER_URL", &format!("http://127.0.0.1:{port}/")),
                ("HOOKLINE_MAX_RECEIVE_COUNT", "1"),
                ("HOOKLINE_VISIBILITY_TIMEOUT_SECONDS", "30"),
                ("HOOKLINE_METRICS_ADDR", "127.0.0.1:0"),
                ("HOOKLINE_LOG_FORMAT", "text"),
            ],
            workdir.path().join(format!("{name}.log")),
        )
    };

    // Another namespace's worker policy: denied, so nothing is delivered.
    let stranger = user_with_policy(&aws, "worker-shipping", &policy_for("shipping")?).await?;
    let denied = spawn("worker-shipping", &stranger)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = denied.log_tail(50);
    drop(denied);
    assert!(
        handler.calls().is_empty(),
        "a worker without access delivered"
    );
    assert!(log.contains("AccessDenied"), "worker log:\n{log}");

    // Its own namespace's policy: delivered, deleted; the poison goes to the DLQ.
    let keys = user_with_policy(&aws, "worker-payments", &policy_for("payments")?).await?;
    let worker = spawn("worker-payments", &keys)?;
    let outcome = wait_for(
        "the poison message in the dead-letter queue",
        Duration::from_secs(30),
        || async {
            let moved = receive_all(&root, &dlq, 1, AfterReceive::Keep).await?;
            Ok(moved.iter().any(|m| m.body() == Some("poison")))
        },
    )
    .await;
    let log = worker.log_tail(30);
    outcome.with_context(|| format!("worker log:\n{log}"))?;
    let delivered = handler.bodies();
    assert!(
        delivered.iter().any(|b| b == "first"),
        "delivered: {delivered:?}"
    );
    let left = receive_all(&root, &queue, 1, AfterReceive::Keep).await?;
    assert!(left.is_empty(), "left in the queue: {left:?}");
    drop(worker);
    Ok(())
}
