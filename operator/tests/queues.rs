//! `SqsQueues` against MiniStack, LocalStack and moto (control-plane calls): create,
//! read, update, repeat-is-no-op, adoption conflict, delete.

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::QueueAttributeName as Attr;
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::limits::CallCounts;
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{
    AwsClients, AwsError, Owner, QueuePairSpec, RateLimits, RetryPolicy, SqsQueues,
};
use hookline_tests::{Bench, Emulator, EmulatorKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

mod common;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn pair_spec(name: &str, uid: &str) -> QueuePairSpec {
    QueuePairSpec {
        name: name.to_owned(),
        content_based_deduplication: true,
        deduplication_scope: DedupScope::Queue,
        throughput_limit: FifoThroughputLimit::PerQueue,
        visibility_timeout_seconds: 60,
        message_retention_seconds: 345_600,
        dead_letter_retention_seconds: 1_209_600,
        max_receive_count: 5,
        tags: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
        owner: Owner {
            uid: uid.to_owned(),
            resource: "Webhook payments/stripe".to_owned(),
        },
    }
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

async fn clients(emulator: &Emulator) -> AwsClients {
    AwsClients::new(
        &emulator.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    )
}

/// Writes (anything but reads) made since `before`.
fn writes(clients: &AwsClients, before: &CallCounts) -> Vec<String> {
    clients
        .caller
        .snapshot()
        .into_iter()
        .filter(|((_, op, _), _)| !op.starts_with("Get") && !op.starts_with("List"))
        .filter(|(key, n)| before.get(key).is_none_or(|b| n > b))
        .map(|((_, op, outcome), _)| format!("{op}:{outcome}"))
        .collect()
}

/// Every call made since `before`, as `Operation:outcome×n`, sorted.
fn calls_since(clients: &AwsClients, before: &CallCounts) -> Vec<String> {
    clients
        .caller
        .snapshot()
        .into_iter()
        .filter_map(|(key, n)| {
            let new = n - before.get(&key).copied().unwrap_or(0);
            (new > 0).then(|| format!("{}:{}x{new}", key.1, key.2))
        })
        .collect()
}

async fn lifecycle(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let name = unique("hl-lifecycle");
    let spec = pair_spec(&name, "uid-1");

    // Create.
    let pair = queues.ensure_pair(&spec).await?;
    assert_eq!(
        calls_since(&clients, &CallCounts::new()),
        [
            "CreateQueue:okx2",
            "GetQueueAttributes:okx2",
            "GetQueueUrl:not_foundx2",
            "SetQueueAttributes:okx1",
        ],
        "calls of a fresh create"
    );
    assert!(
        pair.queue.url.ends_with(&format!("{name}.fifo")),
        "{pair:?}"
    );
    assert!(
        pair.dead_letter.arn.ends_with(&format!("{name}-dlq.fifo")),
        "{pair:?}"
    );
    let created = clients.caller.snapshot();
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&pair.queue.url)
        .attribute_names(Attr::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs[&Attr::FifoQueue], "true");
    assert_eq!(attrs[&Attr::VisibilityTimeout], "60");
    let redrive: serde_json::Value = serde_json::from_str(&attrs[&Attr::RedrivePolicy])?;
    assert_eq!(
        redrive["deadLetterTargetArn"],
        pair.dead_letter.arn.as_str()
    );
    let tags = clients
        .sqs
        .list_queue_tags()
        .queue_url(&pair.queue.url)
        .send()
        .await?
        .tags
        .unwrap_or_default();
    assert_eq!(tags["hookline.dev/owner"], "uid-1");
    assert_eq!(tags["team"], "payments");

    // Repeat with nothing changed: reads only, same result. moto accepts
    // RedriveAllowPolicy but never returns it, which reads as a lost policy, so there
    // each repeat writes it again (docs/emulators.md); AWS returns it.
    let again = queues.ensure_pair(&spec).await?;
    assert_eq!(again, pair);
    let moto = emulator.kind() == EmulatorKind::Moto;
    let mut repeat = vec![
        "GetQueueAttributes:okx2",
        "GetQueueUrl:okx2",
        "ListQueueTags:okx2",
    ];
    let mut repeat_writes = Vec::<String>::new();
    if moto {
        repeat.push("SetQueueAttributes:okx1");
        repeat_writes.push("SetQueueAttributes:ok".to_owned());
    }
    assert_eq!(calls_since(&clients, &created), repeat, "calls of a repeat");
    assert_eq!(
        writes(&clients, &created),
        repeat_writes,
        "a repeat must not write"
    );

    // Update: only what differs is written.
    let mut changed = spec.clone();
    changed.visibility_timeout_seconds = 120;
    changed.max_receive_count = 8;
    let before = clients.caller.snapshot();
    queues.ensure_pair(&changed).await?;
    assert_eq!(writes(&clients, &before), ["SetQueueAttributes:ok"]);
    let attrs = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&pair.queue.url)
        .attribute_names(Attr::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs[&Attr::VisibilityTimeout], "120");
    let redrive: serde_json::Value = serde_json::from_str(&attrs[&Attr::RedrivePolicy])?;
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "8"
    );

    // Backlog.
    clients
        .sqs
        .send_message()
        .queue_url(&pair.queue.url)
        .message_group_id("g")
        .message_body("one")
        .send()
        .await?;
    let backlog = queues.backlog(&pair).await?;
    assert_eq!(
        (backlog.visible, backlog.in_flight, backlog.dead_letter),
        (1, 0, 0)
    );

    // Another owner is refused, before any change.
    let before = clients.caller.snapshot();
    match queues.ensure_pair(&pair_spec(&name, "uid-2")).await {
        Err(AwsError::NotOwned { message, .. }) => {
            assert!(message.contains("belongs to uid-1"), "{message}")
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    match queues
        .delete_pair(&name, &pair_spec(&name, "uid-2").owner)
        .await
    {
        Err(AwsError::NotOwned { .. }) => {}
        other => bail!("another owner must not delete, got {other:?}"),
    }
    assert_eq!(writes(&clients, &before), Vec::<String>::new());

    // Delete, twice.
    queues.delete_pair(&name, &spec.owner).await?;
    queues.delete_pair(&name, &spec.owner).await?;
    let gone = clients
        .sqs
        .get_queue_url()
        .queue_name(format!("{name}.fifo"))
        .send()
        .await;
    assert!(gone.is_err(), "queue still there");
    Ok(())
}

async fn untagged_queue_is_not_adopted(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let name = unique("hl-foreign");
    // Someone else's queue, with our name and no owner tag.
    clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(Attr::FifoQueue, "true")
        .send()
        .await?;
    match queues.ensure_pair(&pair_spec(&name, "uid-1")).await {
        Err(AwsError::NotOwned { message, .. }) => {
            assert!(
                message.contains(&format!(
                    "{name}-dlq.fifo exists without Hookline's owner tag"
                )),
                "{message}"
            );
        }
        other => bail!("expected a conflict, got {other:?}"),
    }
    let still = clients
        .sqs
        .get_queue_url()
        .queue_name(format!("{name}.fifo"))
        .send()
        .await;
    assert!(still.is_err(), "nothing created next to a foreign queue");
    match queues
        .delete_pair(&name, &pair_spec(&name, "uid-1").owner)
        .await
    {
        Err(AwsError::NotOwned { .. }) => {}
        other => bail!("a foreign queue is reported, got {other:?}"),
    }
    exists(&clients, &format!("{name}-dlq.fifo"), true).await?;

    // A foreign main queue: our dead-letter queue (made first) is refused a partner,
    // and deleting the pair deletes ours and leaves theirs.
    let squatted = unique("hl-squat");
    clients
        .sqs
        .create_queue()
        .queue_name(format!("{squatted}.fifo"))
        .attributes(Attr::FifoQueue, "true")
        .send()
        .await?;
    let spec = pair_spec(&squatted, "uid-1");
    match queues.ensure_pair(&spec).await {
        Err(AwsError::NotOwned { .. }) => {}
        other => bail!("expected a conflict, got {other:?}"),
    }
    exists(&clients, &format!("{squatted}-dlq.fifo"), true).await?;
    match queues.delete_pair(&squatted, &spec.owner).await {
        Err(AwsError::NotOwned { .. }) => {}
        other => bail!("a foreign queue is reported, got {other:?}"),
    }
    exists(&clients, &format!("{squatted}-dlq.fifo"), false).await?;
    exists(&clients, &format!("{squatted}.fifo"), true).await
}

async fn exists(clients: &AwsClients, queue: &str, wanted: bool) -> Result<()> {
    let found = clients
        .sqs
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .is_ok();
    anyhow::ensure!(
        found == wanted,
        "{queue}: exists {found}, expected {wanted}"
    );
    Ok(())
}

/// Policies only the operator writes are restored when they are missing: a first
/// SetQueueAttributes lost right after CreateQueue leaves RedriveAllowPolicy unset, and
/// anyone may remove RedrivePolicy by hand. SQS removes a policy set to "".
async fn missing_owned_policies_are_restored(emulator: &Emulator) -> Result<()> {
    let clients = clients(emulator).await;
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let name = unique("hl-restore");
    let spec = pair_spec(&name, "uid-1");
    let pair = queues.ensure_pair(&spec).await?;
    let attribute = |url: String, attr: Attr| {
        let sqs = clients.sqs.clone();
        async move {
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(Attr::All)
                .send()
                .await?
                .attributes
                .unwrap_or_default();
            Ok::<_, anyhow::Error>(attrs.get(&attr).cloned())
        }
    };
    for (url, attr) in [
        (&pair.dead_letter.url, Attr::RedriveAllowPolicy),
        (&pair.queue.url, Attr::RedrivePolicy),
    ] {
        clients
            .sqs
            .set_queue_attributes()
            .queue_url(url)
            .attributes(attr.clone(), "")
            .send()
            .await?;
        assert_eq!(
            attribute(url.clone(), attr.clone()).await?,
            None,
            "{attr:?} removed by hand"
        );
    }
    queues.ensure_pair(&spec).await?;
    let allow = attribute(pair.dead_letter.url.clone(), Attr::RedriveAllowPolicy)
        .await?
        .context("RedriveAllowPolicy restored")?;
    let allow: serde_json::Value = serde_json::from_str(&allow)?;
    assert_eq!(allow["sourceQueueArns"][0], pair.queue.arn.as_str());
    let redrive = attribute(pair.queue.url.clone(), Attr::RedrivePolicy)
        .await?
        .context("RedrivePolicy restored")?;
    let redrive: serde_json::Value = serde_json::from_str(&redrive)?;
    assert_eq!(
        redrive["deadLetterTargetArn"],
        pair.dead_letter.arn.as_str()
    );
    queues.delete_pair(&name, &spec.owner).await?;
    Ok(())
}

#[tokio::test]
async fn ministack_missing_owned_policies_are_restored() -> Result<()> {
    missing_owned_policies_are_restored(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn ministack_queue_pair_lifecycle() -> Result<()> {
    lifecycle(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn ministack_untagged_queue_is_not_adopted() -> Result<()> {
    untagged_queue_is_not_adopted(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn localstack_queue_pair_lifecycle() -> Result<()> {
    let bench = Bench::shared().await?;
    let localstack = bench.data_plane(EmulatorKind::LocalStack).await?;
    lifecycle(localstack).await?;
    untagged_queue_is_not_adopted(localstack).await
}

#[tokio::test]
async fn moto_queue_pair_lifecycle() -> Result<()> {
    let bench = Bench::shared().await?;
    let moto = bench.start_emulator(EmulatorKind::Moto).await?;
    lifecycle(&moto).await?;
    untagged_queue_is_not_adopted(&moto).await
}

/// What the operator's log shows at its default level (`info`) while a queue pair is
/// created, left alone and deleted: each change with the queue it touched, and no
/// read. Before every mutation was logged, a crashed operator's log held only its
/// start-up line.
#[tokio::test]
async fn ministack_queue_changes_are_logged_with_the_queue() -> Result<()> {
    let bench = Bench::shared().await?;
    let log = common::LogBuffer::capture()?;

    let clients = clients(&bench.aws).await;
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let name = unique("hl-logged");
    let spec = pair_spec(&name, "uid-log");
    let (queue, dead_letter) = (format!("{name}.fifo"), format!("{name}-dlq.fifo"));
    let changes = |lines: &[String], operation: &str, object: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("operation=\"{operation}\"")) && l.contains(object))
            .count()
    };

    queues.ensure_pair(&spec).await?;
    let created = log.lines_about(&name);
    assert_eq!(
        changes(&created, "CreateQueue", &dead_letter),
        1,
        "the dead-letter queue's creation, by name: {created:#?}"
    );
    assert_eq!(
        changes(&created, "CreateQueue", &queue),
        1,
        "the queue's creation, by name: {created:#?}"
    );
    assert_eq!(
        changes(&created, "SetQueueAttributes", &dead_letter),
        1,
        "the dead-letter queue's redrive-allow policy, set once its source exists: {created:#?}"
    );
    assert!(
        created
            .iter()
            .all(|l| !l.contains("GetQueue") && !l.contains("ListQueueTags")),
        "reads are not logged at info: {created:#?}"
    );

    queues.ensure_pair(&spec).await?;
    assert_eq!(
        log.lines_about(&name),
        created,
        "a repeat that changes nothing logs nothing"
    );

    queues.delete_pair(&name, &spec.owner).await?;
    let deleted = log.lines_about(&name);
    for name in [&queue, &dead_letter] {
        assert_eq!(
            changes(&deleted, "DeleteQueue", name),
            1,
            "the deletion of {name}: {deleted:#?}"
        );
    }
    Ok(())
}
