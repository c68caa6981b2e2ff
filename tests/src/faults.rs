//! AWS-shaped faults: a pass-through HTTP proxy on 127.0.0.1 in front of an emulator
//! that answers a chosen share of chosen operations with the errors AWS really
//! returns, or fails chosen entries inside `DeleteMessageBatch` and
//! `ChangeMessageVisibilityBatch` the way SQS does (the other entries are forwarded,
//! so the emulator really did not delete or change the failed ones).
//!
//! The binaries reach it through their normal endpoint setting (`AWS_ENDPOINT_URL`):
//! nothing in the product knows it is there. Each request is identified by service
//! (the SigV4 credential scope names it) and operation (`X-Amz-Target` for the JSON
//! protocols, method + path for API Gateway's REST-JSON and Route 53's REST-XML).
//!
//! Draws come from one RNG seeded from `HOOKLINE_FAULT_SEED` (or the clock); the
//! seed is printed when the proxy starts. Requests arrive concurrently, so a replay
//! repeats the same sequence of draws, not necessarily the same request for each.
//!
//! A batch whose entries were cut is forwarded with a body that no longer matches
//! its SigV4 signature; the emulators do not check signatures unless started with
//! `AUTH=true`, so fault tests do not use that mode.

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// An AWS service, as the proxy tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// SQS (AWS JSON 1.0, query-compatible).
    Sqs,
    /// API Gateway v1 (REST-JSON).
    ApiGateway,
    /// Route 53 (REST-XML).
    Route53,
    /// Certificate Manager (AWS JSON 1.1).
    Acm,
    /// Anything else (IAM, CloudWatch Logs, …): forwarded, never faulted.
    Other,
}

impl Service {
    /// The SigV4 signing name of the service.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqs => "sqs",
            Self::ApiGateway => "apigateway",
            Self::Route53 => "route53",
            Self::Acm => "acm",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the proxy answers instead of the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// SQS `RequestThrottled`: 403, sender fault.
    SqsRequestThrottled,
    /// SQS `ServiceUnavailable`: 503, receiver fault.
    SqsServiceUnavailable,
    /// API Gateway `TooManyRequestsException`: 429 with `Retry-After`.
    ApiGatewayTooManyRequests,
    /// API Gateway `LimitExceededException`: 429 ("rate limit exceeded").
    ApiGatewayLimitExceeded,
    /// Route 53 `Throttling`: 400, XML `ErrorResponse`, "Rate exceeded".
    Route53Throttling,
    /// ACM `ThrottlingException`: 400.
    AcmThrottling,
    /// Each entry of a `DeleteMessageBatch` / `ChangeMessageVisibilityBatch` fails
    /// with the rule's share, as `InternalError` in the answer's `Failed` list; the
    /// other entries reach the emulator.
    BatchEntryFailure,
}

impl Fault {
    /// The AWS error code the fault carries.
    pub fn code(self) -> &'static str {
        match self {
            Self::SqsRequestThrottled => "RequestThrottled",
            Self::SqsServiceUnavailable => "ServiceUnavailable",
            Self::ApiGatewayTooManyRequests => "TooManyRequestsException",
            Self::ApiGatewayLimitExceeded => "LimitExceededException",
            Self::Route53Throttling => "Throttling",
            Self::AcmThrottling => "ThrottlingException",
            Self::BatchEntryFailure => BATCH_ENTRY_CODE,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The code of a failed batch entry: a server-side failure (`SenderFault: false`),
/// which a client retries, unlike `ReceiptHandleIsInvalid`.
pub const BATCH_ENTRY_CODE: &str = "InternalError";

/// One rule: requests of `service` whose operation is in `operations` (all of the
/// service's when empty) get `fault` with probability `share`. Rules are tried in
/// order and the first that fires wins, so two rules on the same calls at 0.25 and
/// 0.05 fault 0.25 + 0.75 × 0.05 of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The service whose calls the rule faults.
    pub service: Service,
    /// Operation names (`ReceiveMessage`, `CreateDeployment`, …); empty = all.
    pub operations: Vec<String>,
    /// Probability, 0..=1, per request (per entry for [`Fault::BatchEntryFailure`]).
    pub share: f64,
    /// What to answer.
    pub fault: Fault,
}

impl Rule {
    /// A rule on `operations` of `service` (all of them when empty).
    pub fn new(service: Service, operations: &[&str], share: f64, fault: Fault) -> Self {
        Self {
            service,
            operations: operations.iter().map(|s| (*s).to_owned()).collect(),
            share: share.clamp(0.0, 1.0),
            fault,
        }
    }

