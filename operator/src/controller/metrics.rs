//! Reconcile metrics (how many, how they ended, how long they took), each
//! Webhook's backlog and worker replicas as its status last recorded them, and the
//! scaler's decisions.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Queue {
    namespace: String,
    webhook: String,
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaState {
    namespace: String,
    webhook: String,
    /// `desired` (what the scaler, or KEDA, asked for) or `ready`.
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Scaling {
    namespace: String,
    webhook: String,
    /// `up` or `down`.
    direction: &'static str,
}

/// A Webhook's identity in the per-Webhook series.
type WebhookKey = (String, String);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// `hookline_reconciliations_total{kind,outcome}`,
/// `hookline_reconcile_duration_seconds{kind}`,
/// `hookline_reconciles_in_flight{kind}`,
/// `hookline_webhook_messages{namespace,webhook,queue}`,
/// `hookline_webhook_replicas{namespace,webhook,state}` and
/// `hookline_scale_events_total{namespace,webhook,direction}`.
#[derive(Debug, Clone)]
pub struct ReconcileMetrics {
    runs: Family<Outcome, Counter>,
    duration: Family<Kind, Histogram>,
    in_flight: Family<Kind, Gauge>,
    /// The most reconciles of each kind ever in flight at once.
    peaks: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<&'static str, i64>>>,
    messages: Family<Queue, Gauge>,
    replicas: Family<ReplicaState, Gauge>,
    scale_events: Family<Scaling, Counter>,
    /// The Webhooks whose series were last exported, to remove those of deleted ones.
    exported: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<WebhookKey>>>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
            in_flight: Family::default(),
            peaks: std::sync::Arc::default(),
            messages: Family::default(),
            replicas: Family::default(),
            scale_events: Family::default(),
            exported: std::sync::Arc::default(),
        }
    }
}

