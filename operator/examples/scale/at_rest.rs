//! The "at rest" section of the operator benchmark: AWS calls per Webhook per hour
//! when nothing happens, split by operation and caller, and what they cost per month
//! at AWS list prices ([`PRICES`], the one price table, with its sources).
//!
//! Three callers: the reconciles (a resync every `resync` seconds, two reads while
//! nothing changed; the full pass, ~10 reads, once per audit interval), the scaler
//! (two GetQueueAttributes per Webhook per interval: the queue's depth and the
//! dead-letter queue's) and the worker (each of its
//! pollers long-polls for 20 s, so an idle poller makes 180 ReceiveMessage calls an
//! hour). The bench has no kubelet, so the worker's calls are computed from its
//! configuration (replicas at rest × pollers), never measured; the operator's are
//! measured from its `hookline_aws_calls_total` over the benchmark's HOLD minutes at
//! rest and compared with the same model.

use std::collections::BTreeMap;
use std::time::Duration;

/// Hours in a month, as AWS's pricing examples count them (730).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// One AWS list price: US dollars per million requests of `operations` of `service`
/// (`"*"`: every other operation of the service), and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Price {
    /// `sqs`, `apigateway`, ...
    pub service: &'static str,
    /// The operations it applies to; `"*"` for the rest of the service.
    pub operations: &'static [&'static str],
    /// USD per million requests.
    pub per_million: f64,
    /// The page that says so, and `[unverified]` when we could not read the figure
    /// there ourselves.
    pub source: &'static str,
}

/// List prices in us-east-1 (December 2026), before free tiers (SQS: the first
/// million requests a month free per account; CloudWatch: one million API requests).
/// SQS bills every 64 KB chunk of a payload as one request; the calls here carry no
/// payload, so each is one request.
pub const PRICES: &[Price] = &[
    Price {
        service: "sqs",
        operations: &[
            "ReceiveMessage",
            "SendMessage",
            "DeleteMessage",
            "DeleteMessageBatch",
            "ChangeMessageVisibility",
        ],
        per_million: 0.50,
        source: "https://aws.amazon.com/sqs/pricing/ (FIFO requests $0.50 per million, first \
                 1 million a month free; AWS What's New 2016-11-17, \"Amazon SQS introduces FIFO \
                 queues\"; each 64 KB chunk is one request: https://aws.amazon.com/sqs/faqs/)",
    },
    Price {
        service: "sqs",
        operations: &["*"],
        per_million: 0.40,
        source: "https://aws.amazon.com/sqs/pricing/ [unverified: that the FIFO rate covers only \
                 the message actions and other actions on a FIFO queue, like GetQueueAttributes, \
                 bill at the standard $0.40]",
    },
    Price {
        service: "apigateway",
        operations: &["*"],
        per_million: 0.0,
        source: "https://aws.amazon.com/api-gateway/pricing/ [unverified: API Gateway bills the \
                 calls your APIs receive and data out, not management API calls]",
    },
    Price {
        service: "acm",
        operations: &["*"],
        per_million: 0.0,
        source: "https://aws.amazon.com/certificate-manager/pricing/ [unverified: public \
                 certificates and the ACM API carry no charge]",
    },
    Price {
        service: "route53",
        operations: &["*"],
        per_million: 0.0,
        source: "https://aws.amazon.com/route53/pricing/ [unverified: Route 53 bills hosted zones \
                 and DNS queries, not API calls]",
    },
    Price {
        service: "iam",
        operations: &["*"],
        per_million: 0.0,
        source: "https://aws.amazon.com/iam/faqs/ [unverified: IAM is offered at no additional \
                 charge]",
    },
    Price {
        service: "logs",
        operations: &["*"],
        per_million: 10.0,
        source: "https://aws.amazon.com/cloudwatch/pricing/ (1 million API requests a month free) \
                 [unverified: $0.01 per 1,000 other API requests, and that it applies to \
                 CloudWatch Logs' DescribeLogGroups/ListTagsForResource]",
    },
    Price {
        service: "lambda",
        operations: &["*"],
        per_million: 0.0,
        source: "https://aws.amazon.com/lambda/pricing/ [unverified: GetPolicy and the other \
                 management calls are not billed]",
    },
];