    fn matches(&self, call: &Call) -> bool {
        self.service == call.service
            && (self.operations.is_empty() || self.operations.contains(&call.operation))
    }
}

/// A request as the proxy identified it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    /// The service called.
    pub service: Service,
    /// The operation, AWS's name where the proxy knows it, else `METHOD /pattern`.
    pub operation: String,
}

/// Counts by (service, operation) and by (service, operation, fault).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests seen.
    pub requests: BTreeMap<(Service, String), u64>,
    /// Faults injected: whole requests, or failed entries for batch faults.
    pub injected: BTreeMap<(Service, String, Fault), u64>,
}

impl Counts {
    /// Faults of `fault` injected, over all operations.
    pub fn of(&self, fault: Fault) -> u64 {
        self.injected
            .iter()
            .filter(|((_, _, f), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    /// Faults injected into `service`'s calls.
    pub fn service(&self, service: Service) -> u64 {
        self.injected
            .iter()
            .filter(|((s, _, _), _)| *s == service)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests seen of `service`.
    pub fn requests_of(&self, service: Service) -> u64 {
        self.requests
            .iter()
            .filter(|((s, _), _)| *s == service)
            .map(|(_, n)| n)
            .sum()
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((service, operation, fault), n) in &self.injected {
            let seen = self
                .requests
                .get(&(*service, operation.clone()))
                .copied()
                .unwrap_or(0);
            writeln!(
                f,
                "  {service} {operation}: {n} × {fault} (of {seen} requests)"
            )?;
        }
        Ok(())
    }
}

struct Inner {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    rules: Mutex<Vec<Rule>>,
    rng: Mutex<fastrand::Rng>,
    counts: Mutex<Counts>,
    request_ids: AtomicU64,
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    inner: Arc<Inner>,
    endpoint: String,
    seed: u64,
    server: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.inner.upstream)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The seed of this run: `HOOKLINE_FAULT_SEED` when set, else from the clock.
pub fn seed() -> u64 {
    std::env::var("HOOKLINE_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream` (`http://127.0.0.1:port`)
    /// with `rules`, seeded by [`seed`]; prints the seed.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> Result<Self> {
        Self::start_seeded(upstream, rules, seed()).await
    }

    /// [`FaultProxy::start`] with an explicit seed.
    pub async fn start_seeded(upstream: &str, rules: Vec<Rule>, seed: u64) -> Result<Self> {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Mutex::new(rules),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            counts: Mutex::default(),
            request_ids: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fault proxy on 127.0.0.1")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the fault proxy stopped");
            }
        });
        eprintln!(
            "fault proxy {endpoint} -> {upstream}: seed {seed} (replay with HOOKLINE_FAULT_SEED={seed})"
        );
        Ok(Self {
            inner,
            endpoint,
            seed,
            server,
        })
    }

