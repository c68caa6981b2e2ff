//! Benchmark (prints figures, asserts nothing): the release `hookline-worker` binary
//! against a plain boto3 loop (receive 10, POST each, delete each), on ElasticMQ (a
//! fast SQS, so the consumer is what is measured) and on MiniStack, with the same
//! pre-filled FIFO queue and the same no-op handler for each of the four runs.
//!
//! Figures per run:
//! - msgs/s: messages handled over the wall time from starting the consumer until
//!   the handler has seen them all (the queue is filled before; start-up included);
//! - the consumer's and the SQS server's user + system CPU seconds per 10k
//!   messages (from /proc), and what the consumer's would be at 3,000 msg/s;
//! - receive-to-handler latency p50/p99: from the moment the consumer read the
//!   message from its ReceiveMessage answer (the worker's `Hookline-Received-At`
//!   header; the boto3 loop sends the same header) to the moment the handler got the
//!   request, both wall clocks of this machine. It is the time a message waits
//!   inside the consumer (behind earlier messages of its batch and their deletes)
//!   plus the HTTP call, not the time it waited in the queue.
//!
//! `make bench-worker` builds the release binary and runs this (`MESSAGES=n` to
//! change the count, `HOOKLINE_WORKER_BIN` to use another binary; the worker's own
//! `HOOKLINE_*` variables, e.g. `HOOKLINE_CONCURRENCY`, pass through).
//! `BENCH_SERVERS=elasticmq` or `BENCH_CONSUMERS=hookline-worker` run a subset
//! (e.g. to profile the worker, whose PID is printed when it starts). Figures go to
//! `docs/benchmarks.md`.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use hookline_tests::elasticmq::ElasticMq;
use hookline_tests::{Emulator, EmulatorKind, Workdir};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One FIFO queue's batched quota: 3,000 messages per second per API action with
/// batches of ten (AWS's SQS quotas page), the rate the worker is to keep up with.
const FIFO_BATCHED_QUOTA: f64 = 3000.0;

/// The two SQS servers, as (name, endpoint, pid).
struct Server {
    name: &'static str,
    endpoint: String,
    pid: u32,
    sdk: aws_config::SdkConfig,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Consumer {
    Worker,
    Boto3,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Self::Worker => "hookline-worker",
            Self::Boto3 => "boto3 loop",
        }
    }
}

struct Figures {
    server: &'static str,
    consumer: Consumer,
    seconds: f64,
    cpu_seconds: f64,
    server_cpu_seconds: f64,
    /// Receive-to-handler latencies, milliseconds, sorted.
    latencies: Vec<f64>,
}

