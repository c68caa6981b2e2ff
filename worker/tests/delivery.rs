//! The consumer against MiniStack with a real HTTP handler: order per group under
//! parallel groups, retries, the dead-letter queue, deduplication, signatures and
//! redrive.

mod common;

use anyhow::Result;
use axum::http::StatusCode;
use common::{
    QueuePair, Recorder, assert_in_order, depth, drain_bodies, send, send_dedup, sqs, wait_for,
};
use hookline_worker::signature::Preset;
use hookline_worker::{Backoff, Consumer, ConsumerConfig, HttpHandler, Verifier};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), hookline_worker::ConsumerError>>,
}

impl Running {
    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

fn config(pair: &QueuePair, concurrency: usize, max_receive_count: u32) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(&pair.url);
    config.dead_letter_queue_url = Some(pair.dlq_url.clone());
    config.concurrency = concurrency;
    // Short polls keep shutdown quick in tests; production uses 20 s.
    config.wait_time = Duration::from_secs(1);
    config.max_receive_count = Some(max_receive_count);
    config.backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(2),
    };
    config
}

fn start(
    sqs: &aws_sdk_sqs::Client,
    config: ConsumerConfig,
    recorder: &Recorder,
    verifier: Option<Verifier>,
) -> Result<Running> {
    let handler = HttpHandler::new(recorder.url.parse()?, Duration::from_secs(5));
    let mut consumer = Consumer::new(sqs.clone(), config, handler);
    if let Some(verifier) = verifier {
        consumer = consumer.with_verifier(verifier);
    }
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    Ok(Running { shutdown, task })
}

#[tokio::test]
async fn each_group_stays_in_order_while_groups_run_in_parallel() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "order", 5, 30).await?;
    let (groups, per_group) = (12, 8);
    // Interleave the groups as a provider would.
    for i in 0..per_group {
        for g in 0..groups {
            send(&sqs, &pair.url, &format!("g{g}"), &format!("g{g}-{i}"), &[]).await?;
        }
    }
    let recorder =
        Recorder::start(Duration::from_millis(15), |_, _| (StatusCode::OK, None)).await?;
    let running = start(&sqs, config(&pair, 6, 5), &recorder, None)?;

    wait_for("every message handled", Duration::from_secs(60), || async {
        Ok(recorder.snapshot().len() >= groups * per_group)
    })
    .await?;
    running.stop().await?;

    let by_group = recorder.accepted_by_group(|_, _| true);
    assert_eq!(by_group.len(), groups);
    assert_in_order(&by_group, per_group);
    assert_eq!(
        recorder.snapshot().len(),
        groups * per_group,
        "no message handled twice"
    );
    // Several groups were in the handler at once.
    let calls = recorder.snapshot();
    let distinct_in_first_window = calls
        .iter()
        .take(12)
        .map(|c| &c.group)
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(distinct_in_first_window > 1, "groups ran one at a time");
    assert_eq!(depth(&sqs, &pair.url).await?, (0, 0), "all deleted");
    Ok(())
}

