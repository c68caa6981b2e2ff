//! The worker's Prometheus metrics, all prefixed `hookline_worker_`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Counters and gauges of one consumer.
#[derive(Debug)]
pub struct Metrics {
    /// Messages received from the queue.
    pub received: Counter,
    /// Messages the handler accepted (and that were then deleted).
    pub handled: Counter,
    /// Handler calls that did not succeed; the message is retried.
    pub retried: Counter,
    /// Messages the worker gave up on itself: moved to the dead-letter queue after a
    /// failed signature check, or unreadable.
    pub failed: Counter,
    /// Signature checks that failed.
    pub verification_failures: Counter,
    /// Messages verified only by a secret a rotation replaced (queued before the
    /// end of its rotation window): when this stops growing, the old secret is no
    /// longer in use.
    pub verified_with_retired_secret: Counter,
    /// Changes of the signing secrets picked up from the mounted files.
    pub secret_reloads: Counter,
    /// Reads of the signing secrets that failed or were refused (the ones in use stayed).
    pub secret_reload_errors: Counter,
    /// ReceiveMessage calls that failed.
    pub poll_errors: Counter,
    /// Handled messages whose delete failed (they will be delivered again).
    pub delete_errors: Counter,
    /// Handled messages whose delete SQS refused because this worker's hold on them
    /// had lapsed (a stale receipt handle): the handler sees them again.
    pub stale_deletes: Counter,
    /// Holds (one per message group per receive) whose deadline passed before their
    /// messages were done: the process was stopped, starved or cut off for longer
    /// than the visibility timeout allows.
    pub holds_lapsed: Counter,
    /// Visibility extensions SQS refused (each loses its group's hold).
    pub extensions_refused: Counter,
    /// Group batches given up undelivered because their hold lapsed or was refused
    /// an extension, including receives answered too late to be held safely.
    pub batches_given_up: Counter,
    /// Messages of those batches: not delivered from here; SQS delivers them again.
    pub messages_given_up: Counter,
    /// Messages being handled right now.
    pub in_flight: Gauge,
    /// Handler call duration.
    pub handler_duration: Histogram,
    /// Seconds the oldest message of the last received batch had waited in the
    /// queue: how far behind the worker is (SQS serves each group oldest first).
    pub queue_age: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    /// Metrics that are counted but not exported (for library use without `/metrics`).
    pub fn unregistered() -> Self {
        Self {
            received: Counter::default(),
            handled: Counter::default(),
            retried: Counter::default(),
            failed: Counter::default(),
            verification_failures: Counter::default(),
            verified_with_retired_secret: Counter::default(),
            secret_reloads: Counter::default(),
            secret_reload_errors: Counter::default(),
            poll_errors: Counter::default(),
            delete_errors: Counter::default(),
            stale_deletes: Counter::default(),
            holds_lapsed: Counter::default(),
            extensions_refused: Counter::default(),
            batches_given_up: Counter::default(),
            messages_given_up: Counter::default(),
            in_flight: Gauge::default(),
            // 5 ms … ~20 s: webhook handlers are usually fast, but not always.
            handler_duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
            ]),
            queue_age: Gauge::default(),
        }
    }

    /// New metrics, registered under `hookline_worker_` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let r = registry.sub_registry_with_prefix("hookline_worker");
        r.register(
            "messages_received",
            "Messages received from the queue",
            metrics.received.clone(),
        );
        r.register(
            "messages_handled",
            "Messages the handler accepted",
            metrics.handled.clone(),
        );
        r.register(
            "messages_retried",
            "Handler calls that did not succeed",
            metrics.retried.clone(),
        );
        r.register(
            "messages_failed",
            "Messages moved to the dead-letter queue by the worker, or unreadable",
            metrics.failed.clone(),
        );
        r.register(
            "verification_failures",
            "Signature checks that failed",
            metrics.verification_failures.clone(),
        );
        r.register(
            "verified_with_retired_secret",
            "Messages verified only by a signing secret a rotation replaced",
            metrics.verified_with_retired_secret.clone(),
        );
        r.register(
            "secret_reloads",
            "Changes of the signing secrets picked up from the mounted files",
            metrics.secret_reloads.clone(),
        );
        r.register(
            "secret_reload_errors",
            "Reads of the signing secrets that failed or were refused; the ones in use stayed",
            metrics.secret_reload_errors.clone(),
        );
        r.register(
            "poll_errors",
            "ReceiveMessage calls that failed",
            metrics.poll_errors.clone(),
        );
        r.register(
            "delete_errors",
            "Handled messages whose delete failed for another reason than a lapsed hold",
            metrics.delete_errors.clone(),
        );
        r.register(
            "stale_deletes",
            "Handled messages whose delete was refused because this worker's hold had lapsed",
            metrics.stale_deletes.clone(),
        );
        r.register(
            "holds_lapsed",
            "Holds on a group's received messages whose deadline passed before they were done",
            metrics.holds_lapsed.clone(),
        );
        r.register(
            "extensions_refused",
            "Visibility extensions SQS refused",
            metrics.extensions_refused.clone(),
        );
        r.register(
            "batches_given_up",
            "Group batches given up undelivered because their hold lapsed or was refused",
            metrics.batches_given_up.clone(),
        );
        r.register(
            "messages_given_up",
            "Messages not delivered because this worker's hold on them lapsed or was refused",
            metrics.messages_given_up.clone(),
        );
        r.register(
            "messages_in_flight",
            "Messages being handled",
            metrics.in_flight.clone(),
        );
        r.register(
            "handler_duration_seconds",
            "Handler call duration",
            metrics.handler_duration.clone(),
        );
        r.register(
            "queue_age_seconds",
            "Seconds the oldest message of the last received batch waited in the queue",
            metrics.queue_age.clone(),
        );
        metrics
    }
}
