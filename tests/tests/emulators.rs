//! The AWS emulators the bench starts answer the official SDK the way later tests
//! rely on: FIFO queues keep order within a group and drop duplicates, on MiniStack,
//! LocalStack and moto.

use anyhow::{Context, Result};
use aws_sdk_sqs::types::QueueAttributeName;
use hookline_tests::{Bench, EmulatorKind};

async fn fifo_round_trip(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<()> {
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .context("creating a FIFO queue")?
        .queue_url
        .context("CreateQueue returned no URL")?;
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "queue URL {url} must point at the loopback emulator"
    );

    for body in ["first", "second", "first"] {
        sqs.send_message()
            .queue_url(&url)
            .message_body(body)
            .message_group_id("customer-1")
            .send()
            .await
            .with_context(|| format!("sending {body}"))?;
    }

    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .context("receiving")?
        .messages
        .unwrap_or_default();
    let bodies: Vec<&str> = received.iter().filter_map(|m| m.body()).collect();
    // The repeated "first" falls in the dedup window: content-based dedup drops it.
    assert_eq!(bodies, ["first", "second"]);
    Ok(())
}

#[tokio::test]
async fn ministack_keeps_fifo_order_and_dedups() -> Result<()> {
    let bench = Bench::shared().await?;
    assert_eq!(bench.aws.kind(), EmulatorKind::MiniStack);
    let sqs = aws_sdk_sqs::Client::new(&bench.aws.sdk_config().await);
    fifo_round_trip(
        &sqs,
        &format!("bench-ministack-{}.fifo", std::process::id()),
    )
    .await
}

/// Also prints LocalStack's start-up time and memory (figures, not assertions).
#[tokio::test]
async fn localstack_keeps_fifo_order_and_dedups() -> Result<()> {
    let bench = Bench::shared().await?;
    let localstack = bench.data_plane(EmulatorKind::LocalStack).await?;
    assert_eq!(localstack.kind(), EmulatorKind::LocalStack);
    assert_ne!(localstack.endpoint(), bench.aws.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&localstack.sdk_config().await);
    fifo_round_trip(
        &sqs,
        &format!("bench-localstack-{}.fifo", std::process::id()),
    )
    .await?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", localstack.pid()))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?");
    eprintln!(
        "localstack: ready in {:.1}s, {rss} after a FIFO round trip",
        localstack.started_in().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn moto_starts_on_demand_as_a_second_emulator() -> Result<()> {
    let bench = Bench::shared().await?;
    let moto = bench.start_emulator(EmulatorKind::Moto).await?;
    assert_ne!(moto.endpoint(), bench.aws.endpoint());
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    fifo_round_trip(&sqs, "bench-moto.fifo").await
}