    /// The endpoint to give the binaries (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The seed of the draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Replaces the rules (an empty list makes the proxy a plain pass-through).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self
            .inner
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = rules;
    }

    /// What the proxy saw and injected so far.
    pub fn counts(&self) -> Counts {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    match inner.handle(request).await {
        Ok(response) => response,
        Err(e) => {
            // The client sees a gateway failure, as through any broken proxy; the
            // test's log says why.
            tracing::warn!(error = format!("{e:#}"), "fault proxy: forwarding failed");
            let mut response = Response::new(Body::from(format!("fault proxy: {e:#}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// A decision for one request.
#[derive(Debug, PartialEq)]
enum Decision {
    Forward,
    Answer(Fault),
    /// Fail these entry ids of a batch, forward the rest.
    FailEntries(Vec<String>),
}

impl Inner {
    async fn handle(&self, request: Request) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the request body")?
            .to_bytes();
        let call = identify(&parts.method, parts.uri.path(), &parts.headers, &body);
        self.count(|c| {
            *c.requests
                .entry((call.service, call.operation.clone()))
                .or_default() += 1;
        });
        match self.decide(&call, &body) {
            Decision::Forward => self.forward(&parts, body).await,
            Decision::Answer(fault) => {
                self.count(|c| {
                    *c.injected
                        .entry((call.service, call.operation.clone(), fault))
                        .or_default() += 1;
                });
                Ok(answer(fault, &self.request_id()))
            }
            Decision::FailEntries(ids) => {
                self.count(|c| {
                    *c.injected
                        .entry((
                            call.service,
                            call.operation.clone(),
                            Fault::BatchEntryFailure,
                        ))
                        .or_default() += ids.len() as u64;
                });
                self.forward_batch(&parts, &body, &ids).await
            }
        }
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner));
    }

    fn request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    fn decide(&self, call: &Call, body: &[u8]) -> Decision {
        let rules = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        for rule in rules.iter().filter(|r| r.matches(call)) {
            if rule.fault == Fault::BatchEntryFailure {
                if !is_batch(call) {
                    continue;
                }
                let failed: Vec<String> = batch_ids(body)
                    .into_iter()
                    .filter(|_| rng.f64() < rule.share)
                    .collect();
                if !failed.is_empty() {
                    return Decision::FailEntries(failed);
                }
            } else if rng.f64() < rule.share {
                return Decision::Answer(rule.fault);
            }
        }
        Decision::Forward
    }

    async fn forward(&self, parts: &http::request::Parts, body: Bytes) -> Result<Response> {
        let (status, headers, body) = self.send_upstream(parts, body).await?;
        Ok(response(status, headers, body))
    }

    async fn send_upstream(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = http::Request::builder()
            .method(parts.method.clone())
            .uri(format!("{}{path}", self.upstream));
        for (name, value) in &parts.headers {
            if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
                request = request.header(name, value);
            }
        }
        let request = request
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .context("building the upstream request")?;
        let response = self
            .client
            .request(request)
            .await
            .with_context(|| format!("forwarding to {}", self.upstream))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the upstream answer")?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Forwards the batch without `failed`, then answers with the emulator's result
    /// plus `failed` in `Failed`.
    async fn forward_batch(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        failed: &[String],
    ) -> Result<Response> {
        let mut request: Value = serde_json::from_slice(body).context("parsing the batch")?;
        let entries = request
            .get_mut("Entries")
            .and_then(Value::as_array_mut)
            .context("a batch without Entries")?;
        entries.retain(|e| {
            !e.get("Id")
                .and_then(Value::as_str)
                .is_some_and(|id| failed.iter().any(|f| f == id))
        });
        let mut answer = if entries.is_empty() {
            // SQS refuses an empty batch; a real SQS answering "all failed" never
            // asked anyone, so neither does the proxy.
            json!({"Successful": [], "Failed": []})
        } else {
            let (status, headers, upstream) = self
                .send_upstream(parts, Bytes::from(serde_json::to_vec(&request)?))
                .await?;
            if !status.is_success() {
                return Ok(response(status, headers, upstream));
            }
            serde_json::from_slice(&upstream).context("parsing the emulator's batch answer")?
        };
        let list = answer
            .as_object_mut()
            .context("a batch answer that is no object")?
            .entry("Failed")
            .or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.extend(failed.iter().map(|id| failed_entry(id)));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        insert_request_id(&mut headers, &self.request_id());
        Ok(response(
            StatusCode::OK,
            headers,
            Bytes::from(serde_json::to_vec(&answer)?),
        ))
    }
}

/// One entry of a batch answer's `Failed` list, as SQS writes it for a failure of
/// its own.
pub fn failed_entry(id: &str) -> Value {
    json!({
        "Id": id,
        "SenderFault": false,
        "Code": BATCH_ENTRY_CODE,
        "Message": "We encountered an internal error. Please try again.",
    })
}

fn is_batch(call: &Call) -> bool {
    call.service == Service::Sqs
        && matches!(
            call.operation.as_str(),
            "DeleteMessageBatch" | "ChangeMessageVisibilityBatch"
        )
}

fn batch_ids(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("Entries").and_then(Value::as_array).map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| e.get("Id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn response(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH
            && name != http::header::TRANSFER_ENCODING
            && name != http::header::CONNECTION
        {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

fn insert_request_id(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert("x-amzn-requestid", value);
    }
}

/// The answer AWS gives for `fault`: status, headers and body in the protocol of
/// the service (see docs/emulators.md, "Fault proxy", for the sources).
pub fn answer(fault: Fault, request_id: &str) -> Response {
    let mut headers = HeaderMap::new();
    insert_request_id(&mut headers, request_id);
    let json = |headers: &mut HeaderMap, content_type: &'static str| {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
    };
    let (status, body) = match fault {
        // SQS speaks AWS JSON 1.0 with the awsQueryCompatible trait: `__type` is the
        // shape id, and `x-amzn-query-error` carries the query protocol's code and
        // fault, which the SDKs prefer as the error code.
        // BatchEntryFailure is answered per entry by `forward_batch`; a whole request
        // never carries it, so here it stands for what a whole batch would get when
        // SQS fails it: ServiceUnavailable.
        Fault::SqsRequestThrottled | Fault::SqsServiceUnavailable | Fault::BatchEntryFailure => {
            json(&mut headers, "application/x-amz-json-1.0");
            let (status, kind, message) = match fault {
                Fault::SqsRequestThrottled => {
                    (StatusCode::FORBIDDEN, "Sender", "Request is throttled.")
                }
                _ => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Receiver",
                    "The request has failed due to a temporary failure of the server.",
                ),
            };
            let code = if fault == Fault::BatchEntryFailure {
                "ServiceUnavailable"
            } else {
                fault.code()
            };
            if let Ok(value) = HeaderValue::from_str(&format!("{code};{kind}")) {
                headers.insert("x-amzn-query-error", value);
            }
            (
                status,
                json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message})
                    .to_string(),
            )
        }
        // API Gateway (REST-JSON): the code in `x-amzn-ErrorType`, the message in the
        // body; TooManyRequestsException binds `retryAfterSeconds` to `Retry-After`.
        Fault::ApiGatewayTooManyRequests | Fault::ApiGatewayLimitExceeded => {
            json(&mut headers, "application/json");
            headers.insert("x-amzn-errortype", HeaderValue::from_static(fault.code()));
            let message = if fault == Fault::ApiGatewayTooManyRequests {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                "Too Many Requests"
            } else {
                "Rate exceeded"
            };
            (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": message}).to_string(),
            )
        }
        // Route 53 (REST-XML): 400 and an ErrorResponse document.
        Fault::Route53Throttling => {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml"),
            );
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
                ),
            )
        }
        // ACM (AWS JSON 1.1).
        Fault::AcmThrottling => {
            json(&mut headers, "application/x-amz-json-1.1");
            (
                StatusCode::BAD_REQUEST,
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
            )
        }
    };
    response(status, headers, Bytes::from(body))
}

