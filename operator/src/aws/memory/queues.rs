//! [`Queues`] in memory: FIFO queue pairs with their attributes and tags; depths are
//! whatever the test sets (no message is ever sent).

use std::collections::BTreeMap;

use super::{ACCOUNT, MemoryAws, State, not_found};
use crate::aws::queues::{dead_letter_attributes, pair_deleted, queue_attributes, queue_names};
use crate::aws::{AwsError, Backlog, Owner, QueuePair, QueuePairSpec, QueueRef, Queues, Service};

const SQS: Service = Service::Sqs;
const REDRIVE_ALLOW_POLICY: &str = "RedriveAllowPolicy";

/// One SQS queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryQueue {
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
    /// Attributes by SQS name (`VisibilityTimeout`, `RedrivePolicy`, …).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Messages waiting to be received.
    pub visible: i64,
    /// Messages received and not yet deleted.
    pub in_flight: i64,
    /// Messages whose delay has not passed.
    pub delayed: i64,
}

impl MemoryQueue {
    /// A queue named `name` in `region`, with no attributes and no tags (as someone
    /// else would create it).
    pub fn new(region: &str, name: &str) -> Self {
        Self {
            url: format!("https://sqs.{region}.amazonaws.com/{ACCOUNT}/{name}"),
            arn: format!("arn:aws:sqs:{region}:{ACCOUNT}:{name}"),
            attributes: BTreeMap::new(),
            tags: BTreeMap::new(),
            visible: 0,
            in_flight: 0,
            delayed: 0,
        }
    }
}

impl MemoryAws {
    /// The queue `name` (`<base>.fifo` or `<base>-dlq.fifo`), if it exists.
    pub fn queue(&self, name: &str) -> Option<MemoryQueue> {
        self.read(|s| s.queues.get(name).cloned())
    }

    /// Sets the depth of queue `name` (as senders and a worker would); false if
    /// there is no such queue.
    pub fn set_depth(&self, name: &str, visible: i64, in_flight: i64) -> bool {
        self.edit(|s| {
            s.queues.get_mut(name).map(|q| {
                q.visible = visible;
                q.in_flight = in_flight;
            })
        })
        .is_some()
    }
}

fn by_url<'a>(
    state: &'a State,
    url: &str,
    operation: &'static str,
) -> Result<&'a MemoryQueue, AwsError> {
    state
        .queues
        .values()
        .find(|q| q.url == url)
        .ok_or_else(|| not_found(SQS, operation, format!("queue {url}")))
}