#[tokio::test]
async fn a_failure_is_retried_and_holds_back_the_rest_of_its_group() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "retry", 5, 30).await?;
    for i in 0..3 {
        send(
            &sqs,
            &pair.url,
            "a",
            &format!("a-{i}"),
            &[("X-Trace", "t-1")],
        )
        .await?;
    }
    send(&sqs, &pair.url, "b", "b-0", &[]).await?;
    // a-1 fails twice (once with Retry-After), then succeeds.
    let recorder = Recorder::start(Duration::ZERO, |call, attempt| {
        match (call.body.as_str(), attempt) {
            ("a-1", 1) => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
            ("a-1", 2) => (StatusCode::INTERNAL_SERVER_ERROR, None),
            _ => (StatusCode::OK, None),
        }
    })
    .await?;
    let running = start(&sqs, config(&pair, 4, 5), &recorder, None)?;
    wait_for("a-2 handled", Duration::from_secs(30), || async {
        Ok(recorder.snapshot().iter().any(|c| c.body == "a-2"))
    })
    .await?;
    running.stop().await?;

    let calls = recorder.snapshot();
    let a: Vec<(&str, u32)> = calls
        .iter()
        .filter(|c| c.group == "a")
        .map(|c| (c.body.as_str(), c.receive_count))
        .collect();
    // a-2 was received (and given back unattempted) with each failed a-1: SQS counts
    // every receive. This is why the worker moves a last-delivery failure itself.
    assert_eq!(
        a,
        [("a-0", 1), ("a-1", 1), ("a-1", 2), ("a-1", 3), ("a-2", 3)],
        "a-2 waits for a-1; receive counts forwarded"
    );
    assert!(
        calls.iter().any(|c| c.body == "b-0"),
        "other groups are not held back"
    );
    let first = &calls[0];
    assert_eq!(
        first.headers.get("x-trace").unwrap(),
        "t-1",
        "original headers forwarded"
    );
    assert!(!first.message_id.is_empty());
    assert_eq!(depth(&sqs, &pair.url).await?, (0, 0));
    Ok(())
}

#[tokio::test]
async fn a_poison_message_reaches_the_dead_letter_queue_after_max_receive_count() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "poison", 2, 30).await?;
    send(&sqs, &pair.url, "p", "p-0", &[("X-Id", "poison")]).await?;
    send(&sqs, &pair.url, "p", "p-1", &[]).await?;
    send(&sqs, &pair.url, "q", "q-0", &[]).await?;
    let recorder = Recorder::start(Duration::ZERO, |call, _| {
        if call.body == "p-0" {
            (StatusCode::UNPROCESSABLE_ENTITY, None)
        } else {
            (StatusCode::OK, None)
        }
    })
    .await?;
    let running = start(&sqs, config(&pair, 4, 2), &recorder, None)?;
    wait_for(
        "p-1 handled after p-0 left",
        Duration::from_secs(30),
        || async { Ok(recorder.snapshot().iter().any(|c| c.body == "p-1")) },
    )
    .await?;
    running.stop().await?;

    let p0_calls = recorder
        .snapshot()
        .iter()
        .filter(|c| c.body == "p-0")
        .count();
    assert_eq!(p0_calls, 2, "handled exactly maxReceiveCount times");
    let dead = drain_bodies(&sqs, &pair.dlq_url).await?;
    assert_eq!(
        dead.len(),
        1,
        "only the poison message, not the one held back behind it"
    );
    assert_eq!(
        (dead[0].0.as_str(), dead[0].1.as_str()),
        ("p", "p-0"),
        "group id kept in the DLQ"
    );
    assert_eq!(
        dead[0].2["Hookline-Dead-Letter-Reason"],
        "not handled after 2 deliveries: handler answered 422 Unprocessable Entity"
    );
    assert!(dead[0].2["Header.x-id"] == ":poison", "headers kept");
    Ok(())
}

#[tokio::test]
async fn a_duplicate_inside_the_dedup_window_is_handled_once() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "dedup", 5, 30).await?;
    send(&sqs, &pair.url, "d", "same body", &[]).await?;
    send(&sqs, &pair.url, "d", "same body", &[]).await?;
    send(&sqs, &pair.url, "d", "other body", &[]).await?;
    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let running = start(&sqs, config(&pair, 2, 5), &recorder, None)?;
    wait_for("other body handled", Duration::from_secs(30), || async {
        Ok(recorder.snapshot().iter().any(|c| c.body == "other body"))
    })
    .await?;
    // One more poll round for a straggler that should not exist.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.stop().await?;
    let bodies: Vec<String> = recorder.snapshot().into_iter().map(|c| c.body).collect();
    assert_eq!(bodies, ["same body", "other body"]);
    Ok(())
}

const STRIPE_SECRET: &str = "whsec_hookline_test";
const STRIPE_BODY: &str = r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;
const STRIPE_SIG: &str = "d0969dfdc1e86b7b8fbcb9fd7dc185fe29760f2895fa50fd29da71261e729ca0";

