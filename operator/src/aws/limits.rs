//! Client-side rate limits and retries for AWS control planes.
//!
//! AWS control planes allow few requests per second per account (Route 53: 5; API
//! Gateway: 10 with a burst of 40 in all, and tighter per-operation quotas such as
//! `CreateDeployment` once per 5 s and `CreateDomainName` once per 30 s: the
//! published table is [`APIGATEWAY_QUOTAS`], the one copy in the code, which both
//! [`RateLimits::default`] and [`api_gateway_floor`], the least time those quotas
//! allow for a set of calls, read). Every call goes through [`Caller::call`], which waits for a token of its
//! service's bucket (and of its operation's, where AWS limits one operation more
//! tightly), retries throttling and 5xx answers with jittered exponential backoff,
//! and counts the call by service, operation and outcome. The SDK's own retries are
//! turned off (see `AwsClients::new`) so that this is the only retry policy.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

use super::error::{AwsError, Service};

/// A token bucket: `per_second` tokens a second, at most `burst` saved up. Callers
/// get tokens in the order they asked (first come, first served): at the quota,
/// hundreds of reconciles wait at once, and a call that lost every race for a
/// token (say, the gateway's deployment behind a crowd of Webhook reads) would
/// otherwise wait without bound.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
    /// Held by the caller whose turn it is (tokio's mutex queues waiters in order).
    turn: tokio::sync::Mutex<()>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new((burst, Instant::now())),
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// A bucket allowing one call per `interval`, with no burst.
    pub fn every(interval: Duration) -> Self {
        Self::new(1.0 / interval.as_secs_f64().max(f64::MIN_POSITIVE), 1)
    }

    /// Waits until a token is available and takes it, after the callers that asked
    /// before.
    pub async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let (tokens, updated) = *state;
                let tokens = (tokens + now.duration_since(updated).as_secs_f64() * self.per_second)
                    .min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Requests per second allowed to each service, and the tighter per-operation limits.
/// Defaults are AWS's published control-plane quotas ([`APIGATEWAY_QUOTAS`],
/// [`APIGATEWAY_TOTAL`], [`ROUTE53_TOTAL`]) times [`DEFAULT_QUOTA_SHARE`]: just under
/// them, so that the operator itself is not what slows a large create down, while
/// other tools in the account keep a little room.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Per service: (requests per second, burst).
    pub services: HashMap<Service, (f64, u32)>,
    /// Per service and operation: (requests per second, burst), on top of the
    /// service's bucket.
    pub operations: HashMap<(Service, &'static str), (f64, u32)>,
}

/// One of AWS's published per-account request quotas: `calls` requests every
/// `seconds`, all of them usable at once (AWS publishes no separate burst for these).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// The operation, as the SDK and IAM name it.
    pub operation: &'static str,
    /// Requests allowed per `seconds`.
    pub calls: u32,
    /// The period.
    pub seconds: f64,
}

impl Quota {
    const fn new(operation: &'static str, calls: u32, seconds: f64) -> Self {
        Self {
            operation,
            calls,
            seconds,
        }
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        f64::from(self.calls) / self.seconds
    }
}

/// API Gateway's fixed per-account quotas for creating, deploying and managing APIs,
/// the single copy in the code. Source: API Gateway developer guide, "Amazon API
/// Gateway quotas", table "API Gateway quotas for creating, deploying and managing
/// an API" (<https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html>,
/// read 2026-12-01); they cannot be raised. Operations the operator never calls
/// (PutRestApi, ImportRestApi, UpdateAccount) are listed too, so that adding a call
/// cannot forget its quota. Every other operation has "no quota up to the total
/// account quota" ([`APIGATEWAY_TOTAL`]), which these count against as well.
pub const APIGATEWAY_QUOTAS: [Quota; 15] = [
    Quota::new("CreateApiKey", 5, 1.0),
    Quota::new("CreateDeployment", 1, 5.0),
    Quota::new("CreateDomainName", 1, 30.0),
    Quota::new("CreateResource", 5, 1.0),
    // Regional (and private) APIs; edge-optimized ones are 1 per 30 s.
    Quota::new("CreateRestApi", 1, 3.0),
    Quota::new("DeleteApiKey", 5, 1.0),
    Quota::new("DeleteDomainName", 1, 30.0),
    Quota::new("DeleteResource", 5, 1.0),
    Quota::new("DeleteRestApi", 1, 30.0),
    Quota::new("GetResources", 5, 2.0),
    Quota::new("ImportRestApi", 1, 3.0),
    Quota::new("PutRestApi", 1, 1.0),
    Quota::new("UpdateAccount", 1, 20.0),
    Quota::new("UpdateDomainName", 1, 30.0),
    Quota::new("UpdateUsagePlan", 1, 20.0),
];

