//! The `hookline-worker` binary killed with SIGKILL 10 times while it drains 10,000
//! messages in 100 FIFO groups from MiniStack (the bench's SQS: its FIFO group lock
//! and batch order are the ones AWS documents; ElasticMQ is the benchmark target and
//! no correctness oracle, see docs/emulators.md). A fault test, run by
//! `make test-faults` (`cargo test -p hookline-worker --test kills -- --ignored`).
//!
//! At-least-once order, precisely: per group, the handler is never given message n+1
//! before it has been given message n (a first delivery of n+1 comes after the first
//! of n), and a message is given again only after a kill that came after its earlier
//! delivery started (what the killed worker held but had not deleted comes back once
//! its visibility lapses; nothing else repeats).
//!
//! `HOOKLINE_FAULT_SEED` replays a run's kill moments; the seed is printed first.

mod common;

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use axum::http::StatusCode;
use common::{Call, QueuePair, Recorder, depth, sqs, wait_for};
use hookline_tests::Bench;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GROUPS: usize = 100;
const PER_GROUP: usize = 100;
const KILLS: usize = 10;
/// Short, so that what a killed worker held is back soon; the worker extends it for
/// what it works on.
const VISIBILITY: u32 = 5;

struct Worker(Child);

impl Worker {
    async fn start(pair: &QueuePair, recorder: &Recorder, n: usize) -> Result<Self> {
        let bench = Bench::shared().await?;
        let log = std::fs::File::create(bench.workdir().join(format!("kills-worker-{n}.log")))?;
        let child = Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
            .arg("run")
            .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", hookline_tests::aws::REGION)
            .env("HOOKLINE_QUEUE_URL", &pair.url)
            .env("HOOKLINE_DEAD_LETTER_QUEUE_URL", &pair.dlq_url)
            .env("HOOKLINE_HANDLER_URL", &recorder.url)
            .env("HOOKLINE_CONCURRENCY", "16")
            .env(
                "HOOKLINE_VISIBILITY_TIMEOUT_SECONDS",
                VISIBILITY.to_string(),
            )
            .env("HOOKLINE_METRICS_ADDR", "127.0.0.1:0")
            .env("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting hookline-worker")?;
        Ok(Self(child))
    }

