//! Benchmark (prints figures, asserts nothing): the release `hookline-worker` binary
//! against a plain boto3 loop (receive 10, POST each, delete each), on the same
//! MiniStack queue and the same no-op handler, in one run.
//!
//! `make bench-worker` builds the release binary and runs this. Figures go to
//! `docs/benchmarks.md`.

#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use axum::Router;
use axum::routing::post;
use hookline_tests::Bench;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Figures {
    name: &'static str,
    seconds: f64,
    cpu_seconds: f64,
    ministack_cpu_seconds: f64,
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

    let bench = Bench::start().await?;
    let sqs = aws_sdk_sqs::Client::new(&bench.aws.sdk_config().await);
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    let app = Router::new().route(
        "/",
        // Reads the body, as any real handler does; an unread body makes hyper close
        // the connection after the response.
        post(move |_body: axum::body::Bytes| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let handler_url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    println!(
        "{messages} messages in {groups} groups, MiniStack {}, no-op handler {handler_url}",
        bench.aws.endpoint()
    );
    let mut results = Vec::new();
    for contender in ["hookline-worker", "boto3 loop"] {
        let queue = create_queue(&sqs, contender).await?;
        fill(&sqs, &queue, messages, groups).await?;
        handled.store(0, Ordering::Relaxed);
        let ministack_before = cpu_seconds(bench.aws.pid())?;
        let started = Instant::now();
        let cpu = match contender {
            "hookline-worker" => {
                run_worker(
                    &bench,
                    &worker_bin,
                    &queue,
                    &handler_url,
                    &handled,
                    messages,
                )
                .await?
            }
            _ => run_boto3(&bench, &queue, &handler_url, messages)?,
        };
        let seconds = started.elapsed().as_secs_f64();
        let ministack_cpu_seconds = cpu_seconds(bench.aws.pid())? - ministack_before;
        results.push(Figures {
            name: if contender == "hookline-worker" {
                "hookline-worker"
            } else {
                "boto3 loop"
            },
            seconds,
            cpu_seconds: cpu,
            ministack_cpu_seconds,
        });
    }

    println!();
    println!(
        "{:<16} {:>12} {:>22} {:>26}",
        "consumer", "msgs/s", "CPU s / 10k messages", "MiniStack CPU s / 10k msgs"
    );
    let per_10k = |s: f64| s * 10_000.0 / messages as f64;
    for f in &results {
        println!(
            "{:<16} {:>12.0} {:>22.2} {:>26.2}",
            f.name,
            messages as f64 / f.seconds,
            per_10k(f.cpu_seconds),
            per_10k(f.ministack_cpu_seconds)
        );
    }
    if let [worker, boto3] = &results[..] {
        println!(
            "\nhookline-worker / boto3: {:.1}x the throughput, {:.2}x the CPU per message",
            boto3.seconds / worker.seconds,
            worker.cpu_seconds / boto3.cpu_seconds
        );
    }
    Ok(())
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, contender: &str) -> Result<String> {
    let name = format!(
        "bench-{}-{}.fifo",
        contender.replace(' ', "-"),
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

async fn run_worker(
    bench: &Bench,
    bin: &std::path::Path,
    queue: &str,
    handler_url: &str,
    handled: &AtomicU64,
    messages: u64,
) -> Result<f64> {
    let mut child = Command::new(bin)
        .arg("run")
        .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
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
    let deadline = Instant::now() + Duration::from_secs(1800);
    while handled.load(Ordering::Relaxed) < messages {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!(
                "hookline-worker handled {} of {messages}",
                handled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_seconds(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    Ok(cpu)
}

fn run_boto3(bench: &Bench, queue: &str, handler_url: &str, messages: u64) -> Result<f64> {
    let venv = hookline_tests::emulator_venv()?;
    let script = hookline_tests::repo_root().join("worker/benches/boto3_consumer.py");
    let out = Command::new(venv.join("python"))
        .arg(script)
        .args([queue, handler_url, &messages.to_string()])
        .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
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
