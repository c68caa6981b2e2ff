//! Shared pieces of the worker's tests: queue pairs on MiniStack, a real HTTP
//! handler (axum) that records what it receives, and bounded waiting.

#![allow(dead_code)] // each test binary uses its own subset

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hookline_tests::Bench;
pub use hookline_tests::util::wait_for;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static QUEUE_SEQ: AtomicU32 = AtomicU32::new(0);

pub async fn sqs() -> Result<aws_sdk_sqs::Client> {
    let bench = Bench::shared().await?;
    Ok(aws_sdk_sqs::Client::new(&bench.aws.sdk_config().await))
}

/// A FIFO queue and its FIFO dead-letter queue, named uniquely for this test.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub url: String,
    pub dlq_url: String,
}

impl QueuePair {
    pub async fn create(
        sqs: &aws_sdk_sqs::Client,
        name: &str,
        max_receive_count: u32,
        visibility_seconds: u32,
    ) -> Result<Self> {
        let base = format!(
            "{name}-{}-{}",
            std::process::id(),
            QUEUE_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dlq_url = sqs
            .create_queue()
            .queue_name(format!("{base}-dlq.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .context("creating the dead-letter queue")?
            .queue_url
            .context("no DLQ URL")?;
        let dlq_arn = attribute(sqs, &dlq_url, QueueAttributeName::QueueArn).await?;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count});
        let url = sqs
            .create_queue()
            .queue_name(format!("{base}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_seconds.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .context("creating the queue")?
            .queue_url
            .context("no queue URL")?;
        Ok(Self { url, dlq_url })
    }
}

pub async fn attribute(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    name: QueueAttributeName,
) -> Result<String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .with_context(|| format!("reading {name} of {url}"))?
        .attributes
        .and_then(|mut a| a.remove(&name))
        .with_context(|| format!("{url} has no {name}"))
}

/// Visible + in-flight messages, from SQS's approximate counters.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(u64, u64)> {
    let visible = attribute(sqs, url, QueueAttributeName::ApproximateNumberOfMessages)
        .await?
        .parse()?;
    let in_flight = attribute(
        sqs,
        url,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    )
    .await?
    .parse()?;
    Ok((visible, in_flight))
}

pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    group: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<()> {
    send_with_dedup(sqs, url, group, body, headers, None).await
}

/// Sends with an explicit deduplication id (the body), for queues without
/// content-based deduplication such as the dead-letter queue.
pub async fn send_dedup(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    group: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<()> {
    send_with_dedup(sqs, url, group, body, headers, Some(body)).await
}

async fn send_with_dedup(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    group: &str,
    body: &str,
    headers: &[(&str, &str)],
    dedup: Option<&str>,
) -> Result<()> {
    sqs.send_message()
        .queue_url(url)
        .message_group_id(group)
        .set_message_deduplication_id(dedup.map(str::to_owned))
        .message_body(body)
        .set_message_attributes(Some(hookline_worker::wire::header_attributes(headers)))
        .send()
        .await
        .with_context(|| format!("sending {body} to group {group}"))?;
    Ok(())
}

/// Everything in a queue, received and then deleted, as (group, body, attributes).
pub async fn drain_bodies(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Vec<(String, String, HashMap<String, String>)>> {
    let mut all = Vec::new();
    let received =
        hookline_tests::util::receive_all(sqs, url, 50, hookline_tests::util::AfterReceive::Delete)
            .await?;
    for m in received {
        let group = m
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId).cloned())
            .unwrap_or_default();
        let attrs = m
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.string_value.map(|s| (k, s)))
            .collect();
        all.push((group, m.body.unwrap_or_default(), attrs));
    }
    Ok(all)
}

/// One call the handler received.
#[derive(Debug, Clone)]
pub struct Call {
    pub group: String,
    pub body: String,
    pub message_id: String,
    pub receive_count: u32,
    pub headers: HeaderMap,
    /// When the request reached the handler, and when the handler answered.
    pub started: Instant,
    pub finished: Instant,
}

type Behaviour = dyn Fn(&Call, usize) -> (StatusCode, Option<u64>) + Send + Sync;
type RecorderState = (Arc<Mutex<Vec<Call>>>, Arc<Behaviour>, Duration);

/// A real HTTP handler on 127.0.0.1 that records every call and answers as told:
/// `behaviour(call, attempt)` returns the status and an optional `Retry-After`,
/// where `attempt` counts calls for the same body (1 on the first).
#[derive(Clone)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub url: String,
}

