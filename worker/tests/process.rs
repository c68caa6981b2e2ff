//! The `hookline-worker` binary as a process: SIGTERM in the middle of a batch and
//! `kill -9` in the middle of a stream lose nothing, and order per group holds, also
//! when a worker stalls (SIGSTOP) for longer than the visibility timeout.

mod common;

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use common::{OrderReport, QueuePair, Recorder, assert_in_order, depth, send, sqs, wait_for};
use hookline_tests::Bench;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

static WORKER_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The binary's bound after SIGTERM: one 20 s long poll plus a handler call.
const EXIT_BOUND: Duration = Duration::from_secs(45);

/// Starts the worker binary against the bench's MiniStack.
async fn spawn_worker(pair: &QueuePair, recorder: &Recorder, visibility: u32) -> Result<Child> {
    spawn_worker_on(pair, recorder, visibility, "127.0.0.1:0").await
}

async fn spawn_worker_on(
    pair: &QueuePair,
    recorder: &Recorder,
    visibility: u32,
    metrics_addr: &str,
) -> Result<Child> {
    let bench = Bench::shared().await?;
    let n = WORKER_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(bench.workdir().join(format!("worker-{n}.log")))?;
    Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("run")
        .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", hookline_tests::aws::REGION)
        .env("HOOKLINE_QUEUE_URL", &pair.url)
        .env("HOOKLINE_DEAD_LETTER_QUEUE_URL", &pair.dlq_url)
        .env("HOOKLINE_HANDLER_URL", &recorder.url)
        .env("HOOKLINE_CONCURRENCY", "4")
        .env(
            "HOOKLINE_VISIBILITY_TIMEOUT_SECONDS",
            visibility.to_string(),
        )
        .env("HOOKLINE_METRICS_ADDR", metrics_addr)
        .env("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting hookline-worker")
}

/// The body of `GET path` on 127.0.0.1:port (HTTP/1.0, so the server closes).
async fn http_get(port: u16, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {head}");
    }
    Ok(body.to_owned())
}

fn signal(child: &Child, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()?;
    if !status.success() {
        bail!("kill -{signal} {} failed", child.id());
    }
    Ok(())
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the worker did not exit within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_mid_batch_finishes_in_flight_and_gives_back_the_rest() -> Result<()> {
    let sqs = sqs().await?;
    // A visibility timeout far longer than the test: anything the worker failed to
    // give back would stay invisible and show up below.
    let pair = QueuePair::create(&sqs, "sigterm", 5, 300).await?;
    let (groups, per_group) = (3, 10);
    for i in 0..per_group {
        for g in 0..groups {
            send(&sqs, &pair.url, &format!("t{g}"), &format!("t{g}-{i}"), &[]).await?;
        }
    }
    let recorder =
        Recorder::start(Duration::from_millis(300), |_, _| (StatusCode::OK, None)).await?;
    let port = hookline_tests::process::free_port()?;
    let mut worker = spawn_worker_on(&pair, &recorder, 300, &format!("127.0.0.1:{port}")).await?;
    wait_for("a few handled", Duration::from_secs(30), || async {
        Ok(recorder.snapshot().len() >= 4)
    })
    .await?;

    assert_eq!(http_get(port, "/healthz").await?, "ok");
    let metrics = http_get(port, "/metrics").await?;
    let handled: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookline_worker_messages_handled_total "))
        .context("no handled counter in /metrics")?
        .parse()?;
    assert!(handled >= 4, "{metrics}");
    assert!(
        metrics.contains("hookline_worker_handler_duration_seconds_bucket"),
        "{metrics}"
    );
    // Messages were sent moments ago: an age was measured, and it is small.
    let age: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookline_worker_queue_age_seconds "))
        .context("no queue age gauge in /metrics")?
        .parse()?;
    assert!(age > 0.0 && age < 120.0, "queue age {age}: {metrics}");

    signal(&worker, "TERM")?;
    let status = wait_exit(&mut worker, EXIT_BOUND).await?;
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let handled = recorder.snapshot().len();
    assert!(handled < groups * per_group, "stopped mid-stream");

    // Everything not handled is visible again at once, not after 300 s.
    wait_for(
        "the rest visible again",
        Duration::from_secs(10),
        || async {
            let (visible, in_flight) = depth(&sqs, &pair.url).await?;
            Ok(in_flight == 0 && visible as usize == groups * per_group - handled)
        },
    )
    .await?;

    let mut worker = spawn_worker(&pair, &recorder, 300).await?;
    wait_for("the rest handled", Duration::from_secs(60), || async {
        Ok(recorder.snapshot().len() >= groups * per_group)
    })
    .await?;
    signal(&worker, "TERM")?;
    wait_exit(&mut worker, EXIT_BOUND).await?;
    assert_eq!(
        recorder.snapshot().len(),
        groups * per_group,
        "each message handled exactly once"
    );
    assert_in_order(&recorder.accepted_by_group(|_, _| true), per_group);
    Ok(())
}

#[tokio::test]
async fn kill_9_mid_stream_loses_nothing() -> Result<()> {
    let sqs = sqs().await?;
    // Short visibility, so what the killed worker held comes back soon.
    let pair = QueuePair::create(&sqs, "kill9", 5, 4).await?;
    let (groups, per_group) = (4, 10);
    for i in 0..per_group {
        for g in 0..groups {
            send(&sqs, &pair.url, &format!("k{g}"), &format!("k{g}-{i}"), &[]).await?;
        }
    }
    let recorder =
        Recorder::start(Duration::from_millis(100), |_, _| (StatusCode::OK, None)).await?;
    let mut worker = spawn_worker(&pair, &recorder, 4).await?;
    wait_for("some handled", Duration::from_secs(30), || async {
        Ok(recorder.snapshot().len() >= 8)
    })
    .await?;
    signal(&worker, "KILL")?;
    wait_exit(&mut worker, Duration::from_secs(10)).await?;

    let mut worker = spawn_worker(&pair, &recorder, 4).await?;
    // At the end every message was handled (some perhaps twice) or sits in the DLQ.
    wait_for("queue empty", Duration::from_secs(90), || async {
        Ok(depth(&sqs, &pair.url).await? == (0, 0))
    })
    .await?;
    signal(&worker, "TERM")?;
    wait_exit(&mut worker, EXIT_BOUND).await?;

    let by_group = recorder.accepted_by_group(|_, _| true);
    let dead = depth(&sqs, &pair.dlq_url).await?;
    assert_eq!(dead, (0, 0), "nothing needed the DLQ");
    assert_eq!(by_group.len(), groups);
    assert_in_order(&by_group, per_group);
    Ok(())
}

/// Lines of a worker's /metrics whose name contains one of `names`.
async fn metric_lines(port: u16, names: &[&str]) -> Result<Vec<String>> {
    let text = http_get(port, "/metrics").await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && names.iter().any(|n| l.contains(n)))
        .map(str::to_owned)
        .collect())
}