/// Names the service and operation of a request.
pub fn identify(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Call {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let target = header("x-amz-target");
    // `Credential=AKID/date/region/service/aws4_request`.
    let scope = header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3));
    let service = match (scope, target) {
        (Some("sqs"), _) => Service::Sqs,
        (Some("apigateway"), _) => Service::ApiGateway,
        (Some("route53"), _) => Service::Route53,
        (Some("acm"), _) => Service::Acm,
        (Some(_), _) => Service::Other,
        (None, Some(t)) if t.starts_with("AmazonSQS.") => Service::Sqs,
        (None, Some(t)) if t.starts_with("CertificateManager.") => Service::Acm,
        (None, _) if path.starts_with("/2013-04-01/") => Service::Route53,
        (None, _) => Service::Other,
    };
    let operation = match (service, target) {
        (_, Some(t)) => t.rsplit('.').next().unwrap_or(t).to_owned(),
        (Service::ApiGateway, None) => api_gateway_operation(method, path),
        (Service::Route53, None) => route53_operation(method, path),
        // The query protocol (IAM, older SQS clients): `Action=…` in the form body.
        _ => String::from_utf8_lossy(body)
            .split('&')
            .find_map(|p| p.strip_prefix("Action="))
            .map_or_else(|| rest_pattern(method, path), str::to_owned),
    };
    Call { service, operation }
}

/// `METHOD /a/*/b`: the path with its ids starred, for operations without a name here.
fn rest_pattern(method: &Method, path: &str) -> String {
    let starred: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .enumerate()
        .map(|(i, s)| if i % 2 == 1 { "*" } else { s })
        .collect();
    format!("{method} /{}", starred.join("/"))
}

