//! The queue consumer: long-polls the FIFO queue, runs each message group in order
//! on one task (groups in parallel, bounded), deletes only what was handled, backs
//! off what was not, and shuts down without dropping anything.
//!
//! SQS FIFO does half of the ordering work: while any message of a group is in
//! flight, no receive returns another message of that group. So a group never
//! spans two batches in flight at once, and the consumer only has to keep order
//! inside a batch, and make sure that when a message fails, the rest of its group
//! in the batch goes back to the queue behind it instead of being handled.
//!
//! That lock lasts only as long as the visibility timeout, so every group's batch
//! carries its hold (see `hold.rs`): no handler call starts once the hold has
//! lapsed or an extension was refused, since SQS may then have handed the group to
//! another consumer.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::handler::{Handler, Outcome};
use crate::hold::{Hold, Lapse, Lost, Timing};
use crate::metrics::Metrics;
use crate::signature::{Verified, Verifier};
use crate::wire::Delivery;

/// SQS's limits for one ReceiveMessage call and one batch request.
const MAX_BATCH: usize = 10;

/// Message attribute set on messages the worker moves to the dead-letter queue itself.
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "Hookline-Dead-Letter-Reason";

/// How long a failed message stays hidden before its next delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Longest delay; SQS caps a message's hidden time at 12 hours.
    pub max: Duration,
}

impl Backoff {
    /// SQS's maximum visibility timeout.
    pub const CEILING: Duration = Duration::from_secs(12 * 3600);

    /// The delay after the `receive_count`-th failed delivery: doubling from `initial`,
    /// capped at `max`. A handler's own `Retry-After` wins, within `max`.
    pub fn delay(&self, receive_count: u32, requested: Option<Duration>) -> Duration {
        let max = self.max.min(Self::CEILING);
        if let Some(requested) = requested {
            return requested.min(max);
        }
        let exponent = receive_count.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << exponent).min(max)
    }
}

/// How the consumer reads its queue.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The FIFO queue to drain.
    pub queue_url: String,
    /// Where messages that fail signature verification, or fail their last delivery,
    /// go. Required with a verifier or `max_receive_count`.
    pub dead_letter_queue_url: Option<String>,
    /// Concurrent long polls.
    pub pollers: usize,
    /// Message groups handled at once.
    pub concurrency: usize,
    /// How long a receive hides its messages (sent with every ReceiveMessage, so the
    /// queue's own setting does not matter; at least 3 s). Messages are extended
    /// while their handler runs, and no handler call starts on a message with less
    /// than a sixth of it left.
    pub visibility_timeout: Duration,
    /// Long-poll wait (SQS allows up to 20 s; at most a third of the visibility
    /// timeout is used, so a message arriving late in a poll is still safely held).
    pub wait_time: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// The queue's maxReceiveCount. When set, a message that fails on its last
    /// delivery is moved to the dead-letter queue by the worker at once, and the rest
    /// of its group carries on in the same batch. Left to SQS, the move happens on the
    /// next receive, which also receives the messages held back behind it: their
    /// receive counts have grown with every failure ahead of them, so they would
    /// follow it into the dead-letter queue without ever being attempted.
    pub max_receive_count: Option<u32>,
}

impl ConsumerConfig {
    /// Defaults for `queue_url`: 2 pollers, 10 groups, 60 s visibility, 20 s polls,
    /// backoff 5 s doubling to 15 min.
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            dead_letter_queue_url: None,
            pollers: 2,
            concurrency: 10,
            visibility_timeout: Duration::from_secs(60),
            wait_time: Duration::from_secs(20),
            backoff: Backoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(900),
            },
            max_receive_count: None,
        }
    }
}

/// The consumer cannot run with this configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Signature verification and max_receive_count need somewhere to put messages.
    #[error(
        "signature verification or max_receive_count is configured but no dead-letter queue URL is"
    )]
    NoDeadLetterQueue,
    /// Zero pollers or zero concurrency would never handle anything.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