/// What the no-op handler saw.
#[derive(Default)]
struct Seen {
    handled: AtomicU64,
    /// Receive-to-handler latency of each call, in milliseconds.
    latencies: Mutex<Vec<f64>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let messages: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(10_000), |n| n.parse())
        .context("message count")?;
    let groups = 100;
    let worker_bin = std::env::var("HOOKLINE_WORKER_BIN").map_or_else(
        |_| hookline_tests::repo_root().join("target/release/hookline-worker"),
        std::path::PathBuf::from,
    );
    if !worker_bin.is_file() {
        bail!(
            "{} not found; run `cargo build --release -p hookline-worker` (or `make bench-worker`)",
            worker_bin.display()
        );
    }

    // The SQS servers alone: no API server, whose idle CPU would share the cores.
    let workdir = Workdir::create()?;
    let venv = hookline_tests::emulator_venv()?;
    let (elasticmq, ministack) = tokio::try_join!(
        ElasticMq::start(),
        Emulator::start(EmulatorKind::MiniStack, &venv, workdir.path()),
    )?;
    let servers = [
        Server {
            name: "ElasticMQ",
            endpoint: elasticmq.endpoint().to_owned(),
            pid: elasticmq.pid(),
            sdk: elasticmq.sdk_config().await,
        },
        Server {
            name: "MiniStack",
            endpoint: ministack.endpoint().to_owned(),
            pid: ministack.pid(),
            sdk: ministack.sdk_config().await,
        },
    ];

    let seen = Arc::new(Seen::default());
    let recorder = seen.clone();
    let app = Router::new().route(
        "/",
        // Reads the body, as any real handler does; an unread body makes hyper close
        // the connection after the response.
        post(move |headers: HeaderMap, _body: axum::body::Bytes| {
            let arrived = epoch_millis(SystemTime::now());
            let received = headers
                .get("hookline-received-at")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok());
            if let (Some(received), Ok(mut latencies)) = (received, recorder.latencies.lock()) {
                latencies.push(arrived - received);
            }
            recorder.handled.fetch_add(1, Ordering::Relaxed);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let handler_url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!(
        "{messages} messages in {groups} groups; ElasticMQ {}, MiniStack {}; no-op handler {handler_url}; worker {}",
        servers[0].endpoint,
        servers[1].endpoint,
        worker_bin.display()
    );
    let passed: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HOOKLINE_") && k != "HOOKLINE_WORKER_BIN")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !passed.is_empty() {
        println!("worker settings from the environment: {}", passed.join(" "));
    }

    let mut results = Vec::new();
    let servers: Vec<&Server> = servers
        .iter()
        .filter(|s| chosen("BENCH_SERVERS", s.name))
        .collect();
    let consumers: Vec<Consumer> = [Consumer::Worker, Consumer::Boto3]
        .into_iter()
        .filter(|c| chosen("BENCH_CONSUMERS", c.name()))
        .collect();
    for server in &servers {
        let sqs = aws_sdk_sqs::Client::new(&server.sdk);
        warm_up(&sqs, server.name).await?;
        for &consumer in &consumers {
            let queue = create_queue(&sqs, server.name, consumer).await?;
            fill(&sqs, &queue, messages, groups).await?;
            seen.handled.store(0, Ordering::Relaxed);
            seen.latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("the handler panicked"))?
                .clear();
            let server_before = cpu_seconds(server.pid)?;
            let started = Instant::now();
            let cpu = match consumer {
                Consumer::Worker => {
                    run_worker(server, &worker_bin, &queue, &handler_url, &seen, messages).await?
                }
                Consumer::Boto3 => run_boto3(server, &queue, &handler_url, messages)?,
            };
            let seconds = started.elapsed().as_secs_f64();
            let server_cpu_seconds = cpu_seconds(server.pid)? - server_before;
            let mut latencies = seen
                .latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("the handler panicked"))?
                .clone();
            latencies.sort_by(f64::total_cmp);
            let figures = Figures {
                server: server.name,
                consumer,
                seconds,
                cpu_seconds: cpu,
                server_cpu_seconds,
                latencies,
            };
            println!(
                "{} on {}: {:.1} s (load average {})",
                consumer.name(),
                server.name,
                figures.seconds,
                load_average()
            );
            results.push(figures);
        }
    }

    println!();
    println!(
        "{:<10} {:<16} {:>8} {:>14} {:>14} {:>16} {:>10} {:>10}",
        "SQS",
        "consumer",
        "msgs/s",
        "CPU s / 10k",
        "SQS CPU s/10k",
        "cores at 3k/s",
        "p50 ms",
        "p99 ms"
    );
    let per_10k = |s: f64| s * 10_000.0 / messages as f64;
    for f in &results {
        println!(
            "{:<10} {:<16} {:>8.0} {:>14.2} {:>14.2} {:>16.3} {:>10.2} {:>10.2}",
            f.server,
            f.consumer.name(),
            messages as f64 / f.seconds,
            per_10k(f.cpu_seconds),
            per_10k(f.server_cpu_seconds),
            f.cpu_seconds / messages as f64 * FIFO_BATCHED_QUOTA,
            percentile(&f.latencies, 0.50),
            percentile(&f.latencies, 0.99),
        );
    }
    println!(
        "\nCPU s: user + system of the consumer (or SQS server) process while it drained; \
         cores at 3k/s: the consumer's CPU per message times one FIFO queue's batched quota \
         (3,000 msg/s); p50/p99: receive-to-handler latency, from the consumer reading \
         the message from its ReceiveMessage answer to the handler getting the request."
    );
    for server in servers {
        let pick = |c: Consumer| {
            results
                .iter()
                .find(|f| f.server == server.name && f.consumer == c)
        };
        if let (Some(worker), Some(boto3)) = (pick(Consumer::Worker), pick(Consumer::Boto3)) {
            println!(
                "{}: hookline-worker / boto3: {:.1}x the throughput, {:.2}x the CPU per message",
                server.name,
                boto3.seconds / worker.seconds,
                worker.cpu_seconds / boto3.cpu_seconds
            );
        }
    }
    Ok(())
}

/// The machine's 1-minute load average: on a shared machine the figures are only
/// comparable at similar loads.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Whether `name` is among the comma-separated names in `variable` (all when unset).
fn chosen(variable: &str, name: &str) -> bool {
    std::env::var(variable).map_or(true, |list| {
        list.split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(&name.replace(' ', "-")))
    })
}