/// The list price of one call of `service`/`operation`, in USD per million.
pub fn price(service: &str, operation: &str) -> f64 {
    PRICES
        .iter()
        .find(|p| p.service == service && p.operations.contains(&operation))
        .or_else(|| {
            PRICES
                .iter()
                .find(|p| p.service == service && p.operations.contains(&"*"))
        })
        .map_or(0.0, |p| p.per_million)
}

/// What sets the calls at rest: the chart's defaults unless the bench runs otherwise.
#[derive(Debug, Clone, Copy)]
pub struct RestConfig {
    /// Resync period of the reconciles.
    pub resync: Duration,
    /// Interval of full passes.
    pub audit: Duration,
    /// Scaler interval.
    pub scaler: Duration,
    /// Worker replicas at rest (`worker.scaling.minReplicas`, default 1).
    pub worker_replicas: u32,
    /// Long-poll loops per worker replica (`HOOKLINE_POLLERS`, default 2).
    pub pollers: u32,
    /// Long-poll wait (the worker's 20 s, SQS's maximum).
    pub wait: Duration,
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            audit: Duration::from_secs(36_000),
            scaler: Duration::from_secs(10),
            worker_replicas: 1,
            pollers: 2,
            wait: Duration::from_secs(20),
        }
    }
}

/// Calls per Webhook per hour at rest, by (caller, service, operation), from the
/// configuration alone. The full pass's reads per Webhook are those of
/// docs/aws-calls.md's repeat column; one gateway's are spread over `per_gateway`
/// Webhooks.
pub fn model(
    config: &RestConfig,
    per_gateway: f64,
) -> BTreeMap<(&'static str, &'static str, &'static str), f64> {
    let per_hour = |every: Duration| 3600.0 / every.as_secs_f64().max(1.0);
    let resyncs = per_hour(config.resync);
    let audits = per_hour(config.audit);
    let mut calls = BTreeMap::new();
    let mut add = |caller, service, operation, n: f64| {
        *calls.entry((caller, service, operation)).or_insert(0.0) += n;
    };
    // A resync of an unchanged Webhook: two reads.
    add("webhook resync", "sqs", "GetQueueAttributes", resyncs);
    add("webhook resync", "apigateway", "GetMethod", resyncs);
    // The audit: the full pass (ensure_pair, ensure_route, route_is_live).
    for (service, operation, n) in [
        ("sqs", "GetQueueUrl", 2.0),
        ("sqs", "ListQueueTags", 2.0),
        ("sqs", "GetQueueAttributes", 2.0),
        ("apigateway", "GetResources", 1.0),
        ("apigateway", "GetMethod", 2.0),
        ("apigateway", "GetStage", 1.0),
    ] {
        add("webhook audit", service, operation, n * audits);
    }
    // A resync of an unchanged gateway, and its audit, shared by its Webhooks.
    let share = 1.0 / per_gateway.max(1.0);
    add("gateway resync", "apigateway", "GetStage", resyncs * share);
    add(
        "gateway resync",
        "apigateway",
        "GetDomainName",
        resyncs * share,
    );
    for (service, operation, n) in [
        ("iam", "GetRole", 1.0),
        ("iam", "GetRolePolicy", 1.0),
        ("logs", "DescribeLogGroups", 1.0),
        ("logs", "ListTagsForResource", 1.0),
        ("apigateway", "GetRestApi", 2.0),
        ("apigateway", "GetMethod", 1.0),
        ("apigateway", "GetStage", 1.0),
        ("apigateway", "GetAccount", 1.0),
        ("apigateway", "GetDomainName", 1.0),
        ("apigateway", "GetBasePathMappings", 1.0),
        ("acm", "DescribeCertificate", 1.0),
        ("route53", "ListHostedZonesByName", 1.0),
        ("route53", "ListResourceRecordSets", 5.0),
    ] {
        add("gateway audit", service, operation, n * audits * share);
    }
    // Each tick reads the queue's depth; the dead-letter queue's (for
    // status.backlog.deadLetter) once per scaler::DEAD_LETTER_INTERVAL.
    let dead_letter_reads = per_hour(
        config
            .scaler
            .max(hookline_operator::scaler::DEAD_LETTER_INTERVAL),
    );
    add(
        "scaler",
        "sqs",
        "GetQueueAttributes",
        per_hour(config.scaler) + dead_letter_reads,
    );
    let polls =
        f64::from(config.worker_replicas) * f64::from(config.pollers) * per_hour(config.wait);
    add("worker (computed)", "sqs", "ReceiveMessage", polls);
    calls
}