/// Drains one queue into a [`Handler`].
#[derive(Debug)]
pub struct Consumer<H> {
    sqs: aws_sdk_sqs::Client,
    config: ConsumerConfig,
    handler: Arc<H>,
    verifier: Option<Arc<Verifier>>,
    metrics: Arc<Metrics>,
}

impl<H: Handler> Consumer<H> {
    /// A consumer of `config.queue_url` that hands messages to `handler`.
    pub fn new(sqs: aws_sdk_sqs::Client, config: ConsumerConfig, handler: H) -> Self {
        Self {
            sqs,
            config,
            handler: Arc::new(handler),
            verifier: None,
            metrics: Arc::new(Metrics::unregistered()),
        }
    }

    /// Verify signatures before handling; failures go to the dead-letter queue.
    #[must_use]
    pub fn with_verifier(self, verifier: Verifier) -> Self {
        self.with_shared_verifier(Arc::new(verifier))
    }

    /// As [`with_verifier`](Self::with_verifier), with a verifier also held
    /// elsewhere, e.g. by [`secrets::watch`](crate::secrets::watch) to rotate it.
    #[must_use]
    pub fn with_shared_verifier(mut self, verifier: Arc<Verifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Record into these metrics (e.g. registered with the `/metrics` registry).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown` is cancelled, then stops polling, finishes the messages
    /// being handled, puts back the ones not started, flushes deletes and returns.
    /// The bound after cancellation is one long poll (at most a third of the
    /// visibility timeout) plus one handler call.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        if (self.verifier.is_some() || self.config.max_receive_count.is_some())
            && self.config.dead_letter_queue_url.is_none()
        {
            return Err(ConsumerError::NoDeadLetterQueue);
        }
        if self.config.pollers == 0 {
            return Err(ConsumerError::Zero("pollers"));
        }
        if self.config.concurrency == 0 {
            return Err(ConsumerError::Zero("concurrency"));
        }

        let (deletes, delete_queue) = mpsc::channel(4 * MAX_BATCH * self.config.concurrency);
        let deleter = tokio::spawn(delete_loop(
            self.sqs.clone(),
            self.config.queue_url.clone(),
            delete_queue,
            self.metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            timing: Timing::new(self.config.visibility_timeout, self.config.wait_time),
            groups: Arc::new(Semaphore::new(self.config.concurrency)),
            in_flight: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            sqs: self.sqs,
            config: self.config,
            handler: self.handler,
            verifier: self.verifier,
            metrics: self.metrics,
            deletes,
            shutdown,
        });
        let stop_extending = CancellationToken::new();
        let extender = tokio::spawn(extend_loop(shared.clone(), stop_extending.clone()));

        let pollers: Vec<_> = (0..shared.config.pollers)
            .map(|_| tokio::spawn(poll_loop(shared.clone())))
            .collect();
        for poller in pollers {
            if let Err(e) = poller.await {
                error!(error = %e, "a poller task failed");
            }
        }
        shared.tracker.close();
        shared.tracker.wait().await;
        stop_extending.cancel();
        if let Err(e) = extender.await {
            error!(error = %e, "the visibility extender failed");
        }
        // The last sender goes with `shared`; the deleter then flushes and ends.
        drop(shared);
        if let Err(e) = deleter.await {
            error!(error = %e, "the deleter failed");
        }
        info!("consumer stopped");
        Ok(())
    }
}

/// What every task of one consumer shares.
struct Shared<H> {
    sqs: aws_sdk_sqs::Client,
    config: ConsumerConfig,
    timing: Timing,
    handler: Arc<H>,
    verifier: Option<Arc<Verifier>>,
    metrics: Arc<Metrics>,
    /// One permit per message group being handled.
    groups: Arc<Semaphore>,
    /// Every message received and not yet deleted or given back, by receipt handle;
    /// the extender keeps these hidden while their holds are valid.
    in_flight: Mutex<HashMap<String, InFlight>>,
    tracker: TaskTracker,
    deletes: mpsc::Sender<PendingDelete>,
    shutdown: CancellationToken,
}

/// A message this worker holds.
struct InFlight {
    message_id: String,
    hold: Arc<Hold>,
}

/// A handled message waiting for its delete.
struct PendingDelete {
    receipt_handle: String,
    message_id: String,
    hold: Arc<Hold>,
    done: oneshot::Sender<Deleted>,
}

/// What became of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deleted {
    Yes,
    /// Refused because the receipt handle is stale: the hold on it had lapsed.
    Stale,
    /// Refused for another reason, or the request failed.
    No,
}

enum Step {
    /// Done with the message: it was deleted (handled, or moved to the dead-letter queue).
    Deleted,
    /// Handled but not deleted: SQS will deliver it again, so nothing after it in
    /// the group may be delivered now.
    NotDeleted,
    RetryAfter(Duration),
}

async fn poll_loop<H: Handler>(shared: Arc<Shared<H>>) {
    let mut error_delay = Duration::from_millis(500);
    loop {
        // Take more messages only with room for at least one more group.
        let permit = tokio::select! {
            // Shutdown wins over a free permit, or a stopping poller could poll again.
            biased;
            () = shared.shutdown.cancelled() => return,
            permit = shared.groups.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        // A receive already under way is never abandoned: SQS may have handed us
        // messages, and only an answer lets us give them back at once.
        // The hold is counted from before the request: SQS hides the messages from
        // when it returns them, which is no earlier.
        let timing = shared.timing;
        let sent = Instant::now();
        let received = shared
            .sqs
            .receive_message()
            .queue_url(&shared.config.queue_url)
            .max_number_of_messages(MAX_BATCH as i32)
            .wait_time_seconds(timing.wait.as_secs() as i32)
            .visibility_timeout(timing.visibility.as_secs() as i32)
            // SentTimestamp is what timestamped signatures are checked against.
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(e) => {
                shared.metrics.poll_errors.inc();
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving from the queue failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(error_delay) => {}
                    () = shared.shutdown.cancelled() => return,
                }
                error_delay = (error_delay * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        error_delay = Duration::from_millis(500);
        if messages.is_empty() {
            continue;
        }
        shared.metrics.received.inc_by(messages.len() as u64);

        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            match Delivery::from_sqs(message) {
                Ok(delivery) => batch.push(delivery),
                // Left alone, it comes back after its visibility timeout and reaches
                // the dead-letter queue after maxReceiveCount, like any failure.
                Err(e) => {
                    shared.metrics.failed.inc();
                    error!(error = %e, "cannot read a received message; leaving it to SQS's redrive");
                }
            }
        }
        let now = std::time::SystemTime::now();
        if let Some(oldest) = batch.iter().filter_map(|d| d.sent_at).min() {
            let age = now.duration_since(oldest).unwrap_or_default();
            shared.metrics.queue_age.set(age.as_secs_f64());
        }
        let groups: Vec<(Vec<Delivery>, Arc<Hold>)> = split_by_group(batch)
            .into_iter()
            .map(|group| (group, Arc::new(Hold::received(sent, &timing))))
            .collect();
        {
            let mut in_flight = shared.in_flight.lock().await;
            for (group, hold) in &groups {
                for d in group {
                    let entry = InFlight {
                        message_id: d.message_id.clone(),
                        hold: hold.clone(),
                    };
                    in_flight.insert(d.receipt_handle.clone(), entry);
                }
            }
        }
        if shared.shutdown.is_cancelled() {
            for (group, hold) in groups {
                shared.give_back(group, &hold).await;
            }
            return;
        }
        // An answer read long after it was sent (the process was stopped while the
        // poll was under way) may hold messages SQS has already handed to another
        // consumer.
        let answered = Instant::now();
        let late = groups.iter().fold(false, |late, (_, hold)| {
            shared.check_hold(hold, answered).is_err() || late
        });
        if late {
            let messages: usize = groups.iter().map(|(group, _)| group.len()).sum();
            warn!(
                messages,
                answered_after = ?answered - sent,
                visibility = ?timing.visibility,
                "a receive was answered too late to hold its messages safely; giving them back undelivered"
            );
            for (group, hold) in groups {
                shared.give_up(group, &hold).await;
            }
            continue;
        }

        let mut first_permit = Some(permit);
        for (group, hold) in groups {
            let shared_for_group = shared.clone();
            let permit = first_permit.take();
            shared.tracker.spawn(async move {
                let shared = shared_for_group;
                let _permit = match permit {
                    Some(permit) => permit,
                    None => tokio::select! {
                        biased;
                        () = shared.shutdown.cancelled() => return shared.give_back(group, &hold).await,
                        permit = shared.groups.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return shared.give_back(group, &hold).await,
                        },
                    },
                };
                shared.process_group(group, hold).await;
            });
        }
    }
}

/// Splits a batch into its groups, keeping SQS's order inside each group and the
/// order in which groups first appear.
fn split_by_group(batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    for delivery in batch {
        match index.get(&delivery.group_id) {
            Some(&i) => groups[i].push(delivery),
            None => {
                index.insert(delivery.group_id.clone(), groups.len());
                groups.push(vec![delivery]);
            }
        }
    }
    groups
}

impl<H: Handler> Shared<H> {
    async fn process_group(&self, group: Vec<Delivery>, hold: Arc<Hold>) {
        let mut rest = group.into_iter();
        while let Some(delivery) = rest.next() {
            if self.shutdown.is_cancelled() {
                self.give_back(std::iter::once(delivery).chain(rest).collect(), &hold)
                    .await;
                return;
            }
            if let Err(lapse) = self.check_hold(&hold, Instant::now()) {
                let rest: Vec<_> = std::iter::once(delivery).chain(rest).collect();
                warn!(
                    group = %rest[0].group_id,
                    messages = rest.len(),
                    reason = lapse.describe(),
                    "this worker's hold on the group lapsed; giving up the rest of its batch undelivered, SQS delivers it again in order"
                );
                self.give_up(rest, &hold).await;
                return;
            }
            match self.deliver(&delivery, &hold).await {
                Step::Deleted => {}
                Step::NotDeleted => {
                    let rest: Vec<_> = rest.collect();
                    if hold.still_ours(Instant::now()) {
                        self.give_back(rest, &hold).await;
                    } else if !rest.is_empty() {
                        warn!(
                            group = %delivery.group_id,
                            messages = rest.len(),
                            "this worker's hold on the group lapsed; giving up the rest of its batch undelivered, SQS delivers it again in order"
                        );
                        self.give_up(rest, &hold).await;
                    }
                    return;
                }
                Step::RetryAfter(delay) => {
                    self.hide(&delivery, delay, &hold).await;
                    // Later messages of the group go back now; SQS holds them behind
                    // the failed one, which is still in flight while hidden.
                    self.give_back(rest.collect(), &hold).await;
                    return;
                }
            }
        }
    }

    /// Whether a handler call may start on `hold`'s messages at `now`; counts a
    /// hold found lapsed.
    fn check_hold(&self, hold: &Hold, now: Instant) -> Result<(), Lapse> {
        hold.check(now, self.timing.margin)
            .map_err(|Lost { lapse, first }| {
                if first && lapse == Lapse::Expired {
                    self.metrics.holds_lapsed.inc();
                }
                lapse
            })
    }

    async fn deliver(&self, delivery: &Delivery, hold: &Arc<Hold>) -> Step {
        self.metrics.in_flight.inc();
        let step = self.deliver_inner(delivery, hold).await;
        self.metrics.in_flight.dec();
        step
    }

    async fn deliver_inner(&self, delivery: &Delivery, hold: &Arc<Hold>) -> Step {
        let id = delivery.message_id.as_str();
        let group = delivery.group_id.as_str();
        let verified = self.verifier.as_ref().map(|v| v.verify_delivery(delivery));
        if let Some(Ok(Verified::Retired)) = verified {
            self.metrics.verified_with_retired_secret.inc();
            debug!(
                message_id = id,
                group, "verified with a signing secret a rotation replaced"
            );
        }
        if let Some(Err(rejection)) = verified {
            self.metrics.verification_failures.inc();
            warn!(message_id = id, group, %rejection, "signature verification failed; moving the message to the dead-letter queue");
            return self
                .move_to_dead_letter(delivery, &rejection.to_string(), hold)
                .await;
        }

        let started = Instant::now();
        let outcome = self.handler.handle(delivery).await;
        self.metrics
            .handler_duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Done => {
                self.metrics.handled.inc();
                debug!(message_id = id, group, "handled");
                self.delete(delivery, hold).await
            }
            Outcome::Retry { reason, .. }
                if self
                    .config
                    .max_receive_count
                    .is_some_and(|max| delivery.receive_count >= max) =>
            {
                let reason = format!(
                    "not handled after {} deliveries: {reason}",
                    delivery.receive_count
                );
                warn!(message_id = id, group, %reason, "moving the message to the dead-letter queue");
                self.move_to_dead_letter(delivery, &reason, hold).await
            }
            Outcome::Retry { after, reason } => {
                self.metrics.retried.inc();
                let delay = self.config.backoff.delay(delivery.receive_count, after);
                info!(message_id = id, group, receive_count = delivery.receive_count, %reason, retry_in = ?delay, "not handled; will retry");
                Step::RetryAfter(delay)
            }
        }
    }

    /// Copies the message to the dead-letter queue, then deletes it. If the copy
    /// fails, the message stays and is retried (SQS's own redrive still applies).
    async fn move_to_dead_letter(
        &self,
        delivery: &Delivery,
        reason: &str,
        hold: &Arc<Hold>,
    ) -> Step {
        match self.dead_letter(delivery, reason).await {
            Ok(()) => {
                self.metrics.failed.inc();
                self.delete(delivery, hold).await
            }
            Err(e) => {
                error!(message_id = %delivery.message_id, group = %delivery.group_id, error = %e, "could not move the message to the dead-letter queue; it stays in the queue");
                Step::RetryAfter(self.config.backoff.delay(delivery.receive_count, None))
            }
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), String> {
        let url = self
            .config
            .dead_letter_queue_url
            .as_deref()
            .ok_or("no dead-letter queue configured")?;
        let attributes = dead_letter_attributes(delivery, reason)?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(String::from_utf8_lossy(&delivery.body))
            .message_group_id(&delivery.group_id)
            // Stable for this message, so a retried move is deduplicated by SQS.
            .message_deduplication_id(&delivery.message_id)
            .set_message_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }

    async fn forget(&self, delivery: &Delivery) {
        self.in_flight.lock().await.remove(&delivery.receipt_handle);
    }

    /// Deletes a message and waits for SQS's answer. The group goes on only once
    /// the delete is confirmed: a handled message that stays in the queue is
    /// delivered again, and must not then come after the ones behind it.
    async fn delete(&self, delivery: &Delivery, hold: &Arc<Hold>) -> Step {
        self.forget(delivery).await;
        let (done, answer) = oneshot::channel();
        let entry = PendingDelete {
            receipt_handle: delivery.receipt_handle.clone(),
            message_id: delivery.message_id.clone(),
            hold: hold.clone(),
            done,
        };
        if self.deletes.send(entry).await.is_err() {
            error!(message_id = %delivery.message_id, "the deleter has stopped; the handled message will be delivered again");
            return Step::NotDeleted;
        }
        match answer.await.unwrap_or(Deleted::No) {
            Deleted::Yes => Step::Deleted,
            Deleted::Stale => {
                // Counted as lapsed if the deadline passed; lost either way, as SQS
                // says the handle is no longer ours, whatever our clock says.
                let _ = self.check_hold(hold, Instant::now());
                hold.refused();
                Step::NotDeleted
            }
            Deleted::No => Step::NotDeleted,
        }
    }

    /// Hides a failed message for `delay` before SQS offers it again.
    async fn hide(&self, delivery: &Delivery, delay: Duration, hold: &Hold) {
        self.forget(delivery).await;
        if !hold.still_ours(Instant::now()) {
            // Its receipt handle may be stale: leave the message to its timeout.
            return;
        }
        let result = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.config.queue_url)
            .receipt_handle(&delivery.receipt_handle)
            .visibility_timeout(delay.as_secs().min(Backoff::CEILING.as_secs()) as i32)
            .send()
            .await;
        if let Err(e) = result {
            warn!(message_id = %delivery.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "could not set the retry delay; the message returns after its current visibility timeout");
        }
    }

    /// Makes messages visible again at once, unhandled, while they are certainly
    /// still this worker's; otherwise leaves them to their visibility timeout, since
    /// a stale receipt handle must not touch a message another consumer now holds.
    async fn give_back(&self, deliveries: Vec<Delivery>, hold: &Hold) {
        if deliveries.is_empty() {
            return;
        }
        {
            let mut in_flight = self.in_flight.lock().await;
            for d in &deliveries {
                in_flight.remove(&d.receipt_handle);
            }
        }
        if !hold.still_ours(Instant::now()) {
            return;
        }
        let entries: Vec<_> = deliveries
            .iter()
            .map(|d| (d.receipt_handle.clone(), d.message_id.clone()))
            .collect();
        let changes =
            change_visibility(&self.sqs, &self.config.queue_url, &entries, Duration::ZERO).await;
        for ((_, message_id), change) in entries.iter().zip(changes) {
            match change {
                // The message is no longer ours to give back: nothing to do.
                Change::Refused(code)
                    if code == "ReceiptHandleIsInvalid" || code == "MessageNotInflight" =>
                {
                    debug!(%message_id, %code, "giving back refused (message already gone?)");
                }
                // A failure on SQS's side (e.g. InternalError inside a 200 answer): the
                // message is still hidden, so it and its group wait for its visibility
                // timeout instead of coming back at once.
                Change::Refused(code) => {
                    warn!(%message_id, %code, "SQS refused to make an undelivered message visible again; it returns after its visibility timeout, and its group waits until then");
                }
                Change::Accepted(_) | Change::Unknown => {}
            }
        }
    }

    /// Gives back the messages of a lost hold without delivering them.
    async fn give_up(&self, deliveries: Vec<Delivery>, hold: &Hold) {
        self.metrics.batches_given_up.inc();
        self.metrics
            .messages_given_up
            .inc_by(deliveries.len() as u64);
        self.give_back(deliveries, hold).await;
    }
}

/// What SQS answered to one entry of a visibility change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// Accepted; the request was sent at this instant.
    Accepted(Instant),
    /// Refused, with SQS's error code.
    Refused(String),
    /// The request failed as a whole; nothing is known.
    Unknown,
}

/// Sets the visibility of any number of messages, ten per request, and says what
/// became of each. Request failures are logged: the messages then keep their
/// current timeout.
async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    entries: &[(String, String)],
    to: Duration,
) -> Vec<Change> {
    let mut changes = Vec::with_capacity(entries.len());
    for chunk in entries.chunks(MAX_BATCH) {
        let batch: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, (receipt, _))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(to.as_secs() as i32)
                    .build()
                    .ok()
            })
            .collect();
        let sent = Instant::now();
        let mut outcome = vec![Change::Unknown; chunk.len()];
        match sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(batch))
            .send()
            .await
        {
            Ok(output) => {
                for ok in &output.successful {
                    if let Some(slot) = ok.id.parse::<usize>().ok().and_then(|i| outcome.get_mut(i))
                    {
                        *slot = Change::Accepted(sent);
                    }
                }
                for failed in output.failed {
                    if let Some(slot) = failed
                        .id
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| outcome.get_mut(i))
                    {
                        *slot = Change::Refused(failed.code);
                    }
                }
            }
            Err(e) => {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "changing message visibility failed")
            }
        }
        changes.extend(outcome);
    }
    changes
}

/// Keeps every validly held message hidden while it waits for or runs its handler,
/// extending each hold before it gets close to its deadline.
async fn extend_loop<H: Handler>(shared: Arc<Shared<H>>, stop: CancellationToken) {
    let timing = shared.timing;
    let mut ticks = tokio::time::interval(timing.tick);
    // After a stall, one late tick rather than a burst of them: every hold is looked
    // at afresh anyway.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        // Holding the lock across the call keeps a message from being extended just
        // after it was given a retry delay or put back.
        let in_flight = shared.in_flight.lock().await;
        let now = Instant::now();
        let mut due = Vec::new();
        for (receipt, held) in in_flight.iter() {
            // A lapsed hold is not extended: its messages may be someone else's.
            let lapse = held.hold.due(now, &timing).map_err(|Lost { lapse, first }| {
                if first && lapse == Lapse::Expired {
                    shared.metrics.holds_lapsed.inc();
                    warn!(message_id = %held.message_id, reason = lapse.describe(), "a hold lapsed before its messages were done");
                }
            });
            if lapse == Ok(true) {
                due.push((receipt.clone(), held.message_id.clone(), held.hold.clone()));
            }
        }
        if due.is_empty() {
            continue;
        }
        debug!(
            messages = due.len(),
            "extending visibility of held messages"
        );
        let entries: Vec<_> = due.iter().map(|(r, m, _)| (r.clone(), m.clone())).collect();
        let changes = change_visibility(
            &shared.sqs,
            &shared.config.queue_url,
            &entries,
            timing.visibility,
        )
        .await;
        for ((_, message_id, hold), change) in due.iter().zip(changes) {
            match change {
                Change::Accepted(sent) => hold.extended(sent, &timing),
                Change::Refused(code) => {
                    shared.metrics.extensions_refused.inc();
                    if hold.refused() {
                        warn!(message_id = %message_id, %code, "SQS refused to extend a held message; the rest of its group's batch will not be delivered from here");
                    }
                }
                // The deadline stays; if extensions keep failing, the hold lapses.
                Change::Unknown => {}
            }
        }
    }
}

/// Deletes handled messages in batches of up to ten, flushing within a few
/// milliseconds, and tells each waiting group what became of its message.
async fn delete_loop(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    mut queue: mpsc::Receiver<PendingDelete>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        let linger = tokio::time::sleep(Duration::from_millis(5));
        tokio::pin!(linger);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                next = queue.recv() => match next {
                    Some(entry) => batch.push(entry),
                    None => break,
                },
                () = &mut linger => break,
            }
        }
        let results = delete_batch(&sqs, &queue_url, &batch, &metrics).await;
        for (pending, result) in batch.drain(..).zip(results) {
            // A group that stopped waiting has nothing left to do with the answer.
            let _ = pending.done.send(result);
        }
    }
}

/// Whether a refused delete was refused because the receipt handle is no longer
/// valid: SQS answers `ReceiptHandleIsInvalid`, or for FIFO queues
/// `InvalidParameterValue` with "The receipt handle has expired".
fn stale_receipt(code: &str, message: Option<&str>) -> bool {
    code == "ReceiptHandleIsInvalid"
        || (code == "InvalidParameterValue"
            && message.is_some_and(|m| m.to_ascii_lowercase().contains("receipt handle")))
}

async fn delete_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[PendingDelete],
    metrics: &Metrics,
) -> Vec<Deleted> {
    let entries: Vec<_> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, pending)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&pending.receipt_handle)
                .build()
                .ok()
        })
        .collect();
    let mut results = vec![Deleted::No; batch.len()];
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=3 {
        match sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries.clone()))
            .send()
            .await
        {
            Ok(output) => {
                for ok in &output.successful {
                    if let Some(slot) = ok.id.parse::<usize>().ok().and_then(|i| results.get_mut(i))
                    {
                        *slot = Deleted::Yes;
                    }
                }
                for failed in output.failed {
                    let index = failed.id.parse::<usize>().ok();
                    let pending = index.and_then(|i| batch.get(i));
                    let message_id = pending.map(|p| p.message_id.as_str());
                    let hold_lost = pending.is_some_and(|p| !p.hold.still_ours(Instant::now()));
                    let result = if hold_lost
                        || stale_receipt(&failed.code, failed.message.as_deref())
                    {
                        metrics.stale_deletes.inc();
                        warn!(?message_id, code = %failed.code, "delete refused: this worker's hold on the handled message had lapsed (its receipt handle is stale), so SQS hands it out again or already has; the handler sees it more than once");
                        Deleted::Stale
                    } else {
                        metrics.delete_errors.inc();
                        warn!(?message_id, code = %failed.code, "delete refused; the handled message will be delivered again");
                        Deleted::No
                    };
                    if let Some(slot) = index.and_then(|i| results.get_mut(i)) {
                        *slot = result;
                    }
                }
                return results;
            }
            Err(e) if attempt < 3 => {
                debug!(attempt, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete batch failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                metrics.delete_errors.inc_by(batch.len() as u64);
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), messages = batch.len(), "deleting handled messages failed; they will be delivered again");
            }
        }
    }
    results
}

/// What a dead-lettered message carries: its headers, when it was first queued (so
/// a redrive checks its signature against that, not against the move), and the
/// reason. Within SQS's ten attributes the reason is the one to give up: it is also
/// logged, while the headers and the queueing time decide whether it verifies later.
fn dead_letter_attributes(
    delivery: &Delivery,
    reason: &str,
) -> Result<HashMap<String, MessageAttributeValue>, String> {
    let mut attributes: HashMap<String, MessageAttributeValue> = delivery.attributes.clone();
    if let Some(queued_at) = delivery.sent_at.and_then(crate::wire::queued_at_attribute) {
        attributes.insert(crate::wire::QUEUED_AT_ATTRIBUTE.to_owned(), queued_at);
    }
    if attributes.len() < crate::wire::MAX_MESSAGE_ATTRIBUTES {
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| e.to_string())?;
        attributes.insert(DEAD_LETTER_REASON_ATTRIBUTE.to_owned(), reason);
    } else {
        warn!(message_id = %delivery.message_id, %reason, "no room for {DEAD_LETTER_REASON_ATTRIBUTE} among SQS's ten attributes; the reason is only logged");
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(headers: usize) -> Delivery {
        let names: Vec<String> = (0..headers).map(|i| format!("x-h{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let message = aws_sdk_sqs::types::Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .set_message_attributes(Some(crate::wire::header_attributes(&pairs)))
            .build();
        Delivery::from_sqs(message).unwrap()
    }

    #[test]
    fn a_dead_letter_keeps_its_headers_and_queueing_time_within_ten_attributes() {
        let queued_at = |a: &HashMap<String, MessageAttributeValue>| {
            a[crate::wire::QUEUED_AT_ATTRIBUTE]
                .string_value()
                .map(str::to_owned)
        };
        let few = dead_letter_attributes(&received(2), "why").unwrap();
        assert_eq!(few.len(), 4);
        assert_eq!(queued_at(&few).as_deref(), Some("1700000000123"));
        assert_eq!(
            few[DEAD_LETTER_REASON_ATTRIBUTE].string_value(),
            Some("why")
        );

        let full =
            dead_letter_attributes(&received(crate::wire::MAX_FORWARDED_HEADERS), "why").unwrap();
        assert_eq!(full.len(), crate::wire::MAX_MESSAGE_ATTRIBUTES);
        assert_eq!(queued_at(&full).as_deref(), Some("1700000000123"));
        assert!(!full.contains_key(DEAD_LETTER_REASON_ATTRIBUTE));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=6).map(|n| b.delay(n, None).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(
            b.delay(0, None),
            Duration::from_secs(5),
            "a missing count is a first try"
        );
        assert_eq!(b.delay(1000, None), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn retry_after_wins_within_the_max() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
        assert_eq!(b.delay(4, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn stale_receipt_handles_are_told_apart_from_other_refusals() {
        assert!(stale_receipt("ReceiptHandleIsInvalid", None));
        assert!(stale_receipt(
            "InvalidParameterValue",
            Some(
                "Value AQEB for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
            )
        ));
        assert!(!stale_receipt(
            "InvalidParameterValue",
            Some("Value 99 for parameter VisibilityTimeout is invalid")
        ));
        assert!(!stale_receipt("InternalError", None));
    }

    #[test]
    fn backoff_never_exceeds_what_sqs_accepts() {
        let b = Backoff {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(7 * 24 * 3600),
        };
        assert_eq!(b.delay(10, None), Backoff::CEILING);
    }
}
