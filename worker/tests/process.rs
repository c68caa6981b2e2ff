//! The `hookline-worker` binary as a process: SIGTERM in the middle of a batch and
//! `kill -9` in the middle of a stream lose nothing, and order per group holds, also
//! when a worker stalls (SIGSTOP) for longer than the visibility timeout; a signing
//! secret rotated in its mounted files while signed events flow loses nothing.

mod common;

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use common::{
    OrderReport, QueuePair, Recorder, assert_in_order, depth, drain_bodies, send, sqs, wait_for,
};
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
    spawn_worker_with(pair, recorder, visibility, metrics_addr, &[]).await
}

/// As [`spawn_worker_on`], with more environment variables.
async fn spawn_worker_with(
    pair: &QueuePair,
    recorder: &Recorder,
    visibility: u32,
    metrics_addr: &str,
    extra_env: &[(&str, &str)],
) -> Result<Child> {
    let bench = Bench::shared().await?;
    let n = WORKER_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(bench.workdir().join(format!("worker-{n}.log")))?;
    Command::new(env!("CARGO_BIN_EXE_hookline-worker"))
        .arg("run")
        .envs(extra_env.iter().copied())
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

/// A Secret volume laid out as the kubelet's atomic writer does it. No kubelet runs
/// on the bench, so the test writes what it would: each version of the Secret in a
/// hidden `..<version>/` directory, `..data` pointing at the current one (a new
/// symlink renamed over the old, which is atomic), then each key's visible name as a
/// symlink `key -> ..data/key`, the links of keys that went removed, and the old
/// version deleted, as older kubelets' `AtomicWriter.Write` orders it (newer ones
/// create the new links just before the swap; the worker's unit tests cover both).
struct KubeletSecretVolume {
    dir: std::path::PathBuf,
    version: u32,
}

impl KubeletSecretVolume {
    fn create(dir: std::path::PathBuf, data: &[(&str, &str)]) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut volume = Self { dir, version: 0 };
        volume.update(data)?;
        Ok(volume)
    }

    fn update(&mut self, data: &[(&str, &str)]) -> Result<()> {
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        self.version += 1;
        let version = format!("..2026_12_01_12_00_00.{:09}", self.version);
        std::fs::create_dir(self.dir.join(&version))?;
        for (key, value) in data {
            std::fs::write(self.dir.join(&version).join(key), value)?;
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp)?;
        std::fs::rename(&tmp, self.dir.join("..data"))?;
        for (key, _) in data {
            if std::fs::symlink_metadata(self.dir.join(key)).is_err() {
                std::os::unix::fs::symlink(format!("..data/{key}"), self.dir.join(key))?;
            }
        }
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !data.iter().any(|(k, _)| *k == name) {
                std::fs::remove_file(self.dir.join(&name))?;
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old))?;
        }
        Ok(())
    }
}

/// Hex HMAC-SHA256 of `message` with `secret`, as providers sign.
fn hmac_hex(secret: &str, message: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
}

/// A `Stripe-Signature` for `body` signed now with each of `secrets` (Stripe sends
/// one `v1` per active secret while an old one is being rolled).
fn stripe_signature(body: &str, secrets: &[&str]) -> Result<String> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(&format!(",v1={}", hmac_hex(secret, &format!("{t}.{body}"))));
    }
    Ok(header)
}

