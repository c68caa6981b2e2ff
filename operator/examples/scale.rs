//! Benchmark (prints figures, asserts nothing): N Webhooks on one gateway, with the
//! `hookline-operator` binary (default AWS rate limits) against the bench.
//!
//! Prints the time until every Webhook serves (QueueReady and RouteReady: the
//! bench has no kubelet, so worker pods never become ready), the AWS calls per
//! webhook on create and per steady-state reconcile, and the operator's memory
//! (resident and peak) at 0 and N Webhooks; then grows to M Webhooks, waits until they
//! serve, and samples its memory once a minute for HOLD minutes at rest.
//!
//! `make bench-operator` (N=200, M=1000, HOLD=10). Figures go to docs/benchmarks.md.
//!
//! Over the HOLD minutes, the at-rest section ([`at_rest`]) also counts the
//! operator's AWS calls and prints the calls per Webhook per hour by caller and
//! operation (the worker's computed from its configuration: the bench has no
//! kubelet), next to the model, and what they cost per month at AWS list prices.

#![allow(clippy::print_stdout)]

#[path = "scale/at_rest.rs"]
mod at_rest;

use anyhow::{Context, Result, bail};
use hookline_crds::{Webhook, WebhookGateway};
use hookline_tests::Bench;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(200), |a| a.parse()).context("N")?;
    let m: usize = args.next().map_or(Ok(1000), |a| a.parse()).context("M")?;
    // Minutes the operator is watched at rest with M Webhooks, sampling its memory.
    let hold: u64 = args.next().map_or(Ok(10), |a| a.parse()).context("HOLD")?;
    // As shipped.
    let resync = 300;
    let binary = std::env::var("HOOKLINE_OPERATOR_BIN").map_or_else(
        |_| hookline_tests::repo_root().join("target/release/hookline-operator"),
        std::path::PathBuf::from,
    );
    if !binary.is_file() {
        bail!(
            "{} not found; run `cargo build --release -p hookline-operator` (or `make bench-operator`)",
            binary.display()
        );
    }

    let bench = Bench::start().await?;
    let client = bench.kube.client().await?;
    let sdk = bench.aws.sdk_config().await;
    let zone = "bench.example.com";
    aws_sdk_route53::Client::new(&sdk)
        .create_hosted_zone()
        .name(zone)
        .caller_reference("bench")
        .send()
        .await?;
    let namespace = bench.kube.namespace(&client, "scale").await?;
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    // A REST API holds 300 resources by default (AWS's "Resources per API"): the
    // Webhooks go PER_GATEWAY to a gateway, each its own REST API.
    let gateway_count = m.max(n).div_ceil(PER_GATEWAY).max(1);
    for g in 0..gateway_count {
        gateways
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookGateway",
                    "metadata": {"name": gateway_name(g)},
                    "spec": {"hostname": format!("hooks-{g}.{zone}"), "hostedZone": {"name": zone}, "throttling": {"rateLimit": 1000, "burstLimit": 2000}}
                }))?,
            )
            .await?;
    }

    let metrics_port = hookline_tests::process::free_port()?;
    let mut operator = start_operator(&bench, &binary, metrics_port, resync)?;
    let pid = operator.id();
    println!(
        "operator pid {pid}, bench ready in {:.1}s, log {}",
        bench.started_in().as_secs_f64(),
        bench.workdir().join("operator.log").display()
    );

    wait(
        &mut operator,
        &format!("{gateway_count} gateways Ready"),
        Duration::from_secs(600),
        || async {
            let all = gateways.list(&ListParams::default()).await?;
            Ok(all
                .items
                .iter()
                .filter(|gateway| {
                    gateway.status.as_ref().is_some_and(|s| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
                })
                .count()
                == gateway_count)
        },
    )
    .await?;
    println!("{gateway_count} gateways Ready ({PER_GATEWAY} Webhooks each, one REST API each)");
    println!("{}", memory(pid, "with 0 Webhooks (gateways Ready)")?);

    let webhooks: Api<Webhook> = Api::namespaced(client.clone(), &namespace);
    let before = scrape(metrics_port).await?;
    let started = Instant::now();
    create(&webhooks, &namespace, 0..n).await?;
    println!(
        "created {n} Webhooks in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let limit = Duration::from_secs(3600);
    wait(
        &mut operator,
        &format!("{n} Webhooks serving"),
        limit,
        || async { Ok(serving(&webhooks).await? >= n) },
    )
    .await?;
    let ready_after = started.elapsed();
    let after_create = scrape(metrics_port).await?;
    let create_calls = delta(&after_create, &before, "hookline_aws_calls_total");
    let deployments = delta_matching(&after_create, &before, "CreateDeployment");
    println!(
        "{n} Webhooks serving after {:.1}s",
        ready_after.as_secs_f64()
    );
    println!(
        "AWS calls per webhook on create: {:.1} ({} in all, {deployments:.0} CreateDeployment)",
        create_calls / n as f64,
        create_calls
    );
    println!("{}", memory(pid, &format!("with {n} Webhooks serving"))?);

    // Steady state: one minute of resyncs (of the Webhooks that come due) and scaler ticks.
    let before = scrape(metrics_port).await?;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = scrape(metrics_port).await?;
    let reconciles = delta_labelled(
        &after,
        &before,
        "hookline_reconciliations_total",
        "kind=\"webhook\"",
    );
    let calls = delta(&after, &before, "hookline_aws_calls_total");
    let writes = delta_writes(&after, &before);
    let scaler_reads = delta_matching(&after, &before, "GetQueueAttributes");
    println!(
        "steady state over 60 s: {reconciles:.0} webhook reconciles, {calls:.0} AWS calls ({writes:.0} writes), of which {scaler_reads:.0} GetQueueAttributes (scaler and reconciles)"
    );
    println!(
        "{}",
        memory(pid, &format!("with {n} Webhooks after 60 s at rest"))?
    );

    let started = Instant::now();
    create(&webhooks, &namespace, n..m).await?;
    println!(
        "created {} more Webhooks ({m} in all) in {:.1}s",
        m - n,
        started.elapsed().as_secs_f64()
    );
    let served = wait(&mut operator, &format!("{m} serving"), limit, || async {
        Ok(serving(&webhooks).await? >= m)
    })
    .await;
    println!(
        "after {:.0}s: {} of {m} serving{}",
        started.elapsed().as_secs_f64(),
        serving(&webhooks).await?,
        served.err().map_or(String::new(), |e| format!(" ({e})"))
    );
    println!("{}", memory(pid, &format!("with {m} Webhooks"))?);
    let rest_before = scrape(metrics_port).await?;
    let rest_started = Instant::now();
    hold_at_rest(pid, hold).await?;
    let rest_after = scrape(metrics_port).await?;
    print_at_rest(m, resync, &rest_before, &rest_after, rest_started.elapsed());
    let _ = operator.kill();
    let _ = operator.wait();
    Ok(())
}

/// Webhooks per gateway: with `/`, the shared `/bench` and one resource each, 252 of
/// the 300 resources a REST API holds by default.
const PER_GATEWAY: usize = 250;

fn gateway_name(index: usize) -> String {
    if index == 0 {
        "bench".to_owned()
    } else {
        format!("bench-{index}")
    }
}

fn start_operator(
    bench: &Bench,
    binary: &std::path::Path,
    port: u16,
    resync: u64,
) -> Result<Child> {
    let log = std::fs::File::create(bench.workdir().join("operator.log"))?;
    Command::new(binary)
        .env("KUBECONFIG", bench.kube.kubeconfig_path())
        .env("AWS_ENDPOINT_URL", bench.aws.endpoint())
        .env("AWS_REGION", hookline_tests::aws::REGION)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("HOOKLINE_LEADER_ELECTION", "false")
        .env("HOOKLINE_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("HOOKLINE_RESYNC_SECONDS", resync.to_string())
        // HOOKLINE_BENCH_LOG: the operator's log filter, for a run that needs a look
        // inside (the log is operator.log in the bench's directory).
        .env(
            "RUST_LOG",
            std::env::var("HOOKLINE_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting hookline-operator")
}

async fn create(
    webhooks: &Api<Webhook>,
    namespace: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    for i in range {
        let webhook: Webhook = serde_json::from_value(json!({
            "apiVersion": "hookline.dev/v1alpha1", "kind": "Webhook",
            "metadata": {"name": format!("wh-{i}"), "namespace": namespace},
            "spec": {
                "gatewayRef": {"name": gateway_name(i / PER_GATEWAY)},
                "path": format!("/bench/wh-{i}"),
                "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
            }
        }))?;
        webhooks.create(&PostParams::default(), &webhook).await?;
    }
    Ok(())
}

async fn serving(webhooks: &Api<Webhook>) -> Result<usize> {
    let all = webhooks.list(&ListParams::default()).await?;
    Ok(all
        .items
        .iter()
        .filter(|w| {
            let ok = |t: &str| {
                w.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == t && c.status == "True")
                })
            };
            ok("QueueReady") && ok("RouteReady")
        })
        .count())
}

