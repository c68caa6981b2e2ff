//! The `hookline-worker` binary on ElasticMQ, the fast SQS the worker benchmark
//! runs on: it drains several message groups into the handler in order per group,
//! retries a failed message through a visibility change before the rest of its
//! group, and deletes everything it handled. Keeps the bench's ElasticMQ code from
//! rotting; ElasticMQ is a benchmark target, not an oracle (docs/emulators.md).

mod common;

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use axum::http::StatusCode;
use common::{OrderReport, QueuePair, Recorder, depth, wait_for};
use hookline_tests::elasticmq::ElasticMq;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const GROUPS: usize = 5;
const PER_GROUP: usize = 12;
/// The one message the handler refuses once: the rest of its group must wait for it.
const FAILS_ONCE: &str = "g1-3";

/// The worker process, killed (by its PID) if the test ends early.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn worker_drains_groups_in_order_on_elasticmq() -> Result<()> {
    let server = ElasticMq::start().await?;
    let sqs = aws_sdk_sqs::Client::new(&server.sdk_config().await);
    let pair = QueuePair::create(&sqs, "elasticmq", 5, 30).await?;
    assert!(
        pair.url.starts_with(server.endpoint()),
        "queue URL {} must point at this ElasticMQ",
        pair.url
    );

    // Interleaved across groups, ten per request, as a busy gateway would write them.
    let groups: Vec<String> = (0..GROUPS).map(|g| format!("g{g}")).collect();
    let bodies: Vec<(String, String)> = (0..PER_GROUP)
        .flat_map(|i| groups.iter().map(move |g| (g.clone(), format!("{g}-{i}"))))
        .collect();
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(n, (group, body))| {
                SendMessageBatchRequestEntry::builder()
                    .id(n.to_string())
                    .message_group_id(group)
                    .message_body(body)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = sqs
            .send_message_batch()
            .queue_url(&pair.url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("sending a batch")?;
        if !sent.failed.is_empty() {
            bail!("ElasticMQ refused {:?}", sent.failed);
        }
    }
    // A repeat within the deduplication window is accepted and never delivered.
    common::send(&sqs, &pair.url, "g0", "g0-0", &[]).await?;

    let recorder = Recorder::start(Duration::ZERO, |call, attempt| {
        if call.body == FAILS_ONCE && attempt == 1 {
            (StatusCode::SERVICE_UNAVAILABLE, None)
        } else {
            (StatusCode::OK, None)
        }
    })
    .await?;
    let log = std::fs::File::create(server.workdir().join("worker.log"))?;
    let _worker = Worker(
        Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .arg("run")
            .env("AWS_ENDPOINT_URL", server.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", hookline_tests::aws::REGION)
            .env("HOOKLINE_QUEUE_URL", &pair.url)
            .env("HOOKLINE_DEAD_LETTER_QUEUE_URL", &pair.dlq_url)
            .env("HOOKLINE_HANDLER_URL", &recorder.url)
            .env("HOOKLINE_CONCURRENCY", "3")
            .env("HOOKLINE_VISIBILITY_TIMEOUT_SECONDS", "30")
            .env("HOOKLINE_MAX_RECEIVE_COUNT", "5")
            .env("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1")
            .env("HOOKLINE_METRICS_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting hookline-worker")?,
    );

    let expected = GROUPS * PER_GROUP;
    wait_for(
        "every message handled and deleted",
        Duration::from_secs(60),
        || async {
            let accepted: usize = recorder
                .accepted_by_group(|call, attempt| call.body != FAILS_ONCE || attempt > 1)
                .values()
                .map(Vec::len)
                .sum();
            Ok(accepted >= expected && depth(&sqs, &pair.url).await? == (0, 0))
        },
    )
    .await
    .with_context(|| {
        format!(
            "worker log: {}",
            server.workdir().join("worker.log").display()
        )
    })?;

    let calls = recorder.snapshot();
    let report = OrderReport::of(&calls, &groups, PER_GROUP);
    // The one retried message is the only repeat: one call more than messages.
    assert_eq!(
        (report.calls, report.duplicates, report.lost),
        (expected + 1, 1, 0),
        "{report:?}"
    );
    assert_eq!(
        (report.out_of_order, report.overlapping),
        (0, 0),
        "{:#?}",
        report.events
    );
    let retried: Vec<u32> = calls
        .iter()
        .filter(|c| c.body == FAILS_ONCE)
        .map(|c| c.receive_count)
        .collect();
    assert_eq!(retried, [1, 2], "SQS's ApproximateReceiveCount, forwarded");
    assert_eq!(
        depth(&sqs, &pair.dlq_url).await?,
        (0, 0),
        "nothing dead-lettered"
    );
    Ok(())
}
