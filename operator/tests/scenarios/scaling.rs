//! The scaler's decisions, on queue depths set in memory.

use anyhow::{Context as _, Result, ensure};
use hookline_operator::scaler::Scaler;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use serde_json::json;
use std::time::Duration;

use crate::harness::{Scenario, queue_names};
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(the_scaler_scales_up_at_once_never_past_max_and_down_only_after_the_delay);

async fn the_scaler_scales_up_at_once_never_past_max_and_down_only_after_the_delay() -> Result<()> {
    let mut s = Scenario::new("scale", json!({})).await?;
    ready_webhook(
        &mut s,
        "scaled",
        "/scaled",
        json!({"worker": {
            "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
            "scaling": {"minReplicas": 0, "maxReplicas": 3, "targetBacklogPerReplica": 5, "scaleDownDelaySeconds": 2}
        }}),
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.namespace);
    let replicas =
        || async { Ok::<_, anyhow::Error>(deployments.get("scaled-worker").await?.spec.replicas) };
    let queue = queue_names(&s.namespace, "scaled").0;
    let scaler = Scaler::default();

    s.aws.set_depth(&queue, 12, 0);
    scaler.tick(&s.ctx).await?;
    ensure!(
        replicas().await? == Some(3),
        "12 messages at 5 per replica: 3 at once"
    );
    s.aws.set_depth(&queue, 40, 0);
    scaler.tick(&s.ctx).await?;
    ensure!(replicas().await? == Some(3), "never past max");
    let status = s
        .webhook_now("scaled")
        .await?
        .and_then(|w| w.status)
        .context("status")?;
    ensure!(status.replicas.map(|r| r.desired) == Some(3) && status.last_scale_time.is_some());
    s.aws.set_depth(&queue, 0, 2);
    scaler.tick(&s.ctx).await?;
    ensure!(
        replicas().await? == Some(3),
        "never down while messages are in flight"
    );
    s.aws.set_depth(&queue, 0, 0);
    scaler.tick(&s.ctx).await?;
    ensure!(
        replicas().await? == Some(3),
        "drained, but the delay has not passed"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    scaler.tick(&s.ctx).await?;
    ensure!(
        replicas().await? == Some(0),
        "drained past the delay: to zero"
    );
    Ok(())
}