#[tokio::test]
async fn a_forged_request_never_reaches_the_handler() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "forged", 5, 30).await?;
    // The vector was signed at t=1700000000; accept it with a wide tolerance.
    let tolerance = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 1_700_000_000
        + 600;
    let verifier = Verifier::new(
        Preset::Stripe,
        &[STRIPE_SECRET.as_bytes().to_vec()],
        Duration::from_secs(tolerance),
    )?;
    let good = format!("t=1700000000,v1={STRIPE_SIG}");
    send(
        &sqs,
        &pair.url,
        "cus_1",
        STRIPE_BODY,
        &[("Stripe-Signature", &good)],
    )
    .await?;
    send(
        &sqs,
        &pair.url,
        "cus_1",
        r#"{"id":"evt_1","object":"event","type":"payout.paid"}"#,
        &[("Stripe-Signature", &good)],
    )
    .await?;
    send(&sqs, &pair.url, "cus_1", "unsigned", &[]).await?;

    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let running = start(&sqs, config(&pair, 2, 5), &recorder, Some(verifier))?;
    wait_for(
        "the forged ones in the DLQ",
        Duration::from_secs(30),
        || async { Ok(depth(&sqs, &pair.url).await? == (0, 0)) },
    )
    .await?;
    running.stop().await?;

    let handled: Vec<String> = recorder.snapshot().into_iter().map(|c| c.body).collect();
    assert_eq!(handled, [STRIPE_BODY]);
    let dead = drain_bodies(&sqs, &pair.dlq_url).await?;
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|(_, body, attrs)| (body.as_str(), attrs["Hookline-Dead-Letter-Reason"].as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                r#"{"id":"evt_1","object":"event","type":"payout.paid"}"#,
                "signature does not match"
            ),
            ("unsigned", "missing header stripe-signature"),
        ]
    );
    assert!(
        dead.iter().all(|(group, _, _)| group == "cus_1"),
        "same group id in the DLQ"
    );
    Ok(())
}

#[tokio::test]
async fn redrive_brings_dead_letters_back_in_order() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "redrive", 5, 30).await?;
    // Dead letters as SQS or the worker leave them: FIFO, grouped, with headers.
    for i in 0..5 {
        send_dedup(
            &sqs,
            &pair.dlq_url,
            "r",
            &format!("r-{i}"),
            &[("X-Seq", &i.to_string())],
        )
        .await?;
    }
    send_dedup(&sqs, &pair.dlq_url, "s", "s-0", &[]).await?;

    let report = hookline_worker::redrive(&sqs, &pair.dlq_url, &pair.url).await?;
    assert_eq!(report.moved, 6);
    assert_eq!(
        depth(&sqs, &pair.dlq_url).await?,
        (0, 0),
        "dead-letter queue emptied"
    );

    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let running = start(&sqs, config(&pair, 2, 5), &recorder, None)?;
    wait_for(
        "all redriven messages handled",
        Duration::from_secs(30),
        || async { Ok(recorder.snapshot().len() >= 6) },
    )
    .await?;
    running.stop().await?;
    let by_group = recorder.accepted_by_group(|_, _| true);
    assert_eq!(by_group["r"], ["r-0", "r-1", "r-2", "r-3", "r-4"]);
    let r3 = recorder
        .snapshot()
        .into_iter()
        .find(|c| c.body == "r-3")
        .unwrap();
    assert_eq!(
        r3.headers.get("x-seq").unwrap(),
        "3",
        "headers survive the redrive"
    );
    Ok(())
}

/// A Stripe signature over `body` made at unix time `t`.
fn stripe_signature(t: u64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, STRIPE_SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(tag.as_ref()))
}