    /// SIGKILL (Child::kill), then reap.
    fn kill(mut self) -> Result<()> {
        self.0.kill().context("killing the worker")?;
        self.0.wait().context("reaping the worker")?;
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SplitMix64 over the seed: replayable kill moments.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn seed() -> Result<u64> {
    match std::env::var("HOOKLINE_FAULT_SEED") {
        Ok(seed) => seed
            .parse()
            .with_context(|| format!("HOOKLINE_FAULT_SEED={seed} is not a u64")),
        Err(_) => Ok(u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
                % u128::from(u64::MAX),
        )?),
    }
}

/// Sends every group's messages in order, ten to a `SendMessageBatch` (one group per
/// batch, so a batch's order is the group's), the groups side by side.
async fn send_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for g in 0..GROUPS {
        let sqs = sqs.clone();
        let url = url.to_owned();
        tasks.spawn(async move {
            let group = format!("g{g:02}");
            for batch in 0..PER_GROUP / 10 {
                let entries = (0..10)
                    .map(|k| {
                        let i = batch * 10 + k;
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("e{k}"))
                            .message_group_id(&group)
                            .message_body(format!("{group}-{i}"))
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = sqs
                    .send_message_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .with_context(|| format!("sending batch {batch} of {group}"))?;
                if !out.failed.is_empty() {
                    bail!("batch {batch} of {group}: {:?}", out.failed);
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a sending task")??;
    }
    Ok(())
}

/// What the handler saw, judged by the module doc's definition.
#[derive(Debug, Default)]
struct Verdict {
    handled: usize,
    duplicates: usize,
    lost: usize,
    out_of_order: Vec<String>,
    unexplained_repeats: Vec<String>,
    /// Repeats whose earlier call the handler read after the kill of its sender: how
    /// long after.
    late_reads: Vec<Duration>,
}

fn judge(calls: &[Call], kills: &[Instant]) -> Verdict {
    let mut verdict = Verdict {
        handled: calls.len(),
        ..Verdict::default()
    };
    let mut by_group: HashMap<&str, Vec<&Call>> = HashMap::new();
    for call in calls {
        by_group.entry(call.group.as_str()).or_default().push(call);
    }
    for g in 0..GROUPS {
        let group = format!("g{g:02}");
        let mut mine = by_group.remove(group.as_str()).unwrap_or_default();
        mine.sort_by_key(|c| c.started);
        let mut first_seen: HashMap<usize, Instant> = HashMap::new();
        let mut last_seen: HashMap<usize, Instant> = HashMap::new();
        for call in mine {
            let Some(i) = call
                .body
                .strip_prefix(&format!("{group}-"))
                .and_then(|i| i.parse::<usize>().ok())
            else {
                verdict
                    .out_of_order
                    .push(format!("unexpected body {}", call.body));
                continue;
            };
            if let Some(earlier) = last_seen.get(&i) {
                verdict.duplicates += 1;
                // The handler's clock starts a call when it reads the request, which
                // under load can be after the kill of the worker that sent it: a
                // kill up to one visibility timeout before the earlier call still
                // explains the repeat (that worker's receive was no older).
                let window = Duration::from_secs(u64::from(VISIBILITY));
                let explained = kills
                    .iter()
                    .any(|k| *k + window > *earlier && *k < call.started);
                if explained && !kills.iter().any(|k| *k > *earlier && *k < call.started) {
                    let gap = kills
                        .iter()
                        .filter(|k| **k <= *earlier)
                        .map(|k| earlier.duration_since(*k))
                        .min()
                        .unwrap_or_default();
                    verdict.late_reads.push(gap);
                }
                if !explained {
                    let gap = kills
                        .iter()
                        .filter(|k| **k < *earlier)
                        .map(|k| earlier.duration_since(*k))
                        .min();
                    verdict.unexplained_repeats.push(format!(
                        "{} again (receive {}) with no kill since its earlier delivery (the last kill {gap:?} before it)",
                        call.body, call.receive_count
                    ));
                }
            } else {
                if i > 0 && !first_seen.contains_key(&(i - 1)) {
                    verdict
                        .out_of_order
                        .push(format!("{} before {group}-{}", call.body, i - 1));
                }
                first_seen.insert(i, call.started);
            }
            last_seen.insert(i, call.started);
        }
        verdict.lost += (0..PER_GROUP)
            .filter(|i| !first_seen.contains_key(i))
            .count();
    }
    verdict
}

#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn ten_thousand_messages_through_ten_sigkills() -> Result<()> {
    let seed = seed()?;
    eprintln!("ten_thousand_messages: HOOKLINE_FAULT_SEED={seed}");
    let mut next = rng(seed);
    let total = GROUPS * PER_GROUP;
    let sqs = sqs().await?;
    // maxReceiveCount high: a message held through several kills must not be
    // dead-lettered (each kill costs it a receive).
    let pair = QueuePair::create(&sqs, "kills", 50, VISIBILITY).await?;
    let sending = Instant::now();
    send_all(&sqs, &pair.url).await?;
    let sent_in = sending.elapsed();

    // Kill when the handler has seen a seeded number of messages, so that every kill
    // lands during the drain: thresholds uniform in [0, 90 %) of the total, sorted.
    let mut thresholds: Vec<usize> = (0..KILLS)
        .map(|_| usize::try_from(next() % (total as u64 * 9 / 10)).unwrap_or(0))
        .collect();
    thresholds.sort_unstable();
    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let started = Instant::now();
    let mut worker = Worker::start(&pair, &recorder, 0).await?;
    let mut kills = Vec::new();
    for (n, threshold) in thresholds.iter().enumerate() {
        wait_for(
            &format!("{threshold} messages handled (kill {})", n + 1),
            Duration::from_secs(300),
            || async { Ok(recorder.calls.lock().map_or(0, |c| c.len()) >= *threshold) },
        )
        .await?;
        worker.kill()?;
        kills.push(Instant::now());
        worker = Worker::start(&pair, &recorder, n + 1).await?;
    }
    let first_seen = || {
        recorder
            .snapshot()
            .into_iter()
            .map(|c| c.body)
            .collect::<HashSet<_>>()
            .len()
    };
    wait_for(
        "every message handled and the queue empty",
        Duration::from_secs(600),
        || async { Ok(first_seen() == total && depth(&sqs, &pair.url).await? == (0, 0)) },
    )
    .await?;
    let drained_in = started.elapsed();
    drop(worker);

    let calls = recorder.snapshot();
    let verdict = judge(&calls, &kills);
    let dead = depth(&sqs, &pair.dlq_url).await?;
    eprintln!(
        "ten_thousand_messages: {total} messages in {GROUPS} groups sent in {sent_in:?} (SendMessageBatch); drained in {drained_in:?} through {KILLS} SIGKILLs at {thresholds:?} handled; handler calls {}, duplicates {}, lost {}, out of order {}, repeats with no kill {}, dead-lettered {dead:?}; earlier calls read by the handler after their sender's kill: {:?}",
        verdict.handled,
        verdict.duplicates,
        verdict.lost,
        verdict.out_of_order.len(),
        verdict.unexplained_repeats.len(),
        verdict.late_reads
    );
    assert_eq!(verdict.lost, 0, "messages never handled");
    assert!(
        verdict.out_of_order.is_empty(),
        "order per group broken: {:#?}",
        &verdict.out_of_order[..verdict.out_of_order.len().min(20)]
    );
    assert!(
        verdict.unexplained_repeats.is_empty(),
        "{:#?}",
        &verdict.unexplained_repeats[..verdict.unexplained_repeats.len().min(20)]
    );
    assert_eq!(dead, (0, 0), "nothing dead-lettered");
    Ok(())
}