/// The `p`-quantile (nearest rank) of sorted values; NaN when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn epoch_millis(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    server: &str,
    consumer: Consumer,
) -> Result<String> {
    let name = format!(
        "bench-{}-{}-{}.fifo",
        server.to_ascii_lowercase(),
        consumer.name().replace(' ', "-"),
        std::process::id()
    );
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .context("creating the benchmark queue")?
        .queue_url
        .context("no queue URL")
}

/// Sends `messages` round-robin over `groups`, ten per request, eight requests at once.
async fn fill(sqs: &aws_sdk_sqs::Client, queue: &str, messages: u64, groups: u64) -> Result<()> {
    let started = Instant::now();
    let batches: Vec<Vec<u64>> = (0..messages)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(<[u64]>::to_vec)
        .collect();
    for wave in batches.chunks(8) {
        let mut sends = tokio::task::JoinSet::new();
        for batch in wave {
            let entries: Vec<_> = batch
                .iter()
                .map(|n| {
                    SendMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .message_body(format!("{{\"n\":{n}}}"))
                        .message_group_id(format!("g{}", n % groups))
                        .message_deduplication_id(n.to_string())
                        .build()
                })
                .collect::<Result<_, _>>()?;
            let sqs = sqs.clone();
            let queue = queue.to_owned();
            sends.spawn(async move {
                sqs.send_message_batch()
                    .queue_url(queue)
                    .set_entries(Some(entries))
                    .send()
                    .await
            });
        }
        while let Some(sent) = sends.join_next().await {
            let out = sent??;
            if !out.failed.is_empty() {
                bail!("{} messages refused while filling", out.failed.len());
            }
        }
    }
    println!(
        "filled {messages} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Sends and drains a small queue first, so the JVM's JIT compilation (ElasticMQ)
/// and first-call costs count against no contender.
async fn warm_up(sqs: &aws_sdk_sqs::Client, server: &'static str) -> Result<()> {
    let queue = format!(
        "bench-warm-up-{}-{}.fifo",
        server.to_ascii_lowercase(),
        std::process::id()
    );
    let url = sqs
        .create_queue()
        .queue_name(queue)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .context("creating the warm-up queue")?
        .queue_url
        .context("no queue URL")?;
    let count = 2000;
    fill(sqs, &url, count, 50).await?;
    let mut drained = 0;
    // Bounded: far more receives than the messages need.
    for _ in 0..count {
        if drained >= count {
            break;
        }
        let messages = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .context("warm-up receive")?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("warm-up delete")?;
        drained += messages.len() as u64;
    }
    println!("{server}: warmed up with {drained} messages");
    Ok(())
}

async fn run_worker(
    server: &Server,
    bin: &std::path::Path,
    queue: &str,
    handler_url: &str,
    seen: &Seen,
    messages: u64,
) -> Result<f64> {
    let mut child = Command::new(bin)
        .arg("run")
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", hookline_tests::aws::REGION)
        .env("HOOKLINE_QUEUE_URL", queue)
        .env("HOOKLINE_HANDLER_URL", handler_url)
        .env("HOOKLINE_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting hookline-worker")?;
    println!("hookline-worker on {}: pid {}", server.name, child.id());
    let deadline = Instant::now() + Duration::from_secs(1800);
    while seen.handled.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "hookline-worker handled {} of {messages}",
                seen.handled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu = cpu_seconds(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(cpu)
}

fn run_boto3(server: &Server, queue: &str, handler_url: &str, messages: u64) -> Result<f64> {
    let venv = hookline_tests::emulator_venv()?;
    let script = hookline_tests::repo_root().join("worker/benches/boto3_consumer.py");
    let out = Command::new(venv.join("python"))
        .arg(script)
        .args([queue, handler_url, &messages.to_string()])
        .env("AWS_ENDPOINT_URL", &server.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", hookline_tests::aws::REGION)
        .output()
        .context("running the boto3 consumer")?;
    if !out.status.success() {
        bail!(
            "boto3 consumer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading the boto3 consumer's report")?;
    if report["handled"].as_u64() != Some(messages) {
        bail!("boto3 consumer handled {} of {messages}", report["handled"]);
    }
    report["cpu_seconds"]
        .as_f64()
        .context("no cpu_seconds in the report")
}

/// User + system CPU of a process, from /proc/<pid>/stat (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}
