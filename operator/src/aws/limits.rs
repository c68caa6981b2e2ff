//! Client-side rate limits and retries for AWS control planes.
//!
//! AWS control planes allow few requests per second per account (Route 53: 5; API
//! Gateway: 10 with a burst of 40 in all, and tighter per-operation quotas such as
//! `CreateDeployment` once per 5 s and `CreateDomainName` once per 30 s, see
//! [`RateLimits::default`]). Every call goes through [`Caller::call`], which waits for a token of its
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
/// Defaults follow AWS's published control-plane quotas, slightly under them because
/// other tools in the same account share those quotas.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Per service: (requests per second, burst).
    pub services: HashMap<Service, (f64, u32)>,
    /// Per service and operation: (requests per second, burst), on top of the
    /// service's bucket.
    pub operations: HashMap<(Service, &'static str), (f64, u32)>,
}

/// `calls` requests per `seconds`, all of them usable at once.
fn per(calls: u32, seconds: f64) -> (f64, u32) {
    (f64::from(calls) / seconds, calls)
}

/// API Gateway's fixed per-account quotas for creating, deploying and managing APIs
/// (developer guide, "Amazon API Gateway quotas", the table "API Gateway quotas for
/// creating, deploying and managing an API"); they cannot be raised. Operations the
/// operator never calls (PutRestApi, UpdateAccount) are listed too, so that adding a
/// call cannot forget its quota.
const APIGATEWAY_OPERATION_QUOTAS: [(&str, u32, f64); 14] = [
    ("CreateApiKey", 5, 1.0),
    ("CreateDeployment", 1, 5.0),
    ("CreateDomainName", 1, 30.0),
    ("CreateResource", 5, 1.0),
    // Regional (and private) APIs; edge-optimized ones are 1 per 30 s.
    ("CreateRestApi", 1, 3.0),
    ("DeleteApiKey", 5, 1.0),
    ("DeleteDomainName", 1, 30.0),
    ("DeleteResource", 5, 1.0),
    ("DeleteRestApi", 1, 30.0),
    ("GetResources", 5, 2.0),
    ("PutRestApi", 1, 1.0),
    ("UpdateAccount", 1, 20.0),
    ("UpdateDomainName", 1, 30.0),
    ("UpdateUsagePlan", 1, 20.0),
];

impl Default for RateLimits {
    fn default() -> Self {
        let mut operations: HashMap<(Service, &'static str), (f64, u32)> =
            APIGATEWAY_OPERATION_QUOTAS
                .iter()
                .map(|(operation, calls, seconds)| {
                    ((Service::ApiGateway, *operation), per(*calls, *seconds))
                })
                .collect();
        operations.insert((Service::Acm, "RequestCertificate"), per(1, 0.2));
        Self {
            services: HashMap::from([
                (Service::Route53, (4.0, 5)),
                // "Total operations: 10 requests per second, burst 40" per account.
                (Service::ApiGateway, (8.0, 32)),
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
}

impl RateLimits {
    /// No waiting at all, for tests against an emulator.
    pub fn unlimited() -> Self {
        Self {
            services: HashMap::new(),
            operations: HashMap::new(),
        }
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
            if let Some(bucket) = self.services.get(&service) {
                bucket.acquire().await;
            }
            if let Some(bucket) = self.operations.get(&(service, operation)) {
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

    #[test]
    fn default_limits_stay_under_aws_quotas() {
        let limits = RateLimits::default();
        assert!(limits.services[&Service::Route53].0 <= 5.0);
        let (rate, burst) = limits.services[&Service::ApiGateway];
        assert!(rate <= 10.0 && burst <= 40, "aggregate 10 rps, burst 40");
    }

    /// Every published API Gateway control-plane quota (developer guide, quotas
    /// table), as (operation, calls, per seconds): the bucket never allows more.
    #[test]
    fn every_api_gateway_operation_quota_is_modelled() {
        let published = [
            ("PutRestApi", 1, 1.0),
            ("CreateRestApi", 1, 3.0),
            ("CreateDeployment", 1, 5.0),
            ("CreateDomainName", 1, 30.0),
            ("DeleteDomainName", 1, 30.0),
            ("UpdateDomainName", 1, 30.0),
            ("DeleteRestApi", 1, 30.0),
            ("CreateResource", 5, 1.0),
            ("DeleteResource", 5, 1.0),
            ("GetResources", 5, 2.0),
            ("CreateApiKey", 5, 1.0),
            ("DeleteApiKey", 5, 1.0),
            ("UpdateUsagePlan", 1, 20.0),
            ("UpdateAccount", 1, 20.0),
        ];
        let limits = RateLimits::default();
        for (operation, calls, seconds) in published {
            let Some((rate, burst)) = limits.operations.get(&(Service::ApiGateway, operation))
            else {
                panic!("{operation}: no bucket for its quota of {calls} per {seconds} s");
            };
            assert!(
                *rate <= f64::from(calls) / seconds + 1e-9 && *burst <= calls,
                "{operation}: {rate}/s burst {burst} exceeds {calls} per {seconds} s"
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
