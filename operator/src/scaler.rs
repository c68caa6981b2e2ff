//! Backlog autoscaling of worker Deployments.
//!
//! Every interval, for each Webhook: read its queue's counts (one
//! `GetQueueAttributes`; the dead-letter queue's too, at most once per
//! [`DEAD_LETTER_INTERVAL`]), decide (pure, [`decide`]) and, with the built-in
//! engine, write the Deployment's scale subresource when the decision changes it.
//! The scaler is the one writer of the status fields `backlog`, `replicas` and
//! `lastScaleTime` ([`Fields`], server-side applied under its own field manager
//! [`MANAGER`]), also for Webhooks that KEDA scales; the reconcilers never write them.
//!
//! The rules: `ceil((visible + in flight) / targetBacklogPerReplica)` clamped to
//! min..max; up at once; down only after `scaleDownDelaySeconds` of lower demand, and
//! never below what the messages in flight need (`ceil(in flight / concurrency)`), so
//! no pod holding work is removed; to zero when min is 0 and the queue stayed empty
//! for the delay.
//!
//! Each rescale counts in `hookline_scale_events_total{namespace,webhook,direction}`;
//! the replicas asked for and ready are exported from the status the scaler writes
//! (`hookline_webhook_replicas`, [`crate::controller::metrics`]).

use hookline_crds::{Backlog as BacklogStatus, Replicas, ScalingEngine, Webhook};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::controller::context::Context;

/// Field manager of the status fields the scaler owns (backlog, replicas, last scale
/// time): no other writer touches them.
pub const MANAGER: &str = "hookline-scaler";

/// How often the scaler reads a dead-letter queue's depth. Scaling needs only the
/// main queue every tick; the dead-letter count is for status, the metric and the
/// `HooklineDeadLetters` alert, which waits 5 minutes anyway. Read every tick it
/// would double the scaler's SQS requests (the larger part of a Webhook's cost at
/// rest, docs/benchmarks.md).
pub const DEAD_LETTER_INTERVAL: Duration = Duration::from_secs(60);

/// A Webhook's scaling bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Fewest replicas.
    pub min: i32,
    /// Most replicas.
    pub max: i32,
    /// Messages one replica should carry.
    pub target_per_replica: i32,
    /// Message groups one pod handles at once (so: messages in flight per pod).
    pub concurrency: i32,
    /// How long demand must stay lower before scaling down.
    pub scale_down_delay: Duration,
}

impl Policy {
    /// The policy of a Webhook.
    pub fn of(webhook: &Webhook) -> Self {
        let scaling = &webhook.spec.worker.scaling;
        Self {
            min: scaling.min_replicas,
            max: scaling.max_replicas,
            target_per_replica: scaling.target_backlog_per_replica.max(1),
            concurrency: webhook.spec.worker.concurrency.max(1),
            scale_down_delay: Duration::from_secs(
                u64::try_from(scaling.scale_down_delay_seconds).unwrap_or(0),
            ),
        }
    }
}

/// What the scaler remembers per Webhook between ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Since when demand has been below the current replica count.
    pub lower_since: Option<Instant>,
}

/// What to do with a Deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Keep `current`; the text says why (for logs).
    Hold(String),
    /// Set replicas; the text says why (for the Event).
    Scale(i32, String),
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if a <= 0 { 0 } else { (a + b - 1) / b }
}

/// Decides the replicas of one Deployment (pure).
pub fn decide(
    policy: &Policy,
    current: i32,
    visible: i64,
    in_flight: i64,
    memory: Memory,
    now: Instant,
) -> (Decision, Memory) {
    let backlog = visible.max(0) + in_flight.max(0);
    let wanted = ceil_div(backlog, i64::from(policy.target_per_replica));
    let wanted = i32::try_from(wanted)
        .unwrap_or(i32::MAX)
        .clamp(policy.min, policy.max.max(policy.min));
    // Pods holding messages are never removed: keep enough for what is in flight.
    let holding =
        i32::try_from(ceil_div(in_flight, i64::from(policy.concurrency))).unwrap_or(i32::MAX);
    if wanted > current {
        return (
            Decision::Scale(
                wanted,
                format!(
                    "backlog {backlog} wants {wanted} (target {} per replica)",
                    policy.target_per_replica
                ),
            ),
            Memory::default(),
        );
    }
    if wanted == current {
        return (
            Decision::Hold("demand matches".to_owned()),
            Memory::default(),
        );
    }
    let floor = wanted.max(holding.min(current));
    if floor >= current {
        return (
            Decision::Hold(format!(
                "{in_flight} message(s) in flight hold {current} replica(s)"
            )),
            memory,
        );
    }
    let since = memory.lower_since.unwrap_or(now);
    let waited = now.saturating_duration_since(since);
    if waited >= policy.scale_down_delay {
        let reason = if floor == 0 {
            format!("queue empty for {}s", waited.as_secs())
        } else {
            format!("backlog {backlog} wants {floor} for {}s", waited.as_secs())
        };
        (Decision::Scale(floor, reason), Memory::default())
    } else {
        (
            Decision::Hold(format!(
                "lower demand for {}s of {}s",
                waited.as_secs(),
                policy.scale_down_delay.as_secs()
            )),
            Memory {
                lower_since: Some(since),
            },
        )
    }
}

