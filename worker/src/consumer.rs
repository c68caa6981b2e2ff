//! The queue consumer: long-polls the FIFO queue, runs each message group in order
//! on one task (groups in parallel, bounded), deletes only what was handled, backs
//! off what was not, and shuts down without dropping anything.
//!
//! SQS FIFO does half of the ordering work: while any message of a group is in
//! flight, no receive returns another message of that group. So a group never
//! spans two batches in flight at once, and the consumer only has to keep order
//! inside a batch, and make sure that when a message fails, the rest of its group
//! in the batch goes back to the queue behind it instead of being handled.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageAttributeValue, MessageSystemAttributeName,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::handler::{Handler, Outcome};
use crate::metrics::Metrics;
use crate::signature::Verifier;
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
    /// The queue's visibility timeout: in-flight messages are extended to this every
    /// third of it while their handler runs.
    pub visibility_timeout: Duration,
    /// Long-poll wait (SQS allows up to 20 s).
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
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
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
    /// The bound after cancellation is one long poll plus one handler call.
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
    handler: Arc<H>,
    verifier: Option<Arc<Verifier>>,
    metrics: Arc<Metrics>,
    /// One permit per message group being handled.
    groups: Arc<Semaphore>,
    /// Receipt handle → message id of every message received and not yet deleted or
    /// given back; the extender keeps these hidden while their handlers run.
    in_flight: Mutex<HashMap<String, String>>,
    tracker: TaskTracker,
    deletes: mpsc::Sender<(String, String)>,
    shutdown: CancellationToken,
}

enum Step {
    Deleted,
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
        let received = shared
            .sqs
            .receive_message()
            .queue_url(&shared.config.queue_url)
            .max_number_of_messages(MAX_BATCH as i32)
            .wait_time_seconds(shared.config.wait_time.as_secs().min(20) as i32)
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
        {
            let mut in_flight = shared.in_flight.lock().await;
            for d in &batch {
                in_flight.insert(d.receipt_handle.clone(), d.message_id.clone());
            }
        }
        if shared.shutdown.is_cancelled() {
            shared.release(batch).await;
            return;
        }