#[tokio::test]
async fn a_backlog_older_than_the_tolerance_verifies_but_a_replay_does_not() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "backlog", 5, 30).await?;
    let tolerance = Duration::from_secs(3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let fresh = r#"{"id":"evt_fresh"}"#;
    let replayed = r#"{"id":"evt_replayed"}"#;
    // Signed just now and queued at once: valid when queued.
    send(
        &sqs,
        &pair.url,
        "cus_1",
        fresh,
        &[("Stripe-Signature", &stripe_signature(now, fresh))],
    )
    .await?;
    // Signed a minute before it was queued: a replay.
    send(
        &sqs,
        &pair.url,
        "cus_2",
        replayed,
        &[("Stripe-Signature", &stripe_signature(now - 60, replayed))],
    )
    .await?;
    // The worker starts only after the tolerance has passed (an outage, in short).
    tokio::time::sleep(tolerance + Duration::from_secs(2)).await;

    let verifier = Verifier::new(
        Preset::Stripe,
        &[STRIPE_SECRET.as_bytes().to_vec()],
        tolerance,
    )?;
    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let running = start(&sqs, config(&pair, 2, 5), &recorder, Some(verifier))?;
    wait_for("the queue drained", Duration::from_secs(30), || async {
        Ok(depth(&sqs, &pair.url).await? == (0, 0))
    })
    .await?;
    running.stop().await?;

    let handled: Vec<String> = recorder.snapshot().into_iter().map(|c| c.body).collect();
    assert_eq!(handled, [fresh], "the backlog is delivered");
    let dead = drain_bodies(&sqs, &pair.dlq_url).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1, replayed);
    let reason = &dead[0].2["Hookline-Dead-Letter-Reason"];
    assert!(reason.contains("over the 3s tolerance"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn a_redriven_event_is_checked_against_when_it_was_first_queued() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "redrive-signed", 5, 30).await?;
    let tolerance = Duration::from_secs(3);
    let verifier = || {
        Verifier::new(
            Preset::Stripe,
            &[STRIPE_SECRET.as_bytes().to_vec()],
            tolerance,
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let body = r#"{"id":"evt_handler_was_down"}"#;
    send(
        &sqs,
        &pair.url,
        "cus_1",
        body,
        &[("Stripe-Signature", &stripe_signature(now, body))],
    )
    .await?;

    // The handler is down: the worker dead-letters the (genuine) event after two
    // deliveries.
    let handler_up = Arc::new(AtomicBool::new(false));
    let up = handler_up.clone();
    let recorder = Recorder::start(Duration::ZERO, move |_, _| {
        if up.load(Ordering::SeqCst) {
            (StatusCode::OK, None)
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, None)
        }
    })
    .await?;
    let running = start(&sqs, config(&pair, 1, 2), &recorder, Some(verifier()?))?;
    wait_for(
        "the event dead-lettered",
        Duration::from_secs(30),
        || async { Ok(depth(&sqs, &pair.dlq_url).await?.0 == 1) },
    )
    .await?;
    running.stop().await?;

    // Fixed later than the signature's tolerance, then redriven.
    tokio::time::sleep(tolerance + Duration::from_secs(1)).await;
    handler_up.store(true, Ordering::SeqCst);
    let report = hookline_worker::redrive(&sqs, &pair.dlq_url, &pair.url).await?;
    assert_eq!(report.moved, 1);
    let running = start(&sqs, config(&pair, 1, 2), &recorder, Some(verifier()?))?;
    wait_for(
        "the main queue drained",
        Duration::from_secs(30),
        || async { Ok(depth(&sqs, &pair.url).await? == (0, 0)) },
    )
    .await?;
    running.stop().await?;

    let dead = drain_bodies(&sqs, &pair.dlq_url).await?;
    assert!(
        dead.is_empty(),
        "refused again after the redrive: {:?}",
        dead.iter().map(|d| &d.2).collect::<Vec<_>>()
    );
    // Accepted on the third call: two failed deliveries, then the redriven one.
    let accepted = recorder.accepted_by_group(|_, attempt| attempt >= 3);
    assert_eq!(
        accepted.get("cus_1").map(Vec::as_slice),
        Some(&[body.to_owned()][..])
    );
    Ok(())
}

/// A handler slower than the visibility timeout (7 s against 2 s): the worker keeps
/// extending the messages' visibility while the handler runs, so no message is
/// received again meanwhile, neither by this worker's pollers nor by anyone else.
#[tokio::test]
async fn a_handler_slower_than_the_visibility_timeout_gets_no_second_delivery() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "slow", 5, 2).await?;
    for g in 0..2 {
        for i in 0..2 {
            send(&sqs, &pair.url, &format!("s{g}"), &format!("s{g}-{i}"), &[]).await?;
        }
    }
    let recorder = Recorder::start(Duration::from_secs(7), |_, _| (StatusCode::OK, None)).await?;
    let mut config = config(&pair, 4, 5);
    config.visibility_timeout = Duration::from_secs(2);
    let handler = HttpHandler::new(recorder.url.parse()?, Duration::from_secs(30));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Consumer::new(sqs.clone(), config, handler).run(shutdown.clone()));
    let running = Running { shutdown, task };
    wait_for("every message handled", Duration::from_secs(60), || async {
        Ok(recorder.snapshot().len() >= 4 && depth(&sqs, &pair.url).await? == (0, 0))
    })
    .await?;
    running.stop().await?;

    let calls = recorder.snapshot();
    let mut bodies: Vec<(&str, u32)> = calls
        .iter()
        .map(|c| (c.body.as_str(), c.receive_count))
        .collect();
    bodies.sort_unstable();
    assert_eq!(
        bodies,
        [("s0-0", 1), ("s0-1", 1), ("s1-0", 1), ("s1-1", 1)],
        "each message delivered once, on its first receive, although each call outlasted the visibility timeout 3 times"
    );
    Ok(())
}