/// One reconcile in flight; counted down when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ReconcileMetrics {
    /// Registers the metrics.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hookline_reconciliations",
            "Reconciles by kind and outcome (ok or the error kind)",
            self.runs.clone(),
        );
        registry.register(
            "hookline_reconcile_duration_seconds",
            "Reconcile duration by kind",
            self.duration.clone(),
        );
        registry.register(
            "hookline_reconciles_in_flight",
            "Reconciles running now by kind (at most --reconcile-concurrency per watch scope)",
            self.in_flight.clone(),
        );
        registry.register(
            "hookline_webhook_messages",
            "Messages waiting per Webhook (queue=main: visible and in flight; \
             queue=dead_letter), from its status.backlog",
            self.messages.clone(),
        );
        registry.register(
            "hookline_webhook_replicas",
            "Worker replicas per Webhook (state=desired: asked for by the scaler or KEDA; \
             state=ready), from its status.replicas",
            self.replicas.clone(),
        );
        registry.register(
            "hookline_scale_events",
            "Worker Deployments rescaled by the built-in scaler, by Webhook and direction (up or down)",
            self.scale_events.clone(),
        );
    }

    /// Sets the backlog and replica series of `webhooks` and removes every series of
    /// Webhooks that are gone. Series are updated in place, never cleared first: a
    /// scrape in between would miss them and reset every pending alert's `for`. Costs
    /// no AWS call: the scaler and the reconciler keep `status.backlog` and
    /// `status.replicas` current.
    pub fn record_backlog(&self, webhooks: &[std::sync::Arc<hookline_crds::Webhook>]) {
        use kube::ResourceExt as _;
        let mut current = std::collections::HashSet::new();
        for webhook in webhooks {
            let Some(status) = webhook.status.as_ref() else {
                continue;
            };
            let Some(backlog) = status.backlog.as_ref() else {
                continue;
            };
            let (namespace, name) = (webhook.namespace().unwrap_or_default(), webhook.name_any());
            let queue = |queue| Queue {
                namespace: namespace.clone(),
                webhook: name.clone(),
                queue,
            };
            self.messages
                .get_or_create(&queue("main"))
                .set(backlog.visible.saturating_add(backlog.in_flight));
            self.messages
                .get_or_create(&queue("dead_letter"))
                .set(backlog.dead_letter);
            if let Some(replicas) = status.replicas.as_ref() {
                let state = |state| ReplicaState {
                    namespace: namespace.clone(),
                    webhook: name.clone(),
                    state,
                };
                self.replicas
                    .get_or_create(&state("desired"))
                    .set(i64::from(replicas.desired));
                self.replicas
                    .get_or_create(&state("ready"))
                    .set(i64::from(replicas.ready));
            }
            current.insert((namespace, name));
        }
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (namespace, webhook) in exported.difference(&current) {
            for queue in ["main", "dead_letter"] {
                self.messages.remove(&Queue {
                    namespace: namespace.clone(),
                    webhook: webhook.clone(),
                    queue,
                });
            }
            for state in ["desired", "ready"] {
                self.replicas.remove(&ReplicaState {
                    namespace: namespace.clone(),
                    webhook: webhook.clone(),
                    state,
                });
            }
            for direction in ["up", "down"] {
                self.scale_events.remove(&Scaling {
                    namespace: namespace.clone(),
                    webhook: webhook.clone(),
                    direction,
                });
            }
        }
        *exported = current;
    }

    /// Counts one rescale of a Webhook's worker from `from` to `to` replicas.
    pub fn scaled(&self, namespace: &str, webhook: &str, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        self.scale_events
            .get_or_create(&Scaling {
                namespace: namespace.to_owned(),
                webhook: webhook.to_owned(),
                direction,
            })
            .inc();
    }

    /// Counts a reconcile of `kind` in flight until the guard is dropped.
    pub fn started(&self, kind: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&Kind { kind }).clone();
        let now = gauge.inc().saturating_add(1);
        let mut peaks = self
            .peaks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let peak = peaks.entry(kind).or_default();
        *peak = (*peak).max(now);
        InFlight(gauge)
    }

    /// The most reconciles of `kind` that were ever in flight at once.
    pub fn peak_in_flight(&self, kind: &'static str) -> i64 {
        self.peaks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    /// Records one reconcile.
    pub fn observe(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.runs.get_or_create(&Outcome { kind, outcome }).inc();
        self.duration
            .get_or_create(&Kind { kind })
            .observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_crds::Webhook;
    use std::sync::Arc;

    fn webhook(name: &str, visible: i64, dead_letter: i64) -> Arc<Webhook> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "hookline.dev/v1alpha1",
                "kind": "Webhook",
                "metadata": {"name": name, "namespace": "payments"},
                "spec": {"path": "/x", "worker": {"template": {"spec": {"containers": []}}}},
                "status": {
                    "backlog": {"visible": visible, "inFlight": 1, "deadLetter": dead_letter},
                    "replicas": {"desired": 3, "ready": 2},
                },
            }))
            .unwrap(),
        )
    }

    fn exported(metrics: &ReconcileMetrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn backlog_series_follow_the_webhooks() {
        let metrics = ReconcileMetrics::default();
        metrics.record_backlog(&[webhook("stripe", 4, 2), webhook("github", 0, 0)]);
        let text = exported(&metrics);
        assert!(
            text.contains(
                r#"hookline_webhook_messages{namespace="payments",webhook="stripe",queue="main"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hookline_webhook_messages{namespace="payments",webhook="stripe",queue="dead_letter"} 2"#
            ),
            "{text}"
        );

        metrics.record_backlog(&[webhook("github", 0, 0)]);
        let text = exported(&metrics);
        assert!(
            !text.contains("stripe"),
            "a deleted Webhook's series stay: {text}"
        );
        assert!(text.contains(r#"webhook="github""#), "{text}");
    }

    #[test]
    fn replicas_and_scale_events_follow_the_webhooks() {
        let metrics = ReconcileMetrics::default();
        metrics.record_backlog(&[webhook("stripe", 4, 0), webhook("github", 0, 0)]);
        metrics.scaled("payments", "stripe", 1, 3);
        metrics.scaled("payments", "stripe", 3, 4);
        metrics.scaled("payments", "stripe", 4, 0);
        let text = exported(&metrics);
        for line in [
            r#"hookline_webhook_replicas{namespace="payments",webhook="stripe",state="desired"} 3"#,
            r#"hookline_webhook_replicas{namespace="payments",webhook="stripe",state="ready"} 2"#,
            r#"hookline_scale_events_total{namespace="payments",webhook="stripe",direction="up"} 2"#,
            r#"hookline_scale_events_total{namespace="payments",webhook="stripe",direction="down"} 1"#,
        ] {
            assert!(text.contains(line), "no {line} in {text}");
        }

        metrics.record_backlog(&[webhook("github", 0, 0)]);
        let text = exported(&metrics);
        assert!(
            !text.contains("stripe"),
            "a deleted Webhook's replica or scale series stay: {text}"
        );
        assert!(
            text.contains(r#"hookline_webhook_replicas{namespace="payments",webhook="github",state="desired"} 3"#),
            "{text}"
        );
    }
}