/// Creates queue `name`, or brings ours in line, as `SqsQueues::ensure_queue` does;
/// `desired` gives the attributes from the queue's own ARN.
fn ensure_queue(
    state: &mut State,
    name: &str,
    desired: impl Fn(&str) -> BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
    owner: &Owner,
) -> Result<QueueRef, AwsError> {
    state.call(SQS, "GetQueueUrl")?;
    if !state.queues.contains_key(name) {
        state.call(SQS, "CreateQueue")?;
        let mut queue = MemoryQueue::new(&state.region, name);
        queue.tags.clone_from(tags);
        let mut attributes = desired(&queue.arn);
        // What names the queue's own ARN (the redrive-allow policy) is set right
        // after creation, by a call of its own that can fail on its own.
        let later = attributes.remove_entry(REDRIVE_ALLOW_POLICY);
        queue.attributes = attributes;
        let created = QueueRef {
            url: queue.url.clone(),
            arn: queue.arn.clone(),
        };
        state.queues.insert(name.to_owned(), queue);
        state.call(SQS, "GetQueueAttributes")?;
        if let Some((attr, value)) = later {
            state.call(SQS, "SetQueueAttributes")?;
            if let Some(queue) = state.queues.get_mut(name) {
                queue.attributes.insert(attr, value);
            }
        }
        return Ok(created);
    }
    state.call(SQS, "ListQueueTags")?;
    let existing = state
        .queues
        .get(name)
        .cloned()
        .ok_or_else(|| AwsError::unexpected(SQS, "GetQueueUrl", format!("{name} vanished")))?;
    owner.check(&existing.tags, SQS, "ListQueueTags", "SQS queue", name)?;
    state.call(SQS, "GetQueueAttributes")?;
    let want = desired(&existing.arn);
    let changes: BTreeMap<String, String> = want
        .into_iter()
        .filter(|(attr, value)| existing.attributes.get(attr) != Some(value))
        .collect();
    if !changes.is_empty() {
        state.call(SQS, "SetQueueAttributes")?;
    }
    let missing_tags: BTreeMap<String, String> = tags
        .iter()
        .filter(|(k, v)| existing.tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !missing_tags.is_empty() {
        state.call(SQS, "TagQueue")?;
    }
    let queue = state
        .queues
        .get_mut(name)
        .ok_or_else(|| AwsError::unexpected(SQS, "GetQueueUrl", format!("{name} vanished")))?;
    queue.attributes.extend(changes);
    queue.tags.extend(missing_tags);
    Ok(QueueRef {
        url: queue.url.clone(),
        arn: queue.arn.clone(),
    })
}

fn delete_queue(state: &mut State, name: &str, owner: &Owner) -> Result<(), AwsError> {
    state.call(SQS, "GetQueueUrl")?;
    let Some(queue) = state.queues.get(name).cloned() else {
        return Ok(());
    };
    state.call(SQS, "ListQueueTags")?;
    owner.check(&queue.tags, SQS, "ListQueueTags", "SQS queue", name)?;
    state.call(SQS, "DeleteQueue")?;
    state.queues.remove(name);
    Ok(())
}

fn named(
    attributes: BTreeMap<aws_sdk_sqs::types::QueueAttributeName, String>,
) -> BTreeMap<String, String> {
    attributes
        .into_iter()
        .map(|(attr, value)| (attr.as_str().to_owned(), value))
        .collect()
}

#[async_trait::async_trait]
impl Queues for MemoryAws {
    async fn ensure_pair(&self, spec: &QueuePairSpec) -> Result<QueuePair, AwsError> {
        let (queue_name, dead_letter_name) = queue_names(&spec.name);
        let mut tags = spec.tags.clone();
        tags.extend(spec.owner.tags());
        let mut state = self.lock();
        let queue_arn = |dead_letter_arn: &str| {
            format!(
                "{}:{queue_name}",
                dead_letter_arn
                    .rsplit_once(':')
                    .map_or("", |(prefix, _)| prefix)
            )
        };
        let dead_letter = ensure_queue(
            &mut state,
            &dead_letter_name,
            |own| named(dead_letter_attributes(spec, Some(&queue_arn(own)))),
            &tags,
            &spec.owner,
        )?;
        let attributes = named(queue_attributes(spec, &dead_letter.arn));
        let queue = ensure_queue(
            &mut state,
            &queue_name,
            |_| attributes.clone(),
            &tags,
            &spec.owner,
        )?;
        Ok(QueuePair { queue, dead_letter })
    }

    async fn queue_matches(
        &self,
        spec: &QueuePairSpec,
        pair: &QueuePair,
    ) -> Result<bool, AwsError> {
        let mut state = self.lock();
        state.call(SQS, "GetQueueAttributes")?;
        let Some(queue) = state.queues.values().find(|q| q.url == pair.queue.url) else {
            return Ok(false);
        };
        let want = named(queue_attributes(spec, &pair.dead_letter.arn));
        Ok(queue.arn == pair.queue.arn
            && want
                .iter()
                .all(|(attr, value)| queue.attributes.get(attr) == Some(value)))
    }

    async fn backlog(&self, pair: &QueuePair) -> Result<Backlog, AwsError> {
        let mut state = self.lock();
        state.call(SQS, "GetQueueAttributes")?;
        let queue = by_url(&state, &pair.queue.url, "GetQueueAttributes")?.clone();
        state.call(SQS, "GetQueueAttributes")?;
        let dead_letter = by_url(&state, &pair.dead_letter.url, "GetQueueAttributes")?;
        Ok(Backlog {
            visible: queue.visible,
            in_flight: queue.in_flight,
            delayed: queue.delayed,
            dead_letter: dead_letter.visible,
        })
    }

    async fn depth(&self, queue: &QueueRef) -> Result<(i64, i64), AwsError> {
        let mut state = self.lock();
        state.call(SQS, "GetQueueAttributes")?;
        let queue = by_url(&state, &queue.url, "GetQueueAttributes")?;
        Ok((queue.visible, queue.in_flight))
    }

    async fn delete_pair(&self, name: &str, owner: &Owner) -> Result<(), AwsError> {
        let (queue_name, dead_letter_name) = queue_names(name);
        let mut state = self.lock();
        // The queue first: while it exists, its redrive policy points at the DLQ.
        let queue = delete_queue(&mut state, &queue_name, owner);
        if queue.as_ref().is_err_and(|e| !e.is_not_owned()) {
            return queue;
        }
        let dead_letter = delete_queue(&mut state, &dead_letter_name, owner);
        pair_deleted(queue, dead_letter)
    }
}
