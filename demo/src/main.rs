//! The README's first command: Hookline end to end on this machine, with nothing
//! faked but the cloud. Starts the bench (a real kube-apiserver + etcd, MiniStack or
//! with `--emulator=localstack` LocalStack), runs the operator binary against them,
//! applies the sample WebhookGateway and Webhook, runs the worker binary and a sample
//! handler, and sends Stripe-signed webhooks through the gateway's custom domain
//! (on LocalStack, which serves no custom domains, through the stage's execute-api
//! URL); the handler prints them, in order per customer. A poison event goes to the
//! dead-letter queue and is redriven. `--keep` leaves everything running.
//!
//! `--node` runs the worker as Kubernetes runs it: the bench starts a node
//! (containerd, a kubelet, the controller-manager and the scheduler,
//! `hookline_tests::node`), and the operator's worker Deployment becomes a pod with
//! the worker image from `make images` as a native sidecar next to a handler
//! container, which hands each delivery to the sample handler here.

// Printing to the terminal is this program's job.
#![allow(clippy::print_stdout)]

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use hookline_tests::node::{Node, handler_container};
use hookline_tests::podman::{archive_reference, image_archive};
use hookline_tests::process::Supervised;
use hookline_tests::stack::{Stack, sample, workspace_binary};
use hookline_tests::util::wait_for as wait;
use hookline_tests::{Bench, EmulatorKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The sample's signing secret (crds/samples/webhook.yaml names the Secret).
const SIGNING_SECRET: &str = "whsec_hookline_demo";

#[derive(Parser, Debug)]
#[command(about = "Run Hookline end to end on this machine")]
struct Args {
    /// Keep everything running until Ctrl-C, and print how to reach it.
    #[arg(long)]
    keep: bool,
    /// The AWS emulator: MiniStack serves the custom domain by `Host`; LocalStack
    /// (community edition) does not, so events go to the stage's execute-api URL.
    #[arg(long, value_enum, default_value_t = Emulator::Ministack)]
    emulator: Emulator,
    /// Run the worker as a pod on a real node of the bench (containerd, kubelet,
    /// controller-manager, scheduler): needs root and `make images`
    /// (`make demo ARGS=--node` runs it first).
    #[arg(long)]
    node: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Emulator {
    Ministack,
    Localstack,
}

impl Emulator {
    fn kind(self) -> EmulatorKind {
        match self {
            Self::Ministack => EmulatorKind::MiniStack,
            Self::Localstack => EmulatorKind::LocalStack,
        }
    }
}

/// Where the events go: the gateway's custom domain, picked by `Host` (where the
/// emulator serves custom domains, as AWS does), or the stage's execute-api URL.
struct Target {
    port: u16,
    host: String,
    path: String,
}

fn step(title: &str) {
    println!("\n==> {title}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();

    let kind = args.emulator.kind();
    let emulator = match kind {
        EmulatorKind::LocalStack => "LocalStack",
        EmulatorKind::MiniStack | EmulatorKind::Moto => "MiniStack",
    };
    step(&format!(
        "Starting the bench: etcd + kube-apiserver and {emulator} on 127.0.0.1, and the operator"
    ));
    println!("  (the first run builds kube-apiserver from the Go modules and installs the");
    println!("   emulators into a venv under ~/.cache/hookline: a few minutes, once)");
    let worker_image = if args.node {
        let archive = image_archive("hookline-worker")
            .context("--node runs the worker image: `make images` builds it")?;
        let reference = archive_reference(&archive)?;
        Some((archive, reference))
    } else {
        None
    };
    let mut stack = match &worker_image {
        Some((_, reference)) => {
            Stack::start_with(kind, &[("HOOKLINE_WORKER_IMAGE", reference.as_str())]).await
        }
        None => Stack::start(kind).await,
    }
    .context("starting the bench")?;
    let bench = &stack.bench;
    println!(
        "  API server {} ({}), {emulator} {}, ready in {:.1}s",
        bench.kube.server_url(),
        bench.kube.version(),
        bench.aws.endpoint(),
        bench.started_in().as_secs_f64()
    );
    println!(
        "  operator (target/debug/hookline-operator) pid {}, log {}",
        stack.operator().pid(),
        stack.operator().log_path().display()
    );
    let sdk = stack.sdk.clone();

    step("The platform team's part: the example.com zone, and crds/samples/webhookgateway.yaml");
    let t = Instant::now();
    let gateway_status = stack.gateway().await?.status.context("gateway status")?;
    println!(
        "  certificate, REST API, custom domain, DNS: Ready after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let target = if kind.serves_custom_domains() {
        Target {
            port: stack.bench.aws.port(),
            host: "hooks.example.com".to_owned(),
            path: "/payments/stripe".to_owned(),
        }
    } else {
        Target {
            port: stack.bench.aws.port(),
            host: "127.0.0.1".to_owned(),
            path: format!(
                "/restapis/{}/{}/_user_request_/payments/stripe",
                gateway_status
                    .rest_api_id
                    .context("REST API id in status")?,
                gateway_status.stage_name.context("stage in status")?
            ),
        }
    };

    // The team's code: prints what it receives, fails for one customer until fixed.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let broken = Arc::new(AtomicBool::new(true));
    let handler_url = sample_handler(received.clone(), broken.clone()).await?;

    let node = match &worker_image {
        Some((archive, _)) => {
            step("Starting a node: containerd, kubelet, controller-manager, scheduler");
            println!("  (the first run builds them from the Kubernetes Go module: minutes, once)");
            let node = Node::start(&stack.bench.kube, stack.bench.workdir())
                .await
                .context("starting the node (needs root, containerd and runc)")?;
            node.import(archive)?;
            let handler_image = node.import_handler()?;
            // The worker calls the emulator at the operator's endpoint, the handler
            // container calls the sample handler: both on 127.0.0.1 in the pod.
            node.expose(stack.bench.aws.port())?;
            node.expose(port_of(&handler_url)?)?;
            println!(
                "  Node {} Ready in {:.1}s; images imported: the worker, {handler_image}",
                hookline_tests::node::NODE_NAME,
                node.started_in().as_secs_f64()
            );
            Some((node, handler_image))
        }
        None => None,
    };

    step("The payments team's part: namespace, Stripe signing Secret, crds/samples/webhook.yaml");
    let t = Instant::now();
    let mut manifest: serde_json::Value = sample("webhook.yaml")?;
    let webhook = match &node {
        Some((_, handler_image)) => {
            // The sample's handler image is the team's; on the bench's node a handler
            // container of the bench's stands in for it and hands every delivery to
            // the sample handler above. Short retry backoffs keep the poison step brief.
            manifest["spec"]["worker"]["template"]["spec"]["containers"] =
                serde_json::json!([handler_container(handler_image, 8080, &handler_url, 0)]);
            manifest["spec"]["delivery"]["retryBackoff"] =
                serde_json::json!({"initialSeconds": 1, "maxSeconds": 2});
            stack
                .webhook_on_node(
                    manifest,
                    ("stripe-webhook", "signing-secret", SIGNING_SECRET),
                )
                .await?
        }
        // No kubelet: the worker runs below as a local process of this program, so
        // the stack reports its Deployment ready the way a kubelet would.
        None => {
            stack
                .webhook(
                    manifest,
                    ("stripe-webhook", "signing-secret", SIGNING_SECRET),
                )
                .await?
        }
    };
    let status = webhook.status.clone().context("webhook status")?;
    let queue = status.queue.clone().context("queue in status")?;
    let dead_letter = status.dead_letter_queue.clone().context("DLQ in status")?;
    println!(
        "  FIFO queue pair, route, worker Deployment after {:.1}s",
        t.elapsed().as_secs_f64()
    );
    println!("  Ready: {}", status.url.as_deref().unwrap_or_default());
    let bench = &stack.bench;

    step("kubectl get webhookgateways,webhooks -A");
    kubectl(bench, &["get", "webhookgateways,webhooks", "-A"]);

    let mut worker = if node.is_some() {
        step("The worker pod: the Hookline worker (a native sidecar) and the handler container");
        kubectl(bench, &["get", "pods", "-n", "payments", "-o", "wide"]);
        println!("  the handler container hands each delivery to the sample handler {handler_url}");
        None
    } else {
        step("Starting a sample handler and the Hookline worker (Stripe signatures verified)");
        let secret_file = bench.workdir().join("stripe-signing-secret");
        std::fs::write(&secret_file, SIGNING_SECRET)?;
        let worker = stack.worker(
            &webhook,
            &handler_url,
            ("stripe", &secret_file),
            &[
                ("HOOKLINE_MAX_RECEIVE_COUNT", "5"),
                ("HOOKLINE_BACKOFF_INITIAL_SECONDS", "1"),
                ("HOOKLINE_BACKOFF_MAX_SECONDS", "2"),
            ],
        )?;
        println!(
            "  worker pid {} (target/debug/hookline-worker), handler {handler_url}",
            worker.pid()
        );
        Some(worker)
    };

    step("Sending Stripe-signed events to https://hooks.example.com/payments/stripe");
    if kind.serves_custom_domains() {
        println!(
            "  (MiniStack serves the custom domain by Host header on {})",
            bench.aws.endpoint()
        );
    } else {
        println!(
            "  (LocalStack serves no custom domains: POST {}{}, the stage's execute-api URL)",
            bench.aws.endpoint(),
            target.path
        );
    }
    let events = [
        ("cus_A", 1),
        ("cus_B", 1),
        ("cus_A", 2),
        ("cus_B", 2),
        ("cus_A", 3),
        ("cus_B", 3),
    ];
    for (customer, n) in events {
        let body = format!(
            r#"{{"id":"evt_{customer}_{n}","type":"invoice.paid","data":{{"object":{{"customer":"{customer}","seq":{n}}}}}}}"#
        );
        let status = send(&target, &body, Some(SIGNING_SECRET)).await?;
        println!("  POST {customer} #{n} -> {status}");
    }
    let forged =
        r#"{"id":"evt_forged","type":"payout.paid","data":{"object":{"customer":"cus_A"}}}"#;
    println!(
        "  POST a forged event (wrong secret) -> {}",
        send(&target, forged, Some("whsec_wrong")).await?
    );

    wait(
        "the six events at the handler",
        Duration::from_secs(60),
        || async { Ok(received.lock().map(|r| r.len()).unwrap_or(0) >= events.len()) },
    )
    .await?;
    step("Delivered to the handler (in order per customer)");
    for line in received.lock().map(|r| r.clone()).unwrap_or_default() {
        println!("  {line}");
    }
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    wait(
        "the forged event in the dead-letter queue",
        Duration::from_secs(30),
        || async { Ok(dead_letters(&sqs, &dead_letter.url).await? == 1) },
    )
    .await?;
    println!("  the forged event was not delivered: it is in the dead-letter queue");

    step("A poison event: the handler fails for cus_POISON (maxReceiveCount 5)");
    let poison = r#"{"id":"evt_cus_POISON_1","type":"invoice.paid","data":{"object":{"customer":"cus_POISON"}}}"#;
    println!(
        "  POST cus_POISON #1 -> {}",
        send(&target, poison, Some(SIGNING_SECRET)).await?
    );
    wait(
        "the poison event in the dead-letter queue",
        Duration::from_secs(60),
        || async { Ok(dead_letters(&sqs, &dead_letter.url).await? >= 2) },
    )
    .await?;
    println!("  after 5 failed deliveries it is in the dead-letter queue (next to the forged one)");

    step("Fixing the handler, then redriving the dead-letter queue");
    broken.store(false, Ordering::Relaxed);
    let report = hookline_worker::redrive(&sqs, &dead_letter.url, &queue.url).await?;
    println!(
        "  redriven: {} message(s) moved back, in order per group",
        report.moved
    );
    wait(
        "the poison event handled",
        Duration::from_secs(60),
        || async {
            Ok(received
                .lock()
                .map(|r| r.iter().any(|l| l.contains("evt_cus_POISON_1")))
                .unwrap_or(false))
        },
    )
    .await?;
    println!(
        "  delivered after the fix: {}",
        received
            .lock()
            .ok()
            .and_then(|r| r.last().cloned())
            .unwrap_or_default()
    );
    wait(
        "the forged event back in the dead-letter queue",
        Duration::from_secs(30),
        || async { Ok(dead_letters(&sqs, &dead_letter.url).await? == 1) },
    )
    .await?;
    println!("  the forged event failed verification again and is back in the dead-letter queue");

    step("On call: kubectl hookline (target/debug/kubectl-hookline, a kubectl plugin)");
    plugin(bench, &["get", "-A"]);
    plugin(bench, &["-n", "payments", "dlq", "list", "stripe"]);

    println!("\nDone in {:.1}s.", started.elapsed().as_secs_f64());
    if args.keep {
        step("Keeping everything running; Ctrl-C stops it");
        println!(
            "  export KUBECONFIG={}",
            bench.kube.kubeconfig_path().display()
        );
        println!("  export AWS_ENDPOINT_URL={}", bench.aws.endpoint());
        println!(
            "  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION={}",
            hookline_tests::aws::REGION
        );
        println!(
            "  curl -H 'Host: {}' -d '{{}}' {}{}",
            target.host,
            bench.aws.endpoint(),
            target.path
        );
        println!("  logs: {}", bench.workdir().display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    match worker.as_mut() {
        Some(worker) => {
            step(
                "Stopping: SIGTERM to the worker (it finishes what is in flight) and the operator",
            );
            terminate(worker, Duration::from_secs(30)).await;
        }
        None => step("Stopping: the node (kubelet, its pods, containerd) and the operator"),
    }
    drop(node);
    terminate(stack.operator_mut(), Duration::from_secs(10)).await;
    Ok(())
}

/// Asks a process to stop with SIGTERM and waits for it (the kill on drop follows).
async fn terminate(process: &mut Supervised, within: Duration) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(process.pid().to_string())
        .status();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && process.check_running().is_ok() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The port of an `http://127.0.0.1:<port>/...` URL.
fn port_of(url: &str) -> Result<u16> {
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .with_context(|| format!("no 127.0.0.1 port in {url}"))
}

/// Messages in the dead-letter queue.
async fn dead_letters(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    hookline_worker::dead_letters::depth(sqs, url)
        .await
        .map_err(anyhow::Error::msg)
}

/// A handler that prints what it receives; the team's code would go here.
async fn sample_handler(
    received: Arc<Mutex<Vec<String>>>,
    broken: Arc<AtomicBool>,
) -> Result<String> {
    let app = Router::new().route(
        "/stripe",
        post(move |headers: HeaderMap, body: Bytes| {
            let received = received.clone();
            let broken = broken.clone();
            async move {
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                // A bug in the team's code, for one customer, until it is fixed.
                if broken.load(Ordering::Relaxed)
                    && event["data"]["object"]["customer"] == "cus_POISON"
                {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "bug");
                }
                let line = format!(
                    "group {:<8} {} (message {}, delivery #{})",
                    headers
                        .get("hookline-group-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default(),
                    event["id"].as_str().unwrap_or_default(),
                    headers
                        .get("hookline-message-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default(),
                    headers
                        .get("hookline-receive-count")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default(),
                );
                if let Ok(mut received) = received.lock() {
                    received.push(line);
                }
                (StatusCode::OK, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/stripe", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// POSTs a Stripe-style signed event to the gateway; returns the status.
async fn send(target: &Target, body: &str, secret: Option<&str>) -> Result<u16> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut headers = String::from(
        "Content-Type: application/json\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n",
    );
    if let Some(secret) = secret {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
        headers.push_str(&format!(
            "Stripe-Signature: t={timestamp},v1={}\r\n",
            hex::encode(tag.as_ref())
        ));
    }
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        target.path,
        target.host,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", target.port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    String::from_utf8_lossy(&response)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")
}

/// Runs `kubectl hookline` (the plugin binary itself, so kubectl is not needed)
/// against the bench and prints its output.
fn plugin(bench: &Bench, args: &[&str]) {
    println!("  $ kubectl hookline {}", args.join(" "));
    let output = workspace_binary("kubectl-hookline").and_then(|path| {
        std::process::Command::new(path)
            .args(args)
            .env("KUBECONFIG", bench.kube.kubeconfig_path())
            .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
            .env("AWS_REGION", hookline_tests::aws::REGION)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .output()
            .context("running kubectl-hookline")
    });
    match output {
        Ok(out) => {
            for line in String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
            {
                println!("  {line}");
            }
        }
        Err(e) => println!("  {e:#}"),
    }
}

/// Shows kubectl's view when kubectl is installed; the demo does not depend on it.
fn kubectl(bench: &Bench, args: &[&str]) {
    let output = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(bench.kube.kubeconfig_path())
        .args(args)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("  {line}");
            }
        }
        Ok(out) => println!(
            "  kubectl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("  (kubectl not available: {e})"),
    }
}