fn route53_operation(method: &Method, path: &str) -> String {
    let rest = path.strip_prefix("/2013-04-01/").unwrap_or(path);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let name = match (method.as_str(), segments.as_slice()) {
        ("POST", ["hostedzone"]) => "CreateHostedZone",
        ("GET", ["hostedzone"]) => "ListHostedZones",
        ("GET", ["hostedzonesbyname"]) => "ListHostedZonesByName",
        ("GET", ["hostedzone", _]) => "GetHostedZone",
        ("DELETE", ["hostedzone", _]) => "DeleteHostedZone",
        ("POST", ["hostedzone", _]) => "UpdateHostedZoneComment",
        ("POST", ["hostedzone", _, "rrset"]) => "ChangeResourceRecordSets",
        ("GET", ["hostedzone", _, "rrset"]) => "ListResourceRecordSets",
        ("GET", ["change", _]) => "GetChange",
        ("GET", ["tags", _, _]) => "ListTagsForResource",
        ("POST", ["tags", _, _]) => "ChangeTagsForResource",
        _ => return rest_pattern(method, path),
    };
    name.to_owned()
}

/// API Gateway v1 operations from their REST paths: collections (`restapis`,
/// `resources`, …) are followed by an id; `integration` is a singleton; `responses`
/// belongs to a method or to its integration.
fn api_gateway_operation(method: &Method, path: &str) -> String {
    const NOUNS: &[(&str, &str, &str)] = &[
        ("restapis", "RestApi", "RestApis"),
        ("resources", "Resource", "Resources"),
        ("methods", "Method", "Methods"),
        ("deployments", "Deployment", "Deployments"),
        ("stages", "Stage", "Stages"),
        ("domainnames", "DomainName", "DomainNames"),
        ("basepathmappings", "BasePathMapping", "BasePathMappings"),
        ("authorizers", "Authorizer", "Authorizers"),
        ("apikeys", "ApiKey", "ApiKeys"),
        ("usageplans", "UsagePlan", "UsagePlans"),
        ("keys", "UsagePlanKey", "UsagePlanKeys"),
        ("models", "Model", "Models"),
        ("requestvalidators", "RequestValidator", "RequestValidators"),
        ("gatewayresponses", "GatewayResponse", "GatewayResponses"),
    ];
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segments.first() == Some(&"tags") {
        return match method.as_str() {
            "GET" => "GetTags",
            "PUT" => "TagResource",
            "DELETE" => "UntagResource",
            _ => return rest_pattern(method, path),
        }
        .to_owned();
    }
    let mut noun: Option<(String, String)> = None;
    let mut ends_on_one = false;
    let mut previous = "";
    let mut i = 0;
    // Bounded: each turn consumes one or two segments.
    while i < segments.len() {
        let segment = segments[i];
        if segment == "integration" || segment == "account" {
            let single = if segment == "account" {
                "Account"
            } else {
                "Integration"
            };
            noun = Some((single.to_owned(), single.to_owned()));
            ends_on_one = true;
            previous = segment;
            i += 1;
            continue;
        }
        let Some((_, single, plural)) = NOUNS
            .iter()
            .copied()
            .chain(std::iter::once(("responses", "Response", "Responses")))
            .find(|(n, _, _)| *n == segment)
        else {
            return rest_pattern(method, path);
        };
        let (single, plural) = if segment == "responses" {
            let owner = if previous == "integration" {
                "Integration"
            } else {
                "Method"
            };
            (format!("{owner}{single}"), format!("{owner}{plural}"))
        } else {
            (single.to_owned(), plural.to_owned())
        };
        noun = Some((single, plural));
        ends_on_one = i + 1 < segments.len();
        previous = segment;
        i += 2;
    }
    let Some((single, plural)) = noun else {
        return rest_pattern(method, path);
    };
    match (method.as_str(), ends_on_one) {
        ("GET", true) => format!("Get{single}"),
        ("GET", false) => format!("Get{plural}"),
        ("POST", _) => format!("Create{single}"),
        ("PUT", _) => format!("Put{single}"),
        ("PATCH", _) => format!("Update{single}"),
        ("DELETE", _) => format!("Delete{single}"),
        _ => rest_pattern(method, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(service: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!(
                "AWS4-HMAC-SHA256 Credential=test/20261202/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
            ))
            .unwrap(),
        );
        headers
    }

    fn op(service: &str, method: &str, path: &str) -> Call {
        identify(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            path,
            &signed(service),
            b"",
        )
    }

    #[test]
    fn api_gateway_operations_are_named_from_their_paths() {
        let cases = [
            ("GET", "/restapis", "GetRestApis"),
            ("POST", "/restapis", "CreateRestApi"),
            ("GET", "/restapis/abc", "GetRestApi"),
            ("PATCH", "/restapis/abc", "UpdateRestApi"),
            ("DELETE", "/restapis/abc", "DeleteRestApi"),
            ("GET", "/restapis/abc/resources", "GetResources"),
            ("POST", "/restapis/abc/resources/root", "CreateResource"),
            ("DELETE", "/restapis/abc/resources/r1", "DeleteResource"),
            (
                "PUT",
                "/restapis/abc/resources/r1/methods/POST",
                "PutMethod",
            ),
            (
                "GET",
                "/restapis/abc/resources/r1/methods/POST",
                "GetMethod",
            ),
            (
                "PUT",
                "/restapis/abc/resources/r1/methods/POST/integration",
                "PutIntegration",
            ),
            (
                "PUT",
                "/restapis/abc/resources/r1/methods/POST/responses/200",
                "PutMethodResponse",
            ),
            (
                "PUT",
                "/restapis/abc/resources/r1/methods/POST/integration/responses/200",
                "PutIntegrationResponse",
            ),
            ("POST", "/restapis/abc/deployments", "CreateDeployment"),
            ("GET", "/restapis/abc/deployments", "GetDeployments"),
            ("DELETE", "/restapis/abc/deployments/d1", "DeleteDeployment"),
            ("GET", "/restapis/abc/stages/live", "GetStage"),
            ("PATCH", "/restapis/abc/stages/live", "UpdateStage"),
            ("POST", "/restapis/abc/stages", "CreateStage"),
            ("GET", "/domainnames/hooks.example.com", "GetDomainName"),
            ("POST", "/domainnames", "CreateDomainName"),
            (
                "POST",
                "/domainnames/hooks.example.com/basepathmappings",
                "CreateBasePathMapping",
            ),
            (
                "GET",
                "/domainnames/hooks.example.com/basepathmappings",
                "GetBasePathMappings",
            ),
            ("GET", "/restapis/abc/authorizers", "GetAuthorizers"),
            ("PATCH", "/account", "UpdateAccount"),
            ("GET", "/tags/arn%3Aaws%3Aapigateway", "GetTags"),
            ("PUT", "/tags/arn%3Aaws%3Aapigateway", "TagResource"),
        ];
        for (method, path, expected) in cases {
            let call = op("apigateway", method, path);
            assert_eq!(call.service, Service::ApiGateway);
            assert_eq!(call.operation, expected, "{method} {path}");
        }
    }

    #[test]
    fn route53_and_json_operations_are_named() {
        let cases = [
            (
                "POST",
                "/2013-04-01/hostedzone/Z1/rrset",
                "ChangeResourceRecordSets",
            ),
            (
                "POST",
                "/2013-04-01/hostedzone/Z1/rrset/",
                "ChangeResourceRecordSets",
            ),
            (
                "GET",
                "/2013-04-01/hostedzone/Z1/rrset",
                "ListResourceRecordSets",
            ),
            (
                "GET",
                "/2013-04-01/hostedzonesbyname",
                "ListHostedZonesByName",
            ),
            ("GET", "/2013-04-01/change/C1", "GetChange"),
            ("GET", "/2013-04-01/hostedzone/Z1", "GetHostedZone"),
        ];
        for (method, path, expected) in cases {
            let call = op("route53", method, path);
            assert_eq!(call.service, Service::Route53);
            assert_eq!(call.operation, expected, "{method} {path}");
        }
        let mut headers = signed("sqs");
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.DeleteMessageBatch"),
        );
        let call = identify(&Method::POST, "/", &headers, b"{}");
        assert_eq!(
            call,
            Call {
                service: Service::Sqs,
                operation: "DeleteMessageBatch".to_owned()
            }
        );
        // Unsigned (as some health checks are): the target still names SQS.
        let mut unsigned = HeaderMap::new();
        unsigned.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.ReceiveMessage"),
        );
        assert_eq!(
            identify(&Method::POST, "/", &unsigned, b"").service,
            Service::Sqs
        );
        let iam = identify(
            &Method::POST,
            "/",
            &signed("iam"),
            b"Action=CreateRole&Version=2010-05-08",
        );
        assert_eq!(
            (iam.service, iam.operation.as_str()),
            (Service::Other, "CreateRole")
        );
    }

    async fn body_of(response: Response) -> (StatusCode, HeaderMap, Value) {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, value)
    }

    #[tokio::test]
    async fn answers_carry_each_protocols_status_headers_and_body() {
        let (status, headers, body) = body_of(answer(Fault::SqsRequestThrottled, "r1")).await;
        assert_eq!(status, 403);
        assert_eq!(headers["x-amzn-query-error"], "RequestThrottled;Sender");
        assert_eq!(headers["content-type"], "application/x-amz-json-1.0");
        assert_eq!(body["__type"], "com.amazonaws.sqs#RequestThrottled");

        let (status, headers, _) = body_of(answer(Fault::SqsServiceUnavailable, "r2")).await;
        assert_eq!(status, 503);
        assert_eq!(headers["x-amzn-query-error"], "ServiceUnavailable;Receiver");

        let (status, headers, body) = body_of(answer(Fault::ApiGatewayTooManyRequests, "r3")).await;
        assert_eq!(status, 429);
        assert_eq!(headers["x-amzn-errortype"], "TooManyRequestsException");
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(body["message"], "Too Many Requests");

        let (status, headers, _) = body_of(answer(Fault::ApiGatewayLimitExceeded, "r4")).await;
        assert_eq!(status, 429);
        assert_eq!(headers["x-amzn-errortype"], "LimitExceededException");

        let (status, headers, body) = body_of(answer(Fault::Route53Throttling, "r5")).await;
        assert_eq!(status, 400);
        assert_eq!(headers["content-type"], "text/xml");
        let xml = body.as_str().unwrap();
        assert!(xml.contains("<Code>Throttling</Code>"), "{xml}");
        assert!(xml.contains("<RequestId>r5</RequestId>"), "{xml}");
    }

    #[test]
    fn shares_are_drawn_from_the_seed_and_batches_lose_only_chosen_entries() {
        let batch = br#"{"QueueUrl":"q","Entries":[{"Id":"0","ReceiptHandle":"a"},{"Id":"1","ReceiptHandle":"b"},{"Id":"2","ReceiptHandle":"c"}]}"#;
        let call = Call {
            service: Service::Sqs,
            operation: "DeleteMessageBatch".to_owned(),
        };
        let decide = |seed: u64| {
            let inner = Inner {
                upstream: String::new(),
                client: Client::builder(TokioExecutor::new()).build_http(),
                rules: Mutex::new(vec![Rule::new(
                    Service::Sqs,
                    &["DeleteMessageBatch"],
                    0.5,
                    Fault::BatchEntryFailure,
                )]),
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                counts: Mutex::default(),
                request_ids: AtomicU64::new(0),
            };
            (0..20)
                .map(|_| inner.decide(&call, batch))
                .collect::<Vec<_>>()
        };
        let first = decide(7);
        assert_eq!(first, decide(7), "the same seed draws the same");
        assert!(first.iter().any(|d| matches!(d, Decision::FailEntries(_))));
        assert!(first.contains(&Decision::Forward));
        for d in &first {
            if let Decision::FailEntries(ids) = d {
                assert!(ids.iter().all(|id| ["0", "1", "2"].contains(&id.as_str())));
            }
        }
        // A fault rule does not apply to another operation.
        let receive = Call {
            service: Service::Sqs,
            operation: "ReceiveMessage".to_owned(),
        };
        let inner = Inner {
            upstream: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            rules: Mutex::new(vec![Rule::new(
                Service::Sqs,
                &["DeleteMessageBatch"],
                1.0,
                Fault::SqsRequestThrottled,
            )]),
            rng: Mutex::new(fastrand::Rng::with_seed(1)),
            counts: Mutex::default(),
            request_ids: AtomicU64::new(0),
        };
        assert_eq!(inner.decide(&receive, b""), Decision::Forward);
        assert_eq!(
            inner.decide(&call, batch),
            Decision::Answer(Fault::SqsRequestThrottled)
        );
    }
}
