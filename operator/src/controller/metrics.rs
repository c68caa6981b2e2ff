//! Reconcile metrics: how many, how they ended, how long they took.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// `hookline_reconciliations_total{kind,outcome}` and
/// `hookline_reconcile_duration_seconds{kind}`.
#[derive(Debug, Clone)]
pub struct ReconcileMetrics {
    runs: Family<Outcome, Counter>,
    duration: Family<Kind, Histogram>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
            }),
        }
    }
}

impl ReconcileMetrics {
    /// Registers both metrics.
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
    }

    /// Records one reconcile.
    pub fn observe(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.runs.get_or_create(&Outcome { kind, outcome }).inc();
        self.duration
            .get_or_create(&Kind { kind })
            .observe(took.as_secs_f64());
    }
}