/// API Gateway's "Total operations" quota, same table: 10 requests per second with a
/// burst of 40, for all control-plane calls of the account together: (rate, burst).
pub const APIGATEWAY_TOTAL: (f64, u32) = (10.0, 40);

/// Route 53's API quota: "five requests per second per AWS account" (Route 53
/// developer guide, "Quotas", "Quotas on API requests"); no burst is published.
pub const ROUTE53_TOTAL: (f64, u32) = (5.0, 5);

/// The share of each published quota the operator uses by default.
pub const DEFAULT_QUOTA_SHARE: f64 = 0.95;

/// `quota` scaled to `share`, as (rate, burst); the burst stays at least 1.
fn scaled((rate, burst): (f64, u32), share: f64) -> (f64, u32) {
    let burst = (f64::from(burst) * share).floor();
    // A share is at most 1, so the burst fits in a u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let burst = burst.max(1.0) as u32;
    (rate * share, burst)
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::with_share(DEFAULT_QUOTA_SHARE)
    }
}

impl RateLimits {
    /// AWS's published quotas times `share` (clamped to (0, 1]): 1 uses all of them,
    /// 0.5 leaves half of each to other tools of the account.
    pub fn with_share(share: f64) -> Self {
        let share = if share.is_finite() {
            share.clamp(0.01, 1.0)
        } else {
            DEFAULT_QUOTA_SHARE
        };
        let mut operations: HashMap<(Service, &'static str), (f64, u32)> = APIGATEWAY_QUOTAS
            .iter()
            .map(|q| {
                (
                    (Service::ApiGateway, q.operation),
                    scaled((q.rate(), q.calls), share),
                )
            })
            .collect();
        // ACM: RequestCertificate 5 per second per account (ACM quotas, "API rate quotas").
        operations.insert(
            (Service::Acm, "RequestCertificate"),
            scaled((5.0, 1), share),
        );
        Self {
            services: HashMap::from([
                (Service::Route53, scaled(ROUTE53_TOTAL, share)),
                (Service::ApiGateway, scaled(APIGATEWAY_TOTAL, share)),
                (Service::Acm, (8.0, 10)),
                (Service::Iam, (8.0, 10)),
                (Service::Logs, (4.0, 5)),
                // Lambda's control plane allows 15 requests per second per account.
                (Service::Lambda, (8.0, 10)),
                // SQS's API is not a low-quota control plane; this only keeps a
                // runaway loop from flooding it.
                (Service::Sqs, (500.0, 500)),
            ]),
            operations,
        }
    }

    /// No waiting at all, for tests against an emulator.
    pub fn unlimited() -> Self {
        Self {
            services: HashMap::new(),
            operations: HashMap::new(),
        }
    }
}

/// One token bucket's share of the [`Floor`]: the least time AWS needs to take
/// `calls` requests through it.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorTerm {
    /// `total` (the account-wide bucket) or the operation.
    pub bucket: &'static str,
    /// Requests through it.
    pub calls: u64,
    /// Seconds: every request beyond the burst waits for a token.
    pub seconds: f64,
}