/// The scaling loop of the operator.
#[derive(Debug)]
pub struct Scaler {
    memory: tokio::sync::Mutex<HashMap<String, Seen>>,
    dead_letter_interval: Duration,
}

/// What the scaler keeps per Webhook between ticks.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    scaling: Memory,
    /// The dead-letter queue's depth at its last read, and when.
    dead_letter: Option<(i64, Instant)>,
}

impl Default for Scaler {
    fn default() -> Self {
        Self::new(DEAD_LETTER_INTERVAL)
    }
}

impl Scaler {
    /// A scaler reading each dead-letter queue at most once per `dead_letter_interval`.
    pub fn new(dead_letter_interval: Duration) -> Self {
        Self {
            memory: tokio::sync::Mutex::default(),
            dead_letter_interval,
        }
    }

    /// Runs [`Scaler::tick`] every `interval` until `stop` completes.
    pub async fn run(
        self: Arc<Self>,
        ctx: Arc<Context>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = &mut stop => return,
            }
            if let Err(e) = self.tick(&ctx).await {
                tracing::warn!(error = %e, "scaler tick failed");
            }
        }
    }

    /// One pass over every Webhook: each one's backlog and replicas go into its
    /// status; those with the built-in engine are scaled.
    pub async fn tick(&self, ctx: &Context) -> crate::controller::Result<()> {
        let webhooks = ctx.webhooks().await?;
        ctx.metrics.record_backlog(&webhooks);
        let mut memory = self.memory.lock().await;
        for webhook in webhooks {
            // A Webhook being deleted is still scaled: its worker drains the queue
            // before the queues are deleted. Once they are gone, so is the Webhook.
            let uid = webhook.metadata.uid.clone().unwrap_or_default();
            let seen = memory.get(&uid).copied().unwrap_or_default();
            match self.scale_one(ctx, &webhook, seen).await {
                Ok(next) => {
                    memory.insert(uid, next);
                }
                Err(e) => {
                    tracing::warn!(webhook = %webhook.name_any(), error = %e, "scaling failed")
                }
            }
        }
        Ok(())
    }

    async fn scale_one(
        &self,
        ctx: &Context,
        webhook: &Webhook,
        seen: Seen,
    ) -> crate::controller::Result<Seen> {
        let Some(status) = &webhook.status else {
            return Ok(seen);
        };
        let Some(pair) = crate::desired::queue_pair_in(status) else {
            return Ok(seen);
        };
        let namespace = webhook.namespace().unwrap_or_default();
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = crate::desired::worker_name(webhook);
        let Some(deployment) = deployments.get_opt(&name).await? else {
            return Ok(seen);
        };
        let current = deployment.spec.replicas.unwrap_or(1);
        let ready = deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let now = Instant::now();
        let (backlog, dead_letter_read) = match seen.dead_letter {
            Some((dead_letter, at)) if now.duration_since(at) < self.dead_letter_interval => {
                let (visible, in_flight) = ctx.aws.queues.depth(&pair.queue).await?;
                let backlog = BacklogStatus {
                    visible,
                    in_flight,
                    dead_letter,
                };
                (backlog, at)
            }
            _ => {
                let counts = ctx.aws.queues.backlog(&pair).await?;
                let backlog = BacklogStatus {
                    visible: counts.visible,
                    in_flight: counts.in_flight,
                    dead_letter: counts.dead_letter,
                };
                (backlog, now)
            }
        };
        let seen = Seen {
            dead_letter: Some((backlog.dead_letter, dead_letter_read)),
            ..seen
        };
        let (visible, in_flight) = (backlog.visible, backlog.in_flight);
        let mut fields = Fields {
            backlog,
            replicas: Replicas {
                desired: current,
                ready,
            },
            last_scale_time: status.last_scale_time.clone(),
        };
        // KEDA (or anything else) scales this one: its numbers are still ours to show.
        if webhook.spec.worker.scaling.engine != ScalingEngine::Builtin {
            write_fields(ctx, webhook, &fields).await?;
            return Ok(seen);
        }
        let (decision, next) = decide(
            &Policy::of(webhook),
            current,
            visible,
            in_flight,
            seen.scaling,
            now,
        );
        if let Decision::Scale(replicas, reason) = &decision {
            deployments
                .patch_scale(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?;
            tracing::info!(webhook = %webhook.name_any(), from = current, to = replicas, %reason, "scaled the worker");
            ctx.metrics
                .scaled(&namespace, &webhook.name_any(), current, *replicas);
            fields.replicas.desired = *replicas;
            fields.last_scale_time = Some(crate::controller::status::now());
            let event = Event {
                type_: EventType::Normal,
                reason: "Scaled".to_owned(),
                note: Some(format!("worker replicas {current} -> {replicas}: {reason}")),
                action: "Scale".to_owned(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &webhook.object_ref(&())).await {
                tracing::warn!(error = %e, "could not publish an Event");
            }
        }
        write_fields(ctx, webhook, &fields).await?;
        Ok(Seen {
            scaling: next,
            ..seen
        })
    }
}

/// The status fields the scaler owns, and no other writer touches.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fields {
    /// Messages visible, in flight, and in the dead-letter queue.
    pub backlog: BacklogStatus,
    /// The worker Deployment's replicas, asked for and ready.
    pub replicas: Replicas,
    /// When the scaler last changed the replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
}