async fn wait<F, Fut>(
    operator: &mut Child,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if let Some(status) = operator.try_wait()? {
            bail!("the operator exited ({status}) while waiting for {what}");
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A line of the operator's memory: resident now (VmRSS) and at its peak (VmHWM).
fn memory(pid: u32, when: &str) -> Result<String> {
    Ok(format!(
        "memory {when}: RSS {:.1} MiB, peak {:.1} MiB",
        status_mib(pid, "VmRSS")?,
        status_mib(pid, "VmHWM")?
    ))
}

/// A `/proc/<pid>/status` size, in MiB.
fn status_mib(pid: u32, field: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// The at-rest section: the calls counted between `before` and `after`, `window`
/// apart, with `m` Webhooks, next to the model and its cost (see [`at_rest`]).
fn print_at_rest(
    m: usize,
    resync: u64,
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    window: Duration,
) {
    let config = at_rest::RestConfig {
        resync: Duration::from_secs(resync),
        ..at_rest::RestConfig::default()
    };
    let measured = at_rest::measured(after, before, window, m);
    at_rest::print(&config, PER_GATEWAY.min(m), &measured, window);
}

/// Samples the operator's resident memory once a minute for `minutes` at rest, and
/// prints the first and last samples, the range, and the growth per hour (a line
/// through the samples): memory that is held, not lost, stays flat.
async fn hold_at_rest(pid: u32, minutes: u64) -> Result<()> {
    if minutes == 0 {
        return Ok(());
    }
    let mut samples = Vec::new();
    for minute in 0..=minutes {
        if minute > 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let rss = status_mib(pid, "VmRSS")?;
        println!("at rest, minute {minute}: RSS {rss:.1} MiB");
        samples.push(rss);
    }
    let n = samples.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = samples.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in samples.iter().enumerate() {
        let dx = x as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    let per_hour = if sxx > 0.0 { sxy / sxx * 60.0 } else { 0.0 };
    let (low, high) = samples
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    println!(
        "at rest for {minutes} min: RSS {:.1} -> {:.1} MiB (range {low:.1}-{high:.1}), trend {per_hour:+.2} MiB/h; {}",
        samples[0],
        samples[samples.len() - 1],
        memory(pid, "at the end")?
    );
    Ok(())
}

/// Metric lines `name{labels} value` of /metrics.
async fn scrape(port: u16) -> Result<BTreeMap<String, f64>> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.rsplit_once(' ')
                .and_then(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        })
        .collect())
}

fn delta_where(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    keep: impl Fn(&str) -> bool,
) -> f64 {
    after
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum()
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>, name: &str) -> f64 {
    delta_where(after, before, |k| k.starts_with(name))
}

fn delta_matching(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    operation: &str,
) -> f64 {
    delta_where(after, before, |k| {
        k.starts_with("hookline_aws_calls_total")
            && k.contains(&format!("operation=\"{operation}\""))
    })
}

fn delta_labelled(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    name: &str,
    label: &str,
) -> f64 {
    delta_where(after, before, |k| k.starts_with(name) && k.contains(label))
}

fn delta_writes(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> f64 {
    delta_where(after, before, |k| {
        k.starts_with("hookline_aws_calls_total")
            && !["\"Get", "\"List", "\"Describe"]
                .iter()
                .any(|p| k.contains(&format!("operation={p}")))
    })
}
