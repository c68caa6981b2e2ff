//! [`Queues`]: a webhook's SQS FIFO queue and FIFO dead-letter queue.
//!
//! `ensure_pair` reads before it writes: on a repeat with nothing changed it makes
//! only reads (per queue: GetQueueUrl, ListQueueTags, GetQueueAttributes).

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use hookline_crds::{DedupScope, FifoThroughputLimit};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use super::error::gone_is_fine;
use super::{AwsError, Caller, Owner, Service};

const SQS: Service = Service::Sqs;

/// The queue pair a webhook needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePairSpec {
    /// Base name: the queue is `<name>.fifo`, the dead-letter queue `<name>-dlq.fifo`.
    /// At most 71 characters (SQS allows 80 with the suffix).
    pub name: String,
    /// SHA-256 of the body as deduplication id when the sender gives none.
    pub content_based_deduplication: bool,
    /// Deduplication across the queue or per message group.
    pub deduplication_scope: DedupScope,
    /// FIFO throughput mode.
    pub throughput_limit: FifoThroughputLimit,
    /// Visibility timeout of the queue.
    pub visibility_timeout_seconds: i32,
    /// Retention of the queue.
    pub message_retention_seconds: i32,
    /// Retention of the dead-letter queue.
    pub dead_letter_retention_seconds: i32,
    /// Deliveries before SQS moves a message to the dead-letter queue.
    pub max_receive_count: i32,
    /// Tags for both queues; the owner tags are added.
    pub tags: BTreeMap<String, String>,
    /// The owning resource.
    pub owner: Owner,
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
}

/// A webhook's queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePair {
    /// Where the gateway writes.
    pub queue: QueueRef,
    /// Where SQS moves messages after maxReceiveCount.
    pub dead_letter: QueueRef,
}

/// Approximate depths of a queue pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Waiting to be received.
    pub visible: i64,
    /// Received, not yet deleted.
    pub in_flight: i64,
    /// Sent with a delay that has not passed.
    pub delayed: i64,
    /// In the dead-letter queue.
    pub dead_letter: i64,
}

