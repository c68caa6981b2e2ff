//! Moves messages of a FIFO dead-letter queue back to their source queue, keeping
//! group ids and the order within each group: all of them, or the groups or message
//! ids asked for. SQS's own StartMessageMoveTask does this for standard queues only
//! (and emulators lack it), so the worker does it with plain receive/send/delete.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;
use tracing::info;

use crate::consumer::DEAD_LETTER_REASON_ATTRIBUTE;
use crate::dead_letters::{self, Held};
use crate::wire::QUEUED_AT_ATTRIBUTE;

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedriveReport {
    /// Messages moved back to the source queue.
    pub moved: u64,
    /// Messages that entered the dead-letter queue after the redrive began (they
    /// failed again meanwhile) and were left there.
    pub left: u64,
    /// Messages of other groups or ids than the ones asked for, left in place.
    pub skipped: u64,
    /// Message ids asked for that were not found (see [`Selection::Ids`]).
    pub not_found: Vec<String>,
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

/// Which dead letters to move.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every message that was in the dead-letter queue when the redrive began.
    #[default]
    All,
    /// Every message of these message groups, in order.
    Groups(BTreeSet<String>),
    /// These messages. SQS hands out a FIFO group's messages oldest first and at
    /// most ten of one group while earlier ones are held, so a message further back
    /// in its group is only reached by moving its group.
    Ids(BTreeSet<String>),
}

impl Selection {
    fn wants(&self, message: &Message, group: &str) -> bool {
        match self {
            Self::All => true,
            Self::Groups(groups) => groups.contains(group),
            Self::Ids(ids) => message
                .message_id
                .as_ref()
                .is_some_and(|id| ids.contains(id)),
        }
    }
}

/// How far a redrive is: called after every message moved, with the dead-letter
/// queue's depth when it began (approximate, as SQS reports it).
pub type Progress<'a> = &'a mut (dyn FnMut(&RedriveReport, u64) + Send);

/// Moves all messages from `dead_letter_url` to `queue_url`, in order per group.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    queue_url: &str,
) -> Result<RedriveReport, RedriveError> {
    redrive_selected(
        sqs,
        dead_letter_url,
        queue_url,
        &Selection::All,
        &mut |_, _| {},
    )
    .await
}

/// Moves the messages `selection` names from `dead_letter_url` to `queue_url`, in
/// order per group, reporting each move to `progress`.
///
/// Each message is sent with a deduplication id derived from its dead-letter message
/// id, then deleted; if a redrive is interrupted between the two and run again, SQS
/// drops the second copy within its five-minute deduplication window. Redriven
/// messages join the back of their group in the source queue. Messages left in
/// place are held invisible while the redrive runs, so that each is looked at once,
/// and made visible again at the end.
pub async fn redrive_selected(
    sqs: &aws_sdk_sqs::Client,
    dead_letter_url: &str,
    queue_url: &str,
    selection: &Selection,
    progress: Progress<'_>,
) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport::default();
    if let Selection::Ids(ids) = selection {
        // Each id leaves this list as it is moved.
        report.not_found = ids.iter().cloned().collect();
    }
    let depth = dead_letters::depth(sqs, dead_letter_url)
        .await
        .map_err(|reason| RedriveError { moved: 0, reason })?;
    let mut held = Held::default();
    let outcome = moves(
        sqs,
        (dead_letter_url, queue_url),
        selection,
        depth,
        &mut held,
        &mut report,
        progress,
    )
    .await;
    // Whatever happened, what was held is visible again at once, for a later redrive.
    held.release(sqs, dead_letter_url).await;
    outcome?;
    info!(
        moved = report.moved,
        left = report.left,
        skipped = report.skipped,
        from = dead_letter_url,
        to = queue_url,
        "redrive finished"
    );
    Ok(report)
}

async fn moves(
    sqs: &aws_sdk_sqs::Client,
    (dead_letter_url, queue_url): (&str, &str),
    selection: &Selection,
    depth: u64,
    held: &mut Held,
    report: &mut RedriveReport,
    progress: Progress<'_>,
) -> Result<(), RedriveError> {
    // Every round moves or holds at least one message or ends the loop; the margin
    // covers messages that arrive while the redrive runs and an approximate depth.
    // Only what was dead when the redrive began moves: a message that fails again
    // while the redrive runs (workers keep consuming) comes back with a later
    // SentTimestamp and is left for the next redrive, instead of going round and round.
    let started = SystemTime::now();
    for _ in 0..depth + 10 {
        let messages = dead_letters::receive(sqs, dead_letter_url, dead_letters::HOLD)
            .await
            .map_err(|reason| RedriveError {
                moved: report.moved,
                reason,
            })?;
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let group = dead_letters::group(&message).ok_or_else(|| RedriveError {
                moved: report.moved,
                reason: format!(
                    "message {} has no group id; is {dead_letter_url} a FIFO queue?",
                    message.message_id.as_deref().unwrap_or_default()
                ),
            })?;
            let late = message
                .attributes
                .as_ref()
                .and_then(crate::wire::sent_at)
                .is_some_and(|sent| sent > started);
            if late || !selection.wants(&message, &group) {
                if late {
                    report.left += 1;
                } else {
                    report.skipped += 1;
                }
                held.hold(message);
                continue;
            }
            move_one(sqs, (dead_letter_url, queue_url), &message, &group)
                .await
                .map_err(|reason| RedriveError {
                    moved: report.moved,
                    reason,
                })?;
            report
                .not_found
                .retain(|id| Some(id) != message.message_id.as_ref());
            report.moved += 1;
            progress(report, depth);
        }
    }
    Ok(())
}

/// Sends one dead letter back, as it was first queued, then deletes it.
async fn move_one(
    sqs: &aws_sdk_sqs::Client,
    (dead_letter_url, queue_url): (&str, &str),
    message: &Message,
    group: &str,
) -> Result<(), String> {
    let id = message.message_id.clone().unwrap_or_default();
    let mut attributes: HashMap<_, _> = message.message_attributes.clone().unwrap_or_default();
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
        .message_group_id(group)
        .message_deduplication_id(format!("redrive-{id}"))
        .set_message_attributes((!attributes.is_empty()).then_some(attributes))
        .send()
        .await
        .map_err(|e| format!("sending message {id} back: {}", DisplayErrorContext(e)))?;
    sqs.delete_message()
        .queue_url(dead_letter_url)
        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
        .send()
        .await
        .map_err(|e| format!("deleting redriven message {id}: {}", DisplayErrorContext(e)))?;
    Ok(())
}