        let mut first_permit = Some(permit);
        for group in split_by_group(batch) {
            let shared_for_group = shared.clone();
            let permit = first_permit.take();
            shared.tracker.spawn(async move {
                let shared = shared_for_group;
                let _permit = match permit {
                    Some(permit) => permit,
                    None => tokio::select! {
                        biased;
                        () = shared.shutdown.cancelled() => return shared.release(group).await,
                        permit = shared.groups.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return shared.release(group).await,
                        },
                    },
                };
                shared.process_group(group).await;
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
    async fn process_group(&self, group: Vec<Delivery>) {
        let mut rest = group.into_iter();
        while let Some(delivery) = rest.next() {
            if self.shutdown.is_cancelled() {
                self.release(std::iter::once(delivery).chain(rest).collect())
                    .await;
                return;
            }
            match self.deliver(&delivery).await {
                Step::Deleted => {}
                Step::RetryAfter(delay) => {
                    self.hide(&delivery, delay).await;
                    // Later messages of the group go back now; SQS holds them behind
                    // the failed one, which is still in flight while hidden.
                    self.release(rest.collect()).await;
                    return;
                }
            }
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Step {
        self.metrics.in_flight.inc();
        let step = self.deliver_inner(delivery).await;
        self.metrics.in_flight.dec();
        step
    }

    async fn deliver_inner(&self, delivery: &Delivery) -> Step {
        let id = delivery.message_id.as_str();
        let group = delivery.group_id.as_str();
        let rejection = self.verifier.as_ref().and_then(|v| {
            v.verify(&delivery.headers, &delivery.body, SystemTime::now())
                .err()
        });
        if let Some(rejection) = rejection {
            self.metrics.verification_failures.inc();
            warn!(message_id = id, group, %rejection, "signature verification failed; moving the message to the dead-letter queue");
            return self
                .move_to_dead_letter(delivery, &rejection.to_string())
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
                self.delete(delivery).await;
                Step::Deleted
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
                self.move_to_dead_letter(delivery, &reason).await
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
    async fn move_to_dead_letter(&self, delivery: &Delivery, reason: &str) -> Step {
        match self.dead_letter(delivery, reason).await {
            Ok(()) => {
                self.metrics.failed.inc();
                self.delete(delivery).await;
                Step::Deleted
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
        let mut attributes: HashMap<String, MessageAttributeValue> = delivery.attributes.clone();
        let reason = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(|e| e.to_string())?;
        attributes.insert(DEAD_LETTER_REASON_ATTRIBUTE.to_owned(), reason);
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

    async fn delete(&self, delivery: &Delivery) {
        self.forget(delivery).await;
        let entry = (delivery.receipt_handle.clone(), delivery.message_id.clone());
        if self.deletes.send(entry).await.is_err() {
            error!(message_id = %delivery.message_id, "the deleter has stopped; the message will be delivered again");
        }
    }

    /// Hides a failed message for `delay` before SQS offers it again.
    async fn hide(&self, delivery: &Delivery, delay: Duration) {
        self.forget(delivery).await;
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

    /// Makes messages visible again at once, unhandled.
    async fn release(&self, deliveries: Vec<Delivery>) {
        if deliveries.is_empty() {
            return;
        }
        {
            let mut in_flight = self.in_flight.lock().await;
            for d in &deliveries {
                in_flight.remove(&d.receipt_handle);
            }
        }
        let entries: Vec<_> = deliveries
            .iter()
            .map(|d| (d.receipt_handle.clone(), d.message_id.clone()))
            .collect();
        change_visibility(&self.sqs, &self.config.queue_url, &entries, Duration::ZERO).await;
    }
}

/// Sets the visibility of up to any number of messages, ten per request. Failures
/// are logged: the message then reappears when its current timeout ends.
async fn change_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    entries: &[(String, String)],
    to: Duration,
) {
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
        match sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(batch))
            .send()
            .await
        {
            Ok(output) => {
                for failed in output.failed {
                    let message_id = failed
                        .id
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| chunk.get(i))
                        .map(|(_, id)| id.as_str());
                    debug!(?message_id, code = %failed.code, "visibility change refused (message already gone?)");
                }
            }
            Err(e) => {
                warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "changing message visibility failed")
            }
        }
    }
}

/// Keeps every in-flight message hidden while its handler runs.
async fn extend_loop<H: Handler>(shared: Arc<Shared<H>>, stop: CancellationToken) {
    // Every third of the timeout, so a message received just after a tick is still
    // hidden at the next one; a few seconds at least, or extending races expiry.
    let extend_to = shared.config.visibility_timeout.max(Duration::from_secs(3));
    let mut ticks = tokio::time::interval(extend_to / 3);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        // Holding the lock across the call keeps a message from being extended just
        // after it was given a retry delay or put back.
        let in_flight = shared.in_flight.lock().await;
        if in_flight.is_empty() {
            continue;
        }
        let entries: Vec<_> = in_flight
            .iter()
            .map(|(r, m)| (r.clone(), m.clone()))
            .collect();
        debug!(
            messages = entries.len(),
            "extending visibility of in-flight messages"
        );
        change_visibility(&shared.sqs, &shared.config.queue_url, &entries, extend_to).await;
    }
}

/// Deletes handled messages in batches of up to ten, flushing within a few
/// milliseconds so a handled message is not left in flight.
async fn delete_loop(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    mut queue: mpsc::Receiver<(String, String)>,
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
        delete_batch(&sqs, &queue_url, &batch, &metrics).await;
        batch.clear();
    }
}

async fn delete_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[(String, String)],
    metrics: &Metrics,
) {
    let entries: Vec<_> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, (receipt, _))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .ok()
        })
        .collect();
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
                for failed in output.failed {
                    metrics.delete_errors.inc();
                    let message_id = failed
                        .id
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| batch.get(i))
                        .map(|(_, id)| id.as_str());
                    warn!(?message_id, code = %failed.code, "delete refused; the handled message will be delivered again");
                }
                return;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn backoff_never_exceeds_what_sqs_accepts() {
        let b = Backoff {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(7 * 24 * 3600),
        };
        assert_eq!(b.delay(10, None), Backoff::CEILING);
    }
}