/// Two workers on one queue; each in turn is stopped (SIGSTOP, as a starved node or a
/// frozen container would be) for more than twice the visibility timeout while it
/// holds messages, then resumed. The other worker takes its groups over meanwhile.
#[tokio::test]
async fn a_worker_stalled_past_the_visibility_timeout_keeps_order_per_group() -> Result<()> {
    const VISIBILITY: u32 = 5;
    const STALL: Duration = Duration::from_secs(12);
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "stall", 5, VISIBILITY).await?;
    let (groups, per_group) = (6, 60);
    let names: Vec<String> = (0..groups).map(|g| format!("s{g}")).collect();
    for i in 0..per_group {
        for group in &names {
            send(&sqs, &pair.url, group, &format!("{group}-{i}"), &[]).await?;
        }
    }
    let recorder =
        Recorder::start(Duration::from_millis(200), |_, _| (StatusCode::OK, None)).await?;
    let ports = [
        hookline_tests::process::free_port()?,
        hookline_tests::process::free_port()?,
    ];
    let mut workers = Vec::new();
    for port in ports {
        workers.push(
            spawn_worker_on(&pair, &recorder, VISIBILITY, &format!("127.0.0.1:{port}")).await?,
        );
    }

    let total = groups * per_group;
    for (n, (worker, port)) in workers.iter().zip(ports).enumerate() {
        // Stopped while it is calling the handler, so it holds messages.
        wait_for("the worker handling", Duration::from_secs(60), || async {
            // Not listening yet right after start.
            let lines = metric_lines(port, &["hookline_worker_messages_in_flight "])
                .await
                .unwrap_or_default();
            Ok(lines.iter().any(|l| !l.ends_with(" 0")))
        })
        .await?;
        signal(worker, "STOP")?;
        tokio::time::sleep(STALL).await;
        signal(worker, "CONT")?;
        eprintln!("worker {n} stalled for {STALL:?} and resumed");
    }
    wait_for("the queue drained", Duration::from_secs(120), || async {
        Ok(depth(&sqs, &pair.url).await? == (0, 0))
    })
    .await?;
    // What a resumed worker still held in memory would reach the handler now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lapsed = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        let lines = metric_lines(
            *port,
            &[
                "holds_lapsed",
                "extensions_refused",
                "given_up",
                "stale_deletes",
                "delete_errors",
            ],
        )
        .await?;
        eprintln!("worker {n}: {}", lines.join(", "));
        lapsed.push(
            lines
                .iter()
                .filter_map(|l| l.strip_prefix("hookline_worker_holds_lapsed_total "))
                .filter_map(|v| v.parse::<u64>().ok())
                .sum::<u64>(),
        );
    }
    for worker in &mut workers {
        signal(worker, "TERM")?;
        wait_exit(worker, EXIT_BOUND).await?;
    }

    let report = OrderReport::of(&recorder.snapshot(), &names, per_group);
    eprintln!("stall: {report:?} ({total} messages)");
    assert_eq!(
        depth(&sqs, &pair.dlq_url).await?,
        (0, 0),
        "nothing needed the DLQ"
    );
    assert_eq!(report.lost, 0, "{report:?}");
    assert_eq!(report.out_of_order, 0, "{report:?}");
    assert_eq!(report.overlapping, 0, "{report:?}");
    assert_in_order(&recorder.accepted_by_group(|_, _| true), per_group);
    assert!(
        lapsed.iter().all(|n| *n > 0),
        "each stalled worker counts its lapsed holds: {lapsed:?}"
    );
    Ok(())
}