/// One group's handler fails on every attempt: only that group waits. The other
/// groups drain completely while the failing group is still on its first message;
/// once the handler recovers, the held group follows in order.
#[tokio::test]
async fn a_failing_group_waits_alone_while_the_others_flow() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "stuck", 100, 30).await?;
    let (groups, per_group) = (4, 5);
    for i in 0..per_group {
        for g in 0..groups {
            send(&sqs, &pair.url, &format!("f{g}"), &format!("f{g}-{i}"), &[]).await?;
        }
    }
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let recorder = {
        let broken = broken.clone();
        Recorder::start(Duration::ZERO, move |call, _| {
            if call.group == "f0" && broken.load(std::sync::atomic::Ordering::SeqCst) {
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            } else {
                (StatusCode::OK, None)
            }
        })
        .await?
    };
    let running = start(&sqs, config(&pair, 4, 100), &recorder, None)?;
    let others_ok = |calls: &[common::Call]| {
        calls
            .iter()
            .filter(|c| c.group != "f0")
            .map(|c| c.body.clone())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    wait_for(
        "the healthy groups drained",
        Duration::from_secs(60),
        || async { Ok(others_ok(&recorder.snapshot()) == (groups - 1) * per_group) },
    )
    .await?;
    let while_broken = recorder.snapshot();
    let failing: Vec<&str> = while_broken
        .iter()
        .filter(|c| c.group == "f0")
        .map(|c| c.body.as_str())
        .collect();
    assert!(!failing.is_empty(), "the failing group was attempted");
    assert!(
        failing.iter().all(|b| *b == "f0-0"),
        "only the failing group's first message was attempted: {failing:?}"
    );
    let flipped = std::time::Instant::now();
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for(
        "the held group drained",
        Duration::from_secs(60),
        || async { Ok(depth(&sqs, &pair.url).await? == (0, 0)) },
    )
    .await?;
    running.stop().await?;
    // The test's runtime is single-threaded: a call that finished after `flipped`
    // saw the handler recovered.
    let by_group =
        recorder.accepted_by_group(|call, _| call.group != "f0" || call.finished > flipped);
    assert_in_order(&by_group, per_group);
    eprintln!(
        "a_failing_group: {} failed attempts of f0-0 while {} messages of 3 other groups were handled",
        failing.len(),
        (groups - 1) * per_group
    );
    Ok(())
}
