//! Moves every message of a FIFO dead-letter queue back to its source queue, keeping
//! group ids and the order within each group. SQS's own StartMessageMoveTask does
//! this for standard queues only (and emulators lack it), so the worker does it with
//! plain receive/send/delete.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use std::collections::HashMap;
use tracing::info;

use crate::consumer::DEAD_LETTER_REASON_ATTRIBUTE;
use crate::wire::QUEUED_AT_ATTRIBUTE;

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedriveReport {
    /// Messages moved back to the source queue.
    pub moved: u64,
    /// Messages that entered the dead-letter queue after the redrive began (they
    /// failed again meanwhile) and were left there.
    pub left: u64,
}

/// A redrive stopped early; messages not yet moved are still in the dead-letter queue.
#[derive(Debug, thiserror::Error)]
#[error("redrive stopped after moving {moved} message(s): {reason}")]
pub struct RedriveError {
    /// Messages moved before the failure.
    pub moved: u64,
    /// What failed, with AWS's words.
    pub reason: String,
}

/// Moves all messages from `dead_letter_url` to `queue_url`, in order per group.
///
/// Each message is sent with a deduplication id derived from its dead-letter message
/// id, then deleted; if a redrive is interrupted between the two and run again, SQS
/// drops the second copy within its five-minute deduplication window. Redriven
/// messages join the back of their group in the source queue.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    queue_url: &str,
) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport::default();
    let fail = |moved, reason: String| RedriveError { moved, reason };
    let depth = sqs
        .get_queue_attributes()
        .queue_url(dead_letter_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| {
            fail(
                0,
                format!(
                    "reading the dead-letter queue depth: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                ),
            )
        })?
        .attributes
        .and_then(|a| {
            a.get(&QueueAttributeName::ApproximateNumberOfMessages)
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);

    // Every round moves at least one message or ends the loop; the margin covers
    // messages that arrive while the redrive runs and an approximate depth.
    // Only what was dead when the redrive began moves: a message that fails again
    // while the redrive runs (workers keep consuming) comes back with a later
    // SentTimestamp and is left for the next redrive, instead of going round and round.
    let started = std::time::SystemTime::now();
    for _ in 0..depth + 10 {
        let messages = sqs
            .receive_message()
            .queue_url(dead_letter_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| {
                fail(
                    report.moved,
                    format!(
                        "receiving from the dead-letter queue: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    ),
                )
            })?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let (old, new): (Vec<_>, Vec<_>) = messages.into_iter().partition(|m| {
            m.attributes
                .as_ref()
                .and_then(crate::wire::sent_at)
                .is_none_or(|sent| sent <= started)
        });
        for message in &new {
            // Visible again at once, for a later redrive.
            let _ = sqs
                .change_message_visibility()
                .queue_url(dead_letter_url)
                .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await;
            report.left += 1;
        }
        if old.is_empty() {
            break;
        }
        for message in old {
            let id = message.message_id.clone().unwrap_or_default();
            let group = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .ok_or_else(|| {
                    fail(
                        report.moved,
                        format!("message {id} has no group id; is {dead_letter_url} a FIFO queue?"),
                    )
                })?;
            let mut attributes: HashMap<_, _> =
                message.message_attributes.clone().unwrap_or_default();
            attributes.remove(DEAD_LETTER_REASON_ATTRIBUTE);
            // A dead letter the worker moved says when it was first queued; one that
            // SQS moved (the worker was not there to) has only its dead-letter
            // SentTimestamp, which a FIFO queue resets on the move: the best we know.
            if !attributes.contains_key(QUEUED_AT_ATTRIBUTE)
                && let Some(queued_at) = message
                    .attributes
                    .as_ref()
                    .and_then(crate::wire::sent_at)
                    .and_then(crate::wire::queued_at_attribute)
            {
                attributes.insert(QUEUED_AT_ATTRIBUTE.to_owned(), queued_at);
            }
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(message.body.clone().unwrap_or_default())
                .message_group_id(&group)
                .message_deduplication_id(format!("redrive-{id}"))
                .set_message_attributes((!attributes.is_empty()).then_some(attributes))
                .send()
                .await
                .map_err(|e| {
                    fail(
                        report.moved,
                        format!(
                            "sending message {id} back: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ),
                    )
                })?;
            sqs.delete_message()
                .queue_url(dead_letter_url)
                .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                .send()
                .await
                .map_err(|e| {
                    fail(
                        report.moved,
                        format!(
                            "deleting redriven message {id}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ),
                    )
                })?;
            report.moved += 1;
        }
    }
    info!(
        moved = report.moved,
        from = dead_letter_url,
        to = queue_url,
        "redrive finished"
    );
    Ok(report)
}