impl Fields {
    /// The fields as the Webhook's status has them, when it has them all.
    fn of(webhook: &Webhook) -> Option<Self> {
        let status = webhook.status.as_ref()?;
        Some(Self {
            backlog: status.backlog.clone()?,
            replicas: status.replicas.clone()?,
            last_scale_time: status.last_scale_time.clone(),
        })
    }
}

/// Server-side applies `fields` to the Webhook's status under [`MANAGER`], unless
/// the status already says so. Every field is sent each time: what a manager stops
/// sending, the API server removes.
async fn write_fields(
    ctx: &Context,
    webhook: &Webhook,
    fields: &Fields,
) -> crate::controller::Result<()> {
    if Fields::of(webhook).as_ref() == Some(fields) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": Webhook::api_version(&()),
        "kind": Webhook::kind(&()),
        "status": fields,
    });
    Api::<Webhook>::namespaced(ctx.client.clone(), &webhook.namespace().unwrap_or_default())
        .patch_status(
            &webhook.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min: 0,
            max: 10,
            target_per_replica: 20,
            concurrency: 10,
            scale_down_delay: Duration::from_secs(300),
        }
    }

    fn at(start: Instant, seconds: u64) -> Instant {
        start + Duration::from_secs(seconds)
    }

    #[test]
    fn a_spike_scales_up_at_once_and_never_past_max() {
        let t = Instant::now();
        let (d, _) = decide(&policy(), 1, 95, 5, Memory::default(), t);
        assert!(matches!(d, Decision::Scale(5, _)), "{d:?}");
        let (d, _) = decide(&policy(), 1, 100_000, 0, Memory::default(), t);
        assert!(matches!(d, Decision::Scale(10, _)), "clamped to max: {d:?}");
        let (d, _) = decide(&policy(), 10, 100_000, 0, Memory::default(), t);
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
    }

    #[test]
    fn a_drain_scales_down_only_after_the_delay() {
        let t = Instant::now();
        let (d, m) = decide(&policy(), 5, 10, 0, Memory::default(), t);
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        assert_eq!(m.lower_since, Some(t));
        let (d, m) = decide(&policy(), 5, 10, 0, m, at(t, 299));
        assert!(matches!(d, Decision::Hold(_)), "{d:?}");
        let (d, m) = decide(&policy(), 5, 10, 0, m, at(t, 300));
        assert!(matches!(d, Decision::Scale(1, _)), "{d:?}");
        assert_eq!(m, Memory::default());
    }

    #[test]
    fn flapping_demand_restarts_the_delay() {
        let t = Instant::now();
        let (_, m) = decide(&policy(), 5, 10, 0, Memory::default(), t);
        let (d, m) = decide(&policy(), 5, 100, 0, m, at(t, 200));
        assert!(matches!(d, Decision::Hold(_)), "demand back at 5: {d:?}");
        assert_eq!(m.lower_since, None, "the clock restarts");
        let (_, m) = decide(&policy(), 5, 10, 0, m, at(t, 250));
        let (d, _) = decide(&policy(), 5, 10, 0, m, at(t, 450));
        assert!(
            matches!(d, Decision::Hold(_)),
            "only 200 s of lower demand: {d:?}"
        );
    }

    #[test]
    fn messages_in_flight_hold_their_pods() {
        let t = Instant::now();
        let long_ago = Memory {
            lower_since: Some(t),
        };
        // 35 in flight with 10 per pod: 4 pods hold work, though the target wants 2.
        let (d, _) = decide(&policy(), 5, 0, 35, long_ago, at(t, 1000));
        assert!(matches!(d, Decision::Scale(4, _)), "{d:?}");
        let (d, _) = decide(&policy(), 4, 0, 35, long_ago, at(t, 1000));
        assert!(
            matches!(d, Decision::Hold(ref why) if why.contains("in flight")),
            "{d:?}"
        );
    }

    #[test]
    fn an_idle_queue_goes_to_zero_after_the_delay_when_min_is_zero() {
        let t = Instant::now();
        let (_, m) = decide(&policy(), 1, 0, 0, Memory::default(), t);
        let (d, _) = decide(&policy(), 1, 0, 0, m, at(t, 300));
        assert!(
            matches!(d, Decision::Scale(0, ref why) if why.contains("empty")),
            "{d:?}"
        );
        let with_min = Policy { min: 1, ..policy() };
        let (d, _) = decide(&with_min, 1, 0, 0, Memory::default(), at(t, 10_000));
        assert!(matches!(d, Decision::Hold(_)), "min 1 keeps one: {d:?}");
        let (d, _) = decide(&policy(), 0, 1, 0, Memory::default(), t);
        assert!(
            matches!(d, Decision::Scale(1, _)),
            "from zero at the first message: {d:?}"
        );
    }
}