/// The least time AWS's API Gateway quotas allow for a set of calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    /// Every bucket the calls pass, slowest first.
    pub terms: Vec<FloorTerm>,
    /// The slowest bucket's time plus one [`DEPLOY_INTERVAL`]: routes changed
    /// just after a deployment took the token wait that long for the next one.
    pub seconds: f64,
}

/// `CreateDeployment`'s quota interval: one per 5 s per account.
pub const DEPLOY_INTERVAL: f64 = 5.0;

/// The floor for `calls` (API Gateway operation → requests), with AWS's quotas
/// ([`APIGATEWAY_QUOTAS`], [`APIGATEWAY_TOTAL`]) as full buckets at the start:
/// max over the buckets of (requests − burst) / rate, plus the deployment cadence.
pub fn api_gateway_floor(calls: &BTreeMap<String, u64>) -> Floor {
    // Counts are far below 2^52, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let time = |n: u64, (rate, burst): (f64, u32)| (n as f64 - f64::from(burst)).max(0.0) / rate;
    let total: u64 = calls.values().sum();
    let mut terms = vec![FloorTerm {
        bucket: "total",
        calls: total,
        seconds: time(total, APIGATEWAY_TOTAL),
    }];
    for quota in &APIGATEWAY_QUOTAS {
        let n = calls.get(quota.operation).copied().unwrap_or(0);
        if n > 0 {
            terms.push(FloorTerm {
                bucket: quota.operation,
                calls: n,
                seconds: time(n, (quota.rate(), quota.calls)),
            });
        }
    }
    terms.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let slowest = terms.first().map_or(0.0, |t| t.seconds);
    Floor {
        terms,
        seconds: slowest + DEPLOY_INTERVAL,
    }
}

/// Retries of one call.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Upper bound of the first backoff; doubles per attempt.
    pub base: Duration,
    /// Largest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// Call counts by (service, operation, outcome).
pub type CallCounts = BTreeMap<(Service, &'static str, &'static str), u64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

/// Makes AWS calls under the rate limits, with retries, counting each attempt.
#[derive(Debug, Clone)]
pub struct Caller {
    services: Arc<HashMap<Service, TokenBucket>>,
    operations: Arc<HashMap<(Service, &'static str), TokenBucket>>,
    retry: RetryPolicy,
    calls: Family<CallLabels, Counter>,
    /// The same counts, readable in-process (the Family is write-only for export).
    counts: Arc<Mutex<CallCounts>>,
}

impl Caller {
    /// A caller with these limits and retries.
    pub fn new(limits: &RateLimits, retry: RetryPolicy) -> Self {
        Self {
            services: Arc::new(
                limits
                    .services
                    .iter()
                    .map(|(service, (rate, burst))| (*service, TokenBucket::new(*rate, *burst)))
                    .collect(),
            ),
            operations: Arc::new(
                limits
                    .operations
                    .iter()
                    .map(|(key, (rate, burst))| (*key, TokenBucket::new(*rate, *burst)))
                    .collect(),
            ),
            retry,
            calls: Family::default(),
            counts: Arc::default(),
        }
    }