impl Recorder {
    pub async fn start(
        delay: Duration,
        behaviour: impl Fn(&Call, usize) -> (StatusCode, Option<u64>) + Send + Sync + 'static,
    ) -> Result<Self> {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let state = (calls.clone(), Arc::new(behaviour) as Arc<Behaviour>, delay);
        let app = Router::new().route("/hook", post(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { calls, url })
    }

    pub fn snapshot(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Bodies the handler accepted (2xx), per group, in the order accepted.
    pub fn accepted_by_group(
        &self,
        ok: impl Fn(&Call, usize) -> bool,
    ) -> HashMap<String, Vec<String>> {
        let mut attempts: HashMap<String, usize> = HashMap::new();
        let mut groups: HashMap<String, Vec<String>> = HashMap::new();
        for call in self.snapshot() {
            let n = attempts.entry(call.body.clone()).or_default();
            *n += 1;
            if ok(&call, *n) {
                groups
                    .entry(call.group.clone())
                    .or_default()
                    .push(call.body.clone());
            }
        }
        groups
    }
}

async fn record(
    State((calls, behaviour, delay)): State<RecorderState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let started = Instant::now();
    let mut call = Call {
        group: header("hookline-group-id"),
        body: String::from_utf8_lossy(&body).into_owned(),
        message_id: header("hookline-message-id"),
        receive_count: header("hookline-receive-count").parse().unwrap_or(0),
        headers: headers.clone(),
        started,
        finished: started,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    call.finished = Instant::now();
    let attempt = {
        let mut calls = calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        calls.push(call.clone());
        calls.iter().filter(|c| c.body == call.body).count()
    };
    let (status, retry_after) = behaviour(&call, attempt);
    let mut out = HeaderMap::new();
    if let Some(seconds) = retry_after {
        out.insert("retry-after", seconds.into());
    }
    (status, out)
}

/// Asserts each group's accepted bodies are `prefix-0, prefix-1, …` in order, counting
/// only first acceptances (a message may be handled again after a crash).
pub fn assert_in_order(groups: &HashMap<String, Vec<String>>, expected_per_group: usize) {
    for (group, bodies) in groups {
        let mut seen = Vec::new();
        for body in bodies {
            if !seen.contains(body) {
                seen.push(body.clone());
            }
        }
        let expected: Vec<String> = (0..expected_per_group)
            .map(|i| format!("{group}-{i}"))
            .collect();
        assert_eq!(seen, expected, "group {group} out of order or incomplete");
    }
}

/// What the handler saw of groups whose bodies are `<group>-<index>`, by call start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrderReport {
    /// Handler calls.
    pub calls: usize,
    /// Calls for a message the handler had already been given.
    pub duplicates: usize,
    /// Calls that started after a call for a later message of the same group.
    pub out_of_order: usize,
    /// Calls that started while another call of the same group was still running.
    pub overlapping: usize,
    /// Expected messages the handler never saw.
    pub lost: usize,
    /// What each out-of-order or overlapping call was, for the failure message.
    pub events: Vec<String>,
}

impl OrderReport {
    /// Reads `calls` against groups `groups` of `per_group` messages each.
    pub fn of(calls: &[Call], groups: &[String], per_group: usize) -> Self {
        let mut report = Self {
            calls: calls.len(),
            ..Self::default()
        };
        for group in groups {
            let mut mine: Vec<&Call> = calls.iter().filter(|c| &c.group == group).collect();
            mine.sort_by_key(|c| c.started);
            let mut seen = std::collections::HashSet::new();
            let mut highest: Option<usize> = None;
            let mut running_until: Option<Instant> = None;
            for call in &mine {
                let index: usize = call
                    .body
                    .strip_prefix(&format!("{group}-"))
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(usize::MAX);
                if !seen.insert(index) {
                    report.duplicates += 1;
                }
                let first = mine[0].started;
                let at = call.started - first;
                if let Some(h) = highest.filter(|h| index < *h) {
                    report.out_of_order += 1;
                    report.events.push(format!(
                        "{group}-{index} (receive {}) at {at:?}, after {group}-{h}",
                        call.receive_count
                    ));
                }
                highest = highest.max(Some(index));
                if running_until.is_some_and(|until| call.started < until) {
                    report.overlapping += 1;
                    report.events.push(format!(
                        "{group}-{index} (receive {}) at {at:?} overlaps an earlier call",
                        call.receive_count
                    ));
                }
                running_until = running_until.max(Some(call.finished));
            }
            report.lost += (0..per_group).filter(|i| !seen.contains(i)).count();
        }
        report
    }
}