/// A webhook's queues.
#[async_trait::async_trait]
pub trait Queues: Send + Sync {
    /// Creates the pair, or brings an existing one (ours) in line with `spec`.
    async fn ensure_pair(&self, spec: &QueuePairSpec) -> Result<QueuePair, AwsError>;
    /// Whether the pair's queue still exists with `spec`'s attributes and its redrive
    /// policy to `pair`'s dead-letter queue, from one `GetQueueAttributes` (false
    /// when it is gone). The dead-letter queue itself is not read: see
    /// `controller::steady` for what that leaves to the audit.
    async fn queue_matches(&self, spec: &QueuePairSpec, pair: &QueuePair)
    -> Result<bool, AwsError>;
    /// Current depths.
    async fn backlog(&self, pair: &QueuePair) -> Result<Backlog, AwsError>;
    /// Visible and in-flight messages of one queue, in one call (what the scaler needs).
    async fn depth(&self, queue: &QueueRef) -> Result<(i64, i64), AwsError>;
    /// Deletes both queues if they are ours; queues already gone are fine. A queue of
    /// another owner under the name is left, and reported as `NotOwned` once the other
    /// queue, if ours, is deleted (so a squatted name never strands our own queue).
    async fn delete_pair(&self, name: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// [`Queues`] on the SQS SDK.
#[derive(Debug, Clone)]
pub struct SqsQueues {
    sqs: aws_sdk_sqs::Client,
    caller: Caller,
}

impl SqsQueues {
    /// Uses `sqs` for calls and `caller` for limits, retries and counts.
    pub fn new(sqs: aws_sdk_sqs::Client, caller: Caller) -> Self {
        Self { sqs, caller }
    }

    async fn url(&self, name: &str) -> Result<Option<String>, AwsError> {
        match self
            .caller
            .call(SQS, "GetQueueUrl", name, || {
                self.sqs.get_queue_url().queue_name(name).send()
            })
            .await
        {
            Ok(out) => Ok(out.queue_url),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn check_owner(
        &self,
        url: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<HashMap<String, String>, AwsError> {
        let tags = self
            .caller
            .call(SQS, "ListQueueTags", name, || {
                self.sqs.list_queue_tags().queue_url(url).send()
            })
            .await?
            .tags
            .unwrap_or_default();
        owner.check(&tags, SQS, "ListQueueTags", "SQS queue", name)?;
        Ok(tags)
    }

    /// Creates a queue, or reconciles an existing one of ours. `desired` gives the
    /// attributes from the queue's own ARN, which is unknown before creation: what
    /// depends on it is set right after `CreateQueue`.
    async fn ensure_queue(
        &self,
        name: &str,
        desired: impl Fn(Option<&str>) -> BTreeMap<Attr, String>,
        tags: &BTreeMap<String, String>,
        owner: &Owner,
    ) -> Result<QueueRef, AwsError> {
        let Some(url) = self.url(name).await? else {
            let initial = desired(None);
            let created = self
                .caller
                .call(SQS, "CreateQueue", name, || {
                    self.sqs
                        .create_queue()
                        .queue_name(name)
                        .set_attributes(Some(initial.clone().into_iter().collect()))
                        .set_tags(Some(tags.clone().into_iter().collect()))
                        .send()
                })
                .await?;
            let url = created.queue_url.ok_or_else(|| {
                AwsError::unexpected(SQS, "CreateQueue", format!("no URL for {name}"))
            })?;
            let arn = while_new(|| self.attributes(&url, Attr::QueueArn))
                .await?
                .remove(&Attr::QueueArn);
            let arn = arn.ok_or_else(|| {
                AwsError::unexpected(SQS, "GetQueueAttributes", format!("no ARN for {name}"))
            })?;
            let rest: HashMap<Attr, String> = desired(Some(&arn))
                .into_iter()
                .filter(|(attr, _)| !initial.contains_key(attr))
                .collect();
            if !rest.is_empty() {
                while_new(|| self.set_attributes(&url, rest.clone())).await?;
            }
            return Ok(QueueRef { url, arn });
        };

        let current_tags = self.check_owner(&url, name, owner).await?;
        let mut current = self.attributes(&url, Attr::All).await?;
        let arn = current.remove(&Attr::QueueArn).ok_or_else(|| {
            AwsError::unexpected(SQS, "GetQueueAttributes", format!("no ARN for {name}"))
        })?;
        let changes = attribute_changes(&current, &desired(Some(&arn)));
        if !changes.is_empty() {
            tracing::info!(queue = name, changed = ?changes.keys().collect::<Vec<_>>(), "updating queue attributes");
            self.set_attributes(&url, changes).await?;
        }
        let missing_tags: HashMap<String, String> = tags
            .iter()
            .filter(|(k, v)| current_tags.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !missing_tags.is_empty() {
            self.caller
                .call(SQS, "TagQueue", name, || {
                    self.sqs
                        .tag_queue()
                        .queue_url(&url)
                        .set_tags(Some(missing_tags.clone()))
                        .send()
                })
                .await?;
        }
        Ok(QueueRef { url, arn })
    }

    async fn set_attributes(
        &self,
        url: &str,
        changes: HashMap<Attr, String>,
    ) -> Result<(), AwsError> {
        self.caller
            .call(SQS, "SetQueueAttributes", url, || {
                self.sqs
                    .set_queue_attributes()
                    .queue_url(url)
                    .set_attributes(Some(changes.clone()))
                    .send()
            })
            .await?;
        Ok(())
    }

    async fn attributes(&self, url: &str, which: Attr) -> Result<HashMap<Attr, String>, AwsError> {
        Ok(self
            .caller
            .call(SQS, "GetQueueAttributes", url, || {
                self.sqs
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(which.clone())
                    .send()
            })
            .await?
            .attributes
            .unwrap_or_default())
    }

    async fn delete_queue(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let Some(url) = self.url(name).await? else {
            return Ok(());
        };
        self.check_owner(&url, name, owner).await?;
        gone_is_fine(
            self.caller
                .call(SQS, "DeleteQueue", name, || {
                    self.sqs.delete_queue().queue_url(&url).send()
                })
                .await,
        )
    }
}

/// The outcome of deleting a pair from the outcomes for its two queues: a failure
/// that a retry may cure comes first, then a queue that is not ours.
pub fn pair_deleted(
    queue: Result<(), AwsError>,
    dead_letter: Result<(), AwsError>,
) -> Result<(), AwsError> {
    match (queue, dead_letter) {
        (_, Err(e)) if !e.is_not_owned() => Err(e),
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

/// What of `desired` differs from the `current` attributes of a queue.
pub fn attribute_changes(
    current: &HashMap<Attr, String>,
    desired: &BTreeMap<Attr, String>,
) -> HashMap<Attr, String> {
    desired
        .iter()
        .filter(|(attr, want)| match current.get(*attr) {
            Some(have) => !same_value(attr, have, want),
            // SQS may omit an attribute it holds at its default (and emulators omit
            // some FIFO ones), but a policy or setting only the operator writes is
            // missing when absent: a lost first write, or a manual removal.
            None => ALWAYS_RETURNED.contains(*attr),
        })
        .map(|(attr, want)| (attr.clone(), want.clone()))
        .collect()
}

/// Attributes the operator sets that SQS returns whenever they are set, so their
/// absence is drift. RedriveAllowPolicy is written only after CreateQueue (it needs
/// the source queue's ARN), so a failure right after creation leaves it unset.
const ALWAYS_RETURNED: [Attr; 4] = [
    Attr::RedrivePolicy,
    Attr::RedriveAllowPolicy,
    Attr::VisibilityTimeout,
    Attr::MessageRetentionPeriod,
];

/// Tries of a call on a queue that was just created.
const NEW_QUEUE_TRIES: u32 = 6;
/// Pause between them: 6 × 250 ms spans the second SQS asks for.
const NEW_QUEUE_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `call` on a queue created a moment ago, again while it answers NotFound:
/// "After you create a queue, you must wait at least one second after the queue is
/// created to be able to use the queue" (SQS API reference, CreateQueue). Bounded;
/// the last NotFound is returned.
async fn while_new<T, F, Fut>(mut call: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let mut tries = 1;
    loop {
        match call().await {
            Err(e) if e.is_not_found() && tries < NEW_QUEUE_TRIES => {
                tracing::debug!(error = %e, "new queue not usable yet");
                tries += 1;
                tokio::time::sleep(NEW_QUEUE_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// Names of the two queues of a pair.
pub fn queue_names(base: &str) -> (String, String) {
    (format!("{base}.fifo"), format!("{base}-dlq.fifo"))
}

/// The ARN a queue named `name` has, in the same account and region as `sibling_arn`.
fn sibling_arn(sibling_arn: &str, name: &str) -> String {
    match sibling_arn.rsplit_once(':') {
        Some((prefix, _)) => format!("{prefix}:{name}"),
        None => name.to_owned(),
    }
}

/// The attributes of the queue, given the dead-letter queue's ARN.
pub fn queue_attributes(spec: &QueuePairSpec, dead_letter_arn: &str) -> BTreeMap<Attr, String> {
    BTreeMap::from([
        (Attr::FifoQueue, "true".to_owned()),
        (Attr::ContentBasedDeduplication, spec.content_based_deduplication.to_string()),
        (
            Attr::DeduplicationScope,
            match spec.deduplication_scope {
                DedupScope::Queue => "queue",
                DedupScope::MessageGroup => "messageGroup",
            }
            .to_owned(),
        ),
        (
            Attr::FifoThroughputLimit,
            match spec.throughput_limit {
                FifoThroughputLimit::PerQueue => "perQueue",
                FifoThroughputLimit::PerMessageGroupId => "perMessageGroupId",
            }
            .to_owned(),
        ),
        (Attr::VisibilityTimeout, spec.visibility_timeout_seconds.to_string()),
        (Attr::MessageRetentionPeriod, spec.message_retention_seconds.to_string()),
        (
            Attr::RedrivePolicy,
            json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": spec.max_receive_count}).to_string(),
        ),
    ])
}

/// The attributes of the dead-letter queue; the redrive-allow policy needs the source
/// queue's ARN, when known.
pub fn dead_letter_attributes(
    spec: &QueuePairSpec,
    queue_arn: Option<&str>,
) -> BTreeMap<Attr, String> {
    let mut attributes = BTreeMap::from([
        (Attr::FifoQueue, "true".to_owned()),
        (
            Attr::MessageRetentionPeriod,
            spec.dead_letter_retention_seconds.to_string(),
        ),
    ]);
    if let Some(queue_arn) = queue_arn {
        attributes.insert(
            Attr::RedriveAllowPolicy,
            json!({"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn]}).to_string(),
        );
    }
    attributes
}

/// Whether two values of an attribute mean the same. Policies are JSON whose key
/// order and number-or-string spelling vary between AWS answers.
fn same_value(attr: &Attr, have: &str, want: &str) -> bool {
    match attr {
        Attr::RedrivePolicy | Attr::RedriveAllowPolicy => {
            match (
                serde_json::from_str::<Value>(have),
                serde_json::from_str::<Value>(want),
            ) {
                (Ok(have), Ok(want)) => normalize(have) == normalize(want),
                _ => have == want,
            }
        }
        _ => have == want,
    }
}

/// Numbers written as strings become numbers, so `"5"` and `5` compare equal.
fn normalize(value: Value) -> Value {
    match value {
        Value::String(s) => s.parse::<i64>().map_or(Value::String(s), Value::from),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

#[async_trait::async_trait]
impl Queues for SqsQueues {
    async fn ensure_pair(&self, spec: &QueuePairSpec) -> Result<QueuePair, AwsError> {
        let (queue_name, dead_letter_name) = queue_names(&spec.name);
        let mut tags = spec.tags.clone();
        tags.extend(spec.owner.tags());

        // The dead-letter queue first: the queue's redrive policy names its ARN. The
        // DLQ's redrive-allow policy names the queue, whose ARN follows from the DLQ's.
        let dead_letter = self
            .ensure_queue(
                &dead_letter_name,
                |own_arn| {
                    dead_letter_attributes(
                        spec,
                        own_arn.map(|arn| sibling_arn(arn, &queue_name)).as_deref(),
                    )
                },
                &tags,
                &spec.owner,
            )
            .await?;
        let queue_attributes = queue_attributes(spec, &dead_letter.arn);
        let queue = self
            .ensure_queue(
                &queue_name,
                |_| queue_attributes.clone(),
                &tags,
                &spec.owner,
            )
            .await?;
        Ok(QueuePair { queue, dead_letter })
    }

    async fn queue_matches(
        &self,
        spec: &QueuePairSpec,
        pair: &QueuePair,
    ) -> Result<bool, AwsError> {
        let mut current = match self.attributes(&pair.queue.url, Attr::All).await {
            Ok(current) => current,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let arn = current.remove(&Attr::QueueArn);
        Ok(arn.as_deref() == Some(pair.queue.arn.as_str())
            && attribute_changes(&current, &queue_attributes(spec, &pair.dead_letter.arn))
                .is_empty())
    }

    async fn backlog(&self, pair: &QueuePair) -> Result<Backlog, AwsError> {
        let count = |attrs: &HashMap<Attr, String>, attr: &Attr| {
            attrs.get(attr).and_then(|n| n.parse().ok()).unwrap_or(0)
        };
        let queue = self
            .caller
            .call(SQS, "GetQueueAttributes", &pair.queue.url, || {
                self.sqs
                    .get_queue_attributes()
                    .queue_url(&pair.queue.url)
                    .attribute_names(Attr::ApproximateNumberOfMessages)
                    .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
                    .attribute_names(Attr::ApproximateNumberOfMessagesDelayed)
                    .send()
            })
            .await?
            .attributes
            .unwrap_or_default();
        let dead_letter = self
            .attributes(&pair.dead_letter.url, Attr::ApproximateNumberOfMessages)
            .await?;
        Ok(Backlog {
            visible: count(&queue, &Attr::ApproximateNumberOfMessages),
            in_flight: count(&queue, &Attr::ApproximateNumberOfMessagesNotVisible),
            delayed: count(&queue, &Attr::ApproximateNumberOfMessagesDelayed),
            dead_letter: count(&dead_letter, &Attr::ApproximateNumberOfMessages),
        })
    }

    async fn depth(&self, queue: &QueueRef) -> Result<(i64, i64), AwsError> {
        let attrs = self
            .caller
            .call(SQS, "GetQueueAttributes", &queue.url, || {
                self.sqs
                    .get_queue_attributes()
                    .queue_url(&queue.url)
                    .attribute_names(Attr::ApproximateNumberOfMessages)
                    .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
                    .send()
            })
            .await?
            .attributes
            .unwrap_or_default();
        let count = |attr: &Attr| attrs.get(attr).and_then(|n| n.parse().ok()).unwrap_or(0);
        Ok((
            count(&Attr::ApproximateNumberOfMessages),
            count(&Attr::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    async fn delete_pair(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let (queue_name, dead_letter_name) = queue_names(name);
        // The queue first: while it exists, its redrive policy points at the DLQ.
        let queue = self.delete_queue(&queue_name, owner).await;
        if queue.as_ref().is_err_and(|e| !e.is_not_owned()) {
            return queue;
        }
        pair_deleted(queue, self.delete_queue(&dead_letter_name, owner).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_compare_by_meaning() {
        let want =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:q-dlq.fifo","maxReceiveCount":5}"#;
        let have =
            r#"{"maxReceiveCount":"5","deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:q-dlq.fifo"}"#;
        assert!(same_value(&Attr::RedrivePolicy, have, want));
        let other =
            r#"{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:1:q-dlq.fifo","maxReceiveCount":6}"#;
        assert!(!same_value(&Attr::RedrivePolicy, other, want));
        assert!(!same_value(&Attr::VisibilityTimeout, "60", "61"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_queue_is_retried_while_not_found_and_no_longer() {
        let not_found = || AwsError::NotFound {
            service: SQS,
            operation: "GetQueueAttributes",
            message: "The specified queue does not exist".into(),
        };
        let mut calls = 0;
        let answer = while_new(|| {
            calls += 1;
            let result = if calls < 3 {
                Err(not_found())
            } else {
                Ok(calls)
            };
            async move { result }
        })
        .await;
        assert_eq!(answer, Ok(3), "usable on the third try");

        let mut calls = 0;
        let answer: Result<(), _> = while_new(|| {
            calls += 1;
            async { Err(not_found()) }
        })
        .await;
        assert!(answer.is_err_and(|e| e.is_not_found()));
        assert_eq!(calls, NEW_QUEUE_TRIES, "bounded");

        let mut calls = 0;
        let answer: Result<(), _> = while_new(|| {
            calls += 1;
            async { Err(AwsError::unexpected(SQS, "GetQueueAttributes", "other")) }
        })
        .await;
        assert!(answer.is_err());
        assert_eq!(calls, 1, "only NotFound is retried");
    }

    #[test]
    fn the_source_arn_follows_from_the_dead_letter_arn() {
        assert_eq!(
            sibling_arn(
                "arn:aws:sqs:eu-west-1:123456789012:hl-a-b-dlq.fifo",
                "hl-a-b.fifo"
            ),
            "arn:aws:sqs:eu-west-1:123456789012:hl-a-b.fifo"
        );
    }
}