    /// Registers `hookline_aws_calls_total{service,operation,outcome}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hookline_aws_calls",
            "AWS API calls made by the operator, by service, operation and outcome",
            self.calls.clone(),
        );
    }

    /// Calls made so far to `service`/`operation` with `outcome` (`ok`, `not_found`,
    /// `throttled`, …); lets tests prove that a repeat made no changes.
    pub fn count(&self, service: Service, operation: &'static str, outcome: &'static str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .get(&(service, operation, outcome))
            .copied()
            .unwrap_or(0)
    }

    /// All calls so far as `(service, operation, outcome) → count`.
    pub fn snapshot(&self) -> CallCounts {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes one AWS call on `object` (the name, id or ARN it reads or changes): waits
    /// for the rate limits, retries what is retryable, maps the SDK's error into an
    /// [`AwsError`], and logs the call once it is settled (see [`log_call`]).
    pub async fn call<T, E, F, Fut>(
        &self,
        service: Service,
        operation: &'static str,
        object: &str,
        mut request: F,
    ) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, Response>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut ceiling = self.retry.base;
        let mut attempt = 1;
        loop {
            // The operation's bucket first: a call waiting for a slow operation
            // quota (GetResources, CreateDeployment) then holds no token of the
            // service's, which the other calls meanwhile can use.
            if let Some(bucket) = self.operations.get(&(service, operation)) {
                bucket.acquire().await;
            }
            if let Some(bucket) = self.services.get(&service) {
                bucket.acquire().await;
            }
            let error = match request().await {
                Ok(value) => {
                    self.record(service, operation, "ok");
                    log_call(service, operation, object, attempt, None);
                    return Ok(value);
                }
                Err(e) => AwsError::from_sdk(service, operation, e),
            };
            self.record(service, operation, error.kind());
            if !error.is_retryable() || attempt >= self.retry.max_attempts {
                log_call(service, operation, object, attempt, Some(&error));
                return Err(error);
            }
            // Full jitter: many reconciles throttled at once must not retry in step.
            let pause = ceiling.mul_f64(fastrand::f64());
            tracing::debug!(%service, operation, object, attempt, ?pause, %error, "retrying AWS call");
            tokio::time::sleep(pause).await;
            ceiling = (ceiling * 2).min(self.retry.max);
            attempt += 1;
        }
    }

    fn record(&self, service: Service, operation: &'static str, outcome: &'static str) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((service, operation, outcome))
            .or_default() += 1;
        self.calls
            .get_or_create(&CallLabels {
                service: service.as_str(),
                operation,
                outcome,
            })
            .inc();
    }
}

