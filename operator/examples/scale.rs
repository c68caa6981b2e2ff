//! Benchmark (prints figures, asserts nothing): N Webhooks on one gateway, with the
//! `hookline-operator` binary (default AWS rate limits) against the bench.
//!
//! Prints the time until every Webhook serves (QueueReady and RouteReady: the
//! bench has no kubelet, so worker pods never become ready), the AWS calls per
//! webhook on create and per steady-state reconcile, and the operator's memory
//! (resident and peak) at 0 and N Webhooks; then grows to M Webhooks, waits until they
//! serve, and samples its memory once a minute for HOLD minutes at rest.
//!
//! The floor: from the API Gateway calls the create made (per operation, from the
//! operator's /metrics) and AWS's published quotas (`aws::limits::APIGATEWAY_QUOTAS`),
//! the least time AWS would allow for them ([`api_gateway_floor`]), next to the time
//! measured and their ratio; with the emulator's and the operator's CPU time, and how
//! often a Webhook's condition showed throttling as a failure.
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
use hookline_operator::aws::limits::{DEFAULT_QUOTA_SHARE, api_gateway_floor};
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
    // The allocator settings the chart ships; HOOKLINE_BENCH_MALLOC overrides them
    // (empty: glibc's defaults) to compare.
    let malloc = match std::env::var("HOOKLINE_BENCH_MALLOC") {
        Ok(tunables) => tunables,
        Err(_) => hookline_tests::chart_malloc_tunables()?,
    };
    let mut operator = start_operator(&bench, &binary, metrics_port, resync, &malloc)?;
    let pid = operator.id();
    println!(
        "operator pid {pid} (GLIBC_TUNABLES={malloc:?}), bench ready in {:.1}s, log {}",
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
    let cpu_before = (cpu_seconds(bench.aws.pid())?, cpu_seconds(pid)?);
    let throttled = std::sync::Mutex::new(std::collections::BTreeSet::new());
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
        || async {
            // A loaded API server may drop one answer; the next second asks again.
            let all = match webhooks.list(&ListParams::default()).await {
                Ok(all) => all.items,
                Err(e) => {
                    eprintln!("listing the Webhooks: {e}; asking again");
                    return Ok(false);
                }
            };
            throttling_surfaced(&all, &throttled);
            Ok(serving_of(&all) >= n)
        },
    )
    .await?;
    let ready_after = started.elapsed();
    let after_create = scrape(metrics_port).await?;
    print_floor(
        n,
        &apigateway_calls(&after_create, &before),
        ready_after,
        (
            cpu_before,
            (cpu_seconds(bench.aws.pid())?, cpu_seconds(pid)?),
        ),
        &throttled,
    );
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
    malloc: &str,
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
        .env("GLIBC_TUNABLES", malloc)
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

/// API Gateway calls since `before`, per operation (every outcome: AWS counts each
/// request against its quotas).
fn apigateway_calls(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for (key, value) in after {
        if !key.starts_with("hookline_aws_calls_total") || !key.contains("service=\"apigateway\"") {
            continue;
        }
        let Some(operation) = key
            .split("operation=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let new = value - before.get(key).copied().unwrap_or(0.0);
        // Counters: whole, non-negative numbers.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let new = new.max(0.0).round() as u64;
        *calls.entry(operation.to_owned()).or_default() += new;
    }
    calls
}

/// Remembers each Webhook whose conditions show AWS throttling as a failure
/// (reason `AwsError`); "throttled, retrying" (`Progressing`) is expected.
fn throttling_surfaced(
    webhooks: &[Webhook],
    seen: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) {
    for webhook in webhooks {
        let failed = webhook.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.reason == "AwsError" && c.message.contains("throttled"))
        });
        if failed {
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(webhook.metadata.name.clone().unwrap_or_default());
        }
    }
}

/// The floor for the create's API Gateway calls, the time measured, their ratio,
/// and where the time went.
fn print_floor(
    n: usize,
    calls: &BTreeMap<String, u64>,
    actual: Duration,
    ((emulator_0, operator_0), (emulator_1, operator_1)): ((f64, f64), (f64, f64)),
    throttled: &std::sync::Mutex<std::collections::BTreeSet<String>>,
) {
    let total: u64 = calls.values().sum();
    #[allow(clippy::cast_precision_loss)]
    let per = |c: u64| c as f64 / n as f64;
    let by_operation: Vec<String> = calls
        .iter()
        .map(|(op, c)| format!("{op} {:.2}", per(*c)))
        .collect();
    println!(
        "API Gateway calls per webhook on create: {:.2} ({total} in all): {}",
        per(total),
        by_operation.join(", ")
    );
    let floor = api_gateway_floor(calls);
    let terms: Vec<String> = floor
        .terms
        .iter()
        .take(4)
        .map(|t| format!("{} {} calls {:.1}s", t.bucket, t.calls, t.seconds))
        .collect();
    let actual = actual.as_secs_f64();
    println!(
        "floor for {n} new Webhooks at AWS's published quotas: {:.1}s (slowest buckets: {}; plus one 5 s deployment interval); at the operator's default share ({DEFAULT_QUOTA_SHARE}): {:.1}s",
        floor.seconds,
        terms.join(", "),
        floor.seconds / DEFAULT_QUOTA_SHARE
    );
    // The writes are what a route needs whatever the operator reads; reads (the
    // waiting Webhooks' checks whether their route is live) are the operator's choice.
    let writes: BTreeMap<String, u64> = calls
        .iter()
        .filter(|(op, _)| !hookline_operator::aws::limits::is_read(op))
        .map(|(op, c)| (op.clone(), *c))
        .collect();
    let writes_floor = api_gateway_floor(&writes);
    println!(
        "actual {actual:.1}s, {:.2}x the floor; the writes alone ({} calls) have a floor of {:.1}s ({:.2}x)",
        actual / floor.seconds.max(f64::MIN_POSITIVE),
        writes.values().sum::<u64>(),
        writes_floor.seconds,
        actual / writes_floor.seconds.max(f64::MIN_POSITIVE)
    );
    println!(
        "CPU during the create: emulator {:.1}s ({:.0}% of one core), operator {:.1}s ({:.0}%)",
        emulator_1 - emulator_0,
        100.0 * (emulator_1 - emulator_0) / actual,
        operator_1 - operator_0,
        100.0 * (operator_1 - operator_0) / actual
    );
    let throttled = throttled
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!(
        "Webhooks whose conditions showed throttling as a failure (AwsError): {}",
        throttled.len()
    );
}

/// User + system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("malformed /proc/<pid>/stat")
    };
    // utime and stime are fields 14 and 15 (1-based, counting pid and comm); the
    // kernel's USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
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
    Ok(serving_of(
        &webhooks.list(&ListParams::default()).await?.items,
    ))
}

fn serving_of(all: &[Webhook]) -> usize {
    all.iter()
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
        .count()
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