/// Calls per Webhook per hour measured from two scrapes of
/// `hookline_aws_calls_total` `window` apart, by (service, operation).
pub fn measured(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
    window: Duration,
    webhooks: usize,
) -> BTreeMap<(String, String), f64> {
    let scale = 3600.0 / window.as_secs_f64().max(1.0) / (webhooks.max(1) as f64);
    let mut calls = BTreeMap::new();
    for (key, value) in after {
        if !key.starts_with("hookline_aws_calls_total") {
            continue;
        }
        let (Some(service), Some(operation)) = (label(key, "service"), label(key, "operation"))
        else {
            continue;
        };
        let delta = value - before.get(key).copied().unwrap_or(0.0);
        if delta > 0.0 {
            *calls.entry((service, operation)).or_insert(0.0) += delta * scale;
        }
    }
    calls
}

fn label(key: &str, name: &str) -> Option<String> {
    let start = key.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &key[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// USD per month of `calls_per_hour` calls of `service`/`operation`.
pub fn monthly_cost(service: &str, operation: &str, calls_per_hour: f64) -> f64 {
    calls_per_hour * HOURS_PER_MONTH * price(service, operation) / 1e6
}

/// Prints the at-rest table: the model by caller and operation with its monthly cost
/// per Webhook, then what the operator measured over the window next to the model's
/// operator part, then the price table's sources.
pub fn print(
    config: &RestConfig,
    per_gateway: usize,
    measured: &BTreeMap<(String, String), f64>,
    window: Duration,
) {
    let model = model(config, per_gateway as f64);
    println!(
        "at rest, per Webhook per hour (resync {} s, audit {} h, scaler {} s, worker {} replica(s) × {} pollers × {} s polls, {per_gateway} Webhooks per gateway):",
        config.resync.as_secs(),
        config.audit.as_secs() / 3600,
        config.scaler.as_secs(),
        config.worker_replicas,
        config.pollers,
        config.wait.as_secs()
    );
    println!("| caller | operation | calls/h | USD/month |");
    println!("| --- | --- | ---: | ---: |");
    let (mut total_calls, mut total_cost) = (0.0, 0.0);
    for ((caller, service, operation), n) in &model {
        let cost = monthly_cost(service, operation, *n);
        total_calls += n;
        total_cost += cost;
        println!("| {caller} | {service} {operation} | {n:.2} | {cost:.4} |");
    }
    println!("| all | | {total_calls:.1} | {total_cost:.4} |");
    let mut operator_model: BTreeMap<(String, String), f64> = BTreeMap::new();
    for ((caller, service, operation), n) in &model {
        if !caller.starts_with("worker") {
            *operator_model
                .entry(((*service).to_owned(), (*operation).to_owned()))
                .or_insert(0.0) += n;
        }
    }
    if window < config.resync {
        println!(
            "operator's calls not measured: the window ({} s, HOLD) is shorter than a resync period",
            window.as_secs()
        );
        print_prices();
        return;
    }
    println!(
        "operator's calls measured over {} s, per Webhook per hour (model in brackets; a window shorter than the audit interval sees no audit):",
        window.as_secs()
    );
    let mut keys: Vec<&(String, String)> = measured.keys().chain(operator_model.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        println!(
            "  {} {}: {:.2} [{:.2}]",
            key.0,
            key.1,
            measured.get(key).copied().unwrap_or(0.0),
            operator_model.get(key).copied().unwrap_or(0.0)
        );
    }
    print_prices();
}

fn print_prices() {
    println!("prices (USD per million requests, us-east-1, before free tiers):");
    for p in PRICES {
        println!(
            "  {} {:?}: {} — {}",
            p.service, p.operations, p.per_million, p.source
        );
    }
}