/// Whether an operation only reads: AWS names its reads `Get…`, `List…` and
/// `Describe…` (checked against the IAM actions each call needs, in `actions.rs`).
pub fn is_read(operation: &str) -> bool {
    ["Get", "List", "Describe"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}

/// Logs a settled call. A change (anything but a read) goes to `info` with the object
/// it touched, so the log of an operator that crashed still shows each create,
/// update and delete it made, and whether AWS took it; a read goes to `debug`, since
/// a steady-state reconcile only reads.
fn log_call(
    service: Service,
    operation: &'static str,
    object: &str,
    attempts: u32,
    error: Option<&AwsError>,
) {
    let outcome = error.map_or("ok", AwsError::kind);
    match error {
        _ if is_read(operation) => {
            tracing::debug!(%service, operation, object, outcome, attempts, "read AWS");
        }
        None => tracing::info!(%service, operation, object, attempts, "changed AWS"),
        Some(error) => {
            tracing::info!(%service, operation, object, outcome, attempts, %error, "AWS change failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spends_its_burst_then_paces() {
        let bucket = TokenBucket::new(5.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let paced = start.elapsed().as_secs_f64();
        assert!(
            (paced - 2.0).abs() < 0.01,
            "10 more at 5/s take 2 s, took {paced}"
        );
    }

    /// A caller that waits for a token is served before one that came later, even
    /// when the latecomer asks at the very instant the token is due (it then used
    /// to take it, and a caller could lose that race for ever).
    #[tokio::test(start_paused = true)]
    async fn tokens_go_to_callers_in_the_order_they_asked() {
        let bucket = Arc::new(TokenBucket::new(1.0, 1));
        bucket.acquire().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let task = |name: &'static str, delay: Duration| {
            let (bucket, order) = (bucket.clone(), order.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                bucket.acquire().await;
                order
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(name);
            })
        };
        // The latecomer's timer is set first, so it fires first at t = 1 s.
        let late = task("late", Duration::from_secs(1));
        tokio::task::yield_now().await;
        let early = task("early", Duration::ZERO);
        let _ = early.await;
        let _ = late.await;
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(order, ["early", "late"], "served in the order they asked");
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_bucket_allows_one_call_per_interval() {
        let bucket = TokenBucket::every(Duration::from_secs(5));
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (elapsed - 10.0).abs() < 0.01,
            "3 calls at 1/5 s take 10 s, took {elapsed}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_its_burst() {
        let bucket = TokenBucket::new(1.0, 2);
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (elapsed - 1.0).abs() < 0.01,
            "burst of 2 then one wait of 1 s, took {elapsed}"
        );
    }

    /// The defaults are at or just under AWS's published quotas: never above (AWS
    /// would throttle), and not so far under that the operator is the bottleneck.
    #[test]
    fn default_limits_are_just_under_aws_quotas() {
        let limits = RateLimits::default();
        let close = |(rate, burst): (f64, u32), (quota, quota_burst): (f64, u32), what: &str| {
            assert!(
                rate <= quota + 1e-9 && burst <= quota_burst,
                "{what}: {rate}/s burst {burst} exceeds {quota}/s burst {quota_burst}"
            );
            assert!(
                rate >= 0.9 * quota && f64::from(burst) >= (0.9 * f64::from(quota_burst)).floor(),
                "{what}: {rate}/s burst {burst} is far under {quota}/s burst {quota_burst}"
            );
        };
        close(
            limits.services[&Service::ApiGateway],
            APIGATEWAY_TOTAL,
            "API Gateway total",
        );
        close(
            limits.services[&Service::Route53],
            ROUTE53_TOTAL,
            "Route 53",
        );
        for quota in APIGATEWAY_QUOTAS {
            let Some(bucket) = limits
                .operations
                .get(&(Service::ApiGateway, quota.operation))
            else {
                panic!("{}: no bucket for its quota", quota.operation);
            };
            close(*bucket, (quota.rate(), quota.calls), quota.operation);
        }
        let all = RateLimits::with_share(1.0);
        assert_eq!(all.services[&Service::ApiGateway], APIGATEWAY_TOTAL);
        assert_eq!(
            all.operations[&(Service::ApiGateway, "CreateDeployment")],
            (0.2, 1)
        );
    }

    #[test]
    fn the_floor_is_the_slowest_bucket_after_its_burst_plus_one_deployment() {
        let calls = |entries: &[(&str, u64)]| -> BTreeMap<String, u64> {
            entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        let cases = [
            // Within every burst: only the deployment's wait.
            (
                "burst only",
                calls(&[("PutMethod", 30), ("CreateDeployment", 1)]),
                "total",
                5.0,
            ),
            // 1,010 calls: 970 at 10/s after a burst of 40.
            (
                "total",
                calls(&[("PutMethod", 1000), ("CreateDeployment", 10)]),
                "total",
                102.0,
            ),
            // 205 GetResources at 2.5/s after 5: 80 s, over the total's 16.5 s.
            (
                "GetResources",
                calls(&[("GetResources", 205)]),
                "GetResources",
                85.0,
            ),
            // 30 deployments: the 30th 145 s after the first.
            (
                "deployments",
                calls(&[("CreateDeployment", 30)]),
                "CreateDeployment",
                150.0,
            ),
        ];
        for (name, calls, binding, seconds) in cases {
            let floor = api_gateway_floor(&calls);
            assert_eq!(floor.terms[0].bucket, binding, "{name}: {floor:?}");
            assert!(
                (floor.seconds - seconds).abs() < 1e-6,
                "{name}: {} s, expected {seconds} s",
                floor.seconds
            );
        }
    }

    /// The quota of one service's operation does not slow another service's
    /// operation of the same name.
    #[tokio::test(start_paused = true)]
    async fn operation_buckets_are_per_service() {
        let mut limits = RateLimits::unlimited();
        limits
            .operations
            .insert((Service::Logs, "ListTagsForResource"), (0.1, 1));
        let caller = Caller::new(&limits, RetryPolicy::default());
        let start = Instant::now();
        for _ in 0..3 {
            let answer: Result<(), AwsError> = caller
                .call(Service::Acm, "ListTagsForResource", "arn", || async {
                    Ok::<
                        (),
                        SdkError<aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError, Response>,
                    >(())
                })
                .await;
            assert!(answer.is_ok());
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