async fn counter(port: u16, name: &str) -> Result<u64> {
    let line = metric_lines(port, &[name])
        .await?
        .into_iter()
        .find(|l| l.starts_with(&format!("{name} ")))
        .with_context(|| format!("no {name} in /metrics"))?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

const OLD_SECRET: &str = "whsec_rotation_old";
const NEW_SECRET: &str = "whsec_rotation_new";

/// Stripe's roll, as a team does it: the provider signs with both secrets, the
/// Secret's value is replaced in place (the worker picks it up from the files), the
/// provider drops the old secret. Signed events flow throughout and none is lost; a
/// backlog queued with the old secret before the change is delivered after the
/// rotation window; requests signed with the old secret alone are accepted inside
/// the window and refused after it.
#[tokio::test]
async fn a_secret_rotated_in_place_while_events_flow_loses_none() -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    const WINDOW: Duration = Duration::from_secs(8);
    let sqs = sqs().await?;
    // A high maxReceiveCount: the backlog is refused by the handler until released.
    let pair = QueuePair::create(&sqs, "rotate", 100, 30).await?;
    let bench = Bench::shared().await?;
    let volume = bench
        .workdir()
        .join(format!("rotate-secret-{}", std::process::id()));
    let mut volume = KubeletSecretVolume::create(volume, &[("secret", OLD_SECRET)])?;
    // The handler refuses the backlog until the window is over, so the worker must
    // verify it again after the window.
    let release_backlog = Arc::new(AtomicBool::new(false));
    let backlog_accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let (release, backlog_log) = (release_backlog.clone(), backlog_accepted.clone());
    let recorder = Recorder::start(Duration::ZERO, move |call, _| {
        if call.group != "backlog" {
            (StatusCode::OK, None)
        } else if release.load(Ordering::SeqCst) {
            if let Ok(mut log) = backlog_log.lock() {
                log.push(call.body.clone());
            }
            (StatusCode::OK, None)
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        }
    })
    .await?;
    let port = hookline_tests::process::free_port()?;
    let secret_file = volume.dir.join("secret");
    let window = WINDOW.as_secs().to_string();
    let mut worker = spawn_worker_with(
        &pair,
        &recorder,
        30,
        &format!("127.0.0.1:{port}"),
        &[
            ("HOOKLINE_SIGNATURE_PRESET", "stripe"),
            (
                "HOOKLINE_SIGNATURE_SECRET_FILES",
                secret_file.to_str().context("path")?,
            ),
            ("HOOKLINE_SIGNATURE_RELOAD_SECONDS", "1"),
            ("HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS", &window),
            ("HOOKLINE_BACKOFF_MAX_SECONDS", "2"),
        ],
    )
    .await?;
    wait_for(
        "the worker serving /metrics",
        Duration::from_secs(30),
        || async { Ok(http_get(port, "/healthz").await.is_ok()) },
    )
    .await?;

    // Queued before the change, signed with the old secret only.
    let backlog = 4;
    for i in 0..backlog {
        let body = format!("backlog-{i}");
        let sig = stripe_signature(&body, &[OLD_SECRET])?;
        send(
            &sqs,
            &pair.url,
            "backlog",
            &body,
            &[("Stripe-Signature", &sig)],
        )
        .await?;
    }

    // The provider: 0 signs with the old secret, 1 with both, 2 with the new one.
    let provider = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let flow = {
        let (sqs, url) = (sqs.clone(), pair.url.clone());
        let (provider, stop, sent) = (provider.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            // Bounded: the test stops it within a minute; this is the backstop.
            for i in 0..2_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let body = format!("flow-{i}");
                let secrets: &[&str] = match provider.load(Ordering::SeqCst) {
                    0 => &[OLD_SECRET],
                    1 => &[NEW_SECRET, OLD_SECRET],
                    _ => &[NEW_SECRET],
                };
                let sig = stripe_signature(&body, secrets)?;
                send(&sqs, &url, "flow", &body, &[("Stripe-Signature", &sig)]).await?;
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    provider.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;

    volume.update(&[("secret", NEW_SECRET)])?;
    wait_for(
        "the worker picking up the new secret",
        Duration::from_secs(20),
        || async {
            // Absent from a worker that cannot reload.
            Ok(counter(port, "hookline_worker_secret_reloads_total")
                .await
                .is_ok_and(|n| n == 1))
        },
    )
    .await?;
    // The worker changed its secrets at or before this instant, so the window ends
    // at or before `window_end`.
    let window_end = Instant::now() + WINDOW;
    let inside = 3;
    for i in 0..inside {
        let body = format!("inside-{i}");
        let sig = stripe_signature(&body, &[OLD_SECRET])?;
        send(
            &sqs,
            &pair.url,
            "inside",
            &body,
            &[("Stripe-Signature", &sig)],
        )
        .await?;
    }
    provider.store(2, Ordering::SeqCst);

    tokio::time::sleep_until((window_end + Duration::from_secs(2)).into()).await;
    let late = 3;
    for i in 0..late {
        let body = format!("late-{i}");
        let sig = stripe_signature(&body, &[OLD_SECRET])?;
        send(
            &sqs,
            &pair.url,
            "late",
            &body,
            &[("Stripe-Signature", &sig)],
        )
        .await?;
    }
    release_backlog.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    flow.await??;
    let flowed = sent.load(Ordering::SeqCst);

    wait_for(
        "everything handled or refused",
        Duration::from_secs(60),
        || async {
            Ok(depth(&sqs, &pair.url).await? == (0, 0)
                && depth(&sqs, &pair.dlq_url).await?.0 >= late as u64)
        },
    )
    .await?;
    let retired = counter(port, "hookline_worker_verified_with_retired_secret_total").await?;
    signal(&worker, "TERM")?;
    wait_exit(&mut worker, EXIT_BOUND).await?;

    let mut accepted = recorder.accepted_by_group(|call, _| call.group != "backlog");
    accepted.insert(
        "backlog".to_owned(),
        backlog_accepted
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default(),
    );
    let mut dead: Vec<(String, String)> = drain_bodies(&sqs, &pair.dlq_url)
        .await?
        .into_iter()
        .map(|(_, body, attrs)| {
            let reason = attrs
                .get("Hookline-Dead-Letter-Reason")
                .cloned()
                .unwrap_or_default();
            (body, reason)
        })
        .collect();
    dead.sort_unstable();
    eprintln!(
        "rotation: {flowed} flowed, {retired} verified with the retired secret, dead: {dead:?}"
    );
    let expected_dead: Vec<(String, String)> = (0..late)
        .map(|i| (format!("late-{i}"), "signature does not match".to_owned()))
        .collect();
    assert_eq!(
        dead, expected_dead,
        "only the old-secret requests queued after the window are refused"
    );
    assert!(flowed > 30, "events flowed throughout: {flowed}");
    for (group, expected) in [("flow", flowed), ("backlog", backlog), ("inside", inside)] {
        let bodies = accepted.get(group).cloned().unwrap_or_default();
        let expected: Vec<String> = (0..expected).map(|i| format!("{group}-{i}")).collect();
        let mut first = Vec::new();
        for body in bodies {
            if !first.contains(&body) {
                first.push(body);
            }
        }
        assert_eq!(first, expected, "group {group}: every message, in order");
    }
    assert!(
        !accepted.contains_key("late"),
        "no late old-secret request reached the handler"
    );
    assert!(
        retired >= (backlog + inside) as u64,
        "the backlog and the in-window requests verified with the retired secret: {retired}"
    );
    Ok(())
}

/// `secretRef.keys: []`: the whole Secret is mounted and read as a directory. A key
/// added for a rotation verifies without a restart, a removed one stops verifying
/// what is queued after it went (window 0), and an emptied key never replaces the
/// good set.
#[tokio::test]
async fn a_key_added_to_a_whole_secret_verifies_without_a_restart() -> Result<()> {
    let sqs = sqs().await?;
    let pair = QueuePair::create(&sqs, "rotate-dir", 5, 30).await?;
    let bench = Bench::shared().await?;
    let volume = bench
        .workdir()
        .join(format!("rotate-dir-secret-{}", std::process::id()));
    let mut volume = KubeletSecretVolume::create(volume, &[("a", OLD_SECRET)])?;
    let recorder = Recorder::start(Duration::ZERO, |_, _| (StatusCode::OK, None)).await?;
    let port = hookline_tests::process::free_port()?;
    let mut worker = spawn_worker_with(
        &pair,
        &recorder,
        30,
        &format!("127.0.0.1:{port}"),
        &[
            ("HOOKLINE_SIGNATURE_PRESET", "github"),
            (
                "HOOKLINE_SIGNATURE_SECRET_DIR",
                volume.dir.to_str().context("path")?,
            ),
            ("HOOKLINE_SIGNATURE_RELOAD_SECONDS", "1"),
            ("HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS", "0"),
        ],
    )
    .await?;
    let github = |body: &str, secret: &str| format!("sha256={}", hmac_hex(secret, body));
    let reloads = || async {
        // Absent from a worker that cannot reload.
        counter(port, "hookline_worker_secret_reloads_total")
            .await
            .unwrap_or(0)
    };
    wait_for(
        "the worker serving /metrics",
        Duration::from_secs(30),
        || async { Ok(http_get(port, "/healthz").await.is_ok()) },
    )
    .await?;

    volume.update(&[("a", OLD_SECRET), ("b", NEW_SECRET)])?;
    wait_for(
        "the added key picked up",
        Duration::from_secs(20),
        || async { Ok(reloads().await == 1) },
    )
    .await?;
    let mut expected = Vec::new();
    for (body, secret) in [("g-0", OLD_SECRET), ("g-1", NEW_SECRET)] {
        let sig = github(body, secret);
        send(&sqs, &pair.url, "g", body, &[("X-Hub-Signature-256", &sig)]).await?;
        expected.push(body.to_owned());
    }

    volume.update(&[("b", NEW_SECRET)])?;
    wait_for(
        "the removed key noticed",
        Duration::from_secs(20),
        || async { Ok(reloads().await == 2) },
    )
    .await?;
    let refused = "refused-0";
    let sig = github(refused, OLD_SECRET);
    send(
        &sqs,
        &pair.url,
        "r",
        refused,
        &[("X-Hub-Signature-256", &sig)],
    )
    .await?;

    // An emptied key (as a half-written file would look) is not a secret: the set
    // in use stays.
    volume.update(&[("b", "\n")])?;
    wait_for("the empty key refused", Duration::from_secs(20), || async {
        Ok(counter(port, "hookline_worker_secret_reload_errors_total")
            .await
            .is_ok_and(|n| n >= 1))
    })
    .await?;
    let sig = github("g-2", NEW_SECRET);
    send(
        &sqs,
        &pair.url,
        "g",
        "g-2",
        &[("X-Hub-Signature-256", &sig)],
    )
    .await?;
    expected.push("g-2".to_owned());

    wait_for(
        "all handled or refused",
        Duration::from_secs(60),
        || async {
            Ok(depth(&sqs, &pair.url).await? == (0, 0) && depth(&sqs, &pair.dlq_url).await?.0 >= 1)
        },
    )
    .await?;
    assert_eq!(
        reloads().await,
        2,
        "the empty key did not count as a change"
    );
    signal(&worker, "TERM")?;
    wait_exit(&mut worker, EXIT_BOUND).await?;

    let handled: Vec<String> = recorder.snapshot().into_iter().map(|c| c.body).collect();
    assert_eq!(handled, expected);
    let dead: Vec<String> = drain_bodies(&sqs, &pair.dlq_url)
        .await?
        .into_iter()
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(dead, [refused]);
    Ok(())
}
