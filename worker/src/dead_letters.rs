//! Reading a FIFO dead-letter queue without taking anything out of it: what
//! `kubectl hookline dlq` shows, and the receive/hold/release steps a redrive shares.
//!
//! SQS has no peek. A look is a receive that holds the messages invisible for a
//! moment, then makes them visible again. On a FIFO queue a group's messages come
//! oldest first and, while some are held, no later ones of that group: a look sees
//! at most the first ten dead letters of each group (the ones a redrive moves first).
//! Each look also counts as a receive in SQS's `ApproximateReceiveCount`; nothing
//! consumes a dead-letter queue by that count, so no message moves because of it.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use std::time::SystemTime;
use tracing::debug;

use crate::consumer::DEAD_LETTER_REASON_ATTRIBUTE;
use crate::wire::{header_name, header_value};

/// How long a look or a redrive holds the messages it leaves in place (seconds): long
/// enough to page through a queue, short enough that an interrupted look leaves
/// nothing hidden for long.
pub(crate) const HOLD: i32 = 120;

/// One dead letter, as a look found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its message id in the dead-letter queue.
    pub message_id: String,
    /// Its message group.
    pub group_id: String,
    /// When it entered the dead-letter queue (its SentTimestamp there).
    pub dead_since: Option<SystemTime>,
    /// When the gateway first queued it, if the worker recorded it on the move.
    pub queued_at: Option<SystemTime>,
    /// SQS's ApproximateReceiveCount: receives in the source queue when SQS moved it,
    /// plus every look and receive in the dead-letter queue since.
    pub receive_count: u32,
    /// Why the worker gave up on it; `None` when SQS moved it after
    /// `maxReceiveCount` deliveries (no worker recorded one).
    pub reason: Option<String>,
    /// The forwarded request headers.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: String,
}

/// What a look saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Look {
    /// The dead letters seen, by group, in their group's order.
    pub letters: Vec<DeadLetter>,
    /// The queue's depth as SQS reported it before the look.
    pub depth: u64,
}

/// Looks at up to `limit` dead letters of `dead_letter_url` and leaves them in place.
pub async fn look(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    limit: usize,
) -> Result<Look, String> {
    let depth = depth(sqs, dead_letter_url).await?;
    let mut held = Held::default();
    let mut letters = Vec::new();
    let mut outcome = Ok(());
    // Each round holds what it received, so it ends when nothing more is visible.
    for _ in 0..limit.div_ceil(10) {
        match receive(sqs, dead_letter_url, HOLD).await {
            Ok(messages) if messages.is_empty() => break,
            Ok(messages) => {
                for message in messages {
                    if letters.len() < limit {
                        letters.push(dead_letter(&message));
                    }
                    held.hold(message);
                }
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    held.release(sqs, dead_letter_url).await;
    outcome?;
    // Stable: within a group, SQS's order is the group's order.
    letters.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(Look { letters, depth })
}

fn dead_letter(message: &Message) -> DeadLetter {
    let system = message.attributes.clone().unwrap_or_default();
    let attributes = message.message_attributes.clone().unwrap_or_default();
    let message_id = message.message_id.clone().unwrap_or_default();
    let mut headers: Vec<(String, String)> = attributes
        .iter()
        .filter_map(|(name, value)| {
            let name = header_name(name)?;
            let value = header_value(value.string_value().unwrap_or_default())?;
            Some((
                name.to_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ))
        })
        .collect();
    headers.sort();
    DeadLetter {
        group_id: group(message).unwrap_or_default(),
        dead_since: crate::wire::sent_at(&system),
        queued_at: crate::wire::recorded_queued_at(&message_id, &attributes),
        receive_count: system
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        reason: attributes
            .get(DEAD_LETTER_REASON_ATTRIBUTE)
            .and_then(|r| r.string_value())
            .map(str::to_owned),
        headers,
        body: message.body.clone().unwrap_or_default(),
        message_id,
    }
}

/// The queue's ApproximateNumberOfMessages.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64, String> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| format!("reading the depth of {url}: {}", DisplayErrorContext(e)))?
        .attributes
        .unwrap_or_default();
    Ok(attributes
        .get(&QueueAttributeName::ApproximateNumberOfMessages)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// Receives up to ten messages with every attribute, held for `hold` seconds.
pub(crate) async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    hold: i32,
) -> Result<Vec<Message>, String> {
    Ok(sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(hold)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| format!("receiving from {url}: {}", DisplayErrorContext(e)))?
        .messages
        .unwrap_or_default())
}

/// A message's group id.
pub(crate) fn group(message: &Message) -> Option<String> {
    message
        .attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::MessageGroupId)
        .cloned()
}

/// Messages received and left in place, to make visible again.
#[derive(Debug, Default)]
pub(crate) struct Held {
    handles: Vec<String>,
}

impl Held {
    pub(crate) fn hold(&mut self, message: Message) {
        self.handles.extend(message.receipt_handle);
    }

    /// Makes every held message visible again. A failure only delays them until
    /// their hold ends, so it is logged and not returned.
    pub(crate) async fn release(&mut self, sqs: &aws_sdk_sqs::Client, url: &str) {
        for chunk in std::mem::take(&mut self.handles).chunks(10) {
            let entries = chunk.iter().enumerate().filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            });
            let result = sqs
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries.collect()))
                .send()
                .await;
            match result {
                Ok(out) if !out.failed.is_empty() => {
                    debug!(
                        failed = out.failed.len(),
                        "some held dead letters were not released; they reappear when their hold ends"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(error = %DisplayErrorContext(e), "releasing held dead letters failed; they reappear when their hold ends");
                }
            }
        }
    }
}
