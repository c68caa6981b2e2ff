//! What deletion waits for, what releases it, and what it leaves behind.

use anyhow::{Context as _, Result, ensure};
use aws_sdk_route53::types::RrType;
use hookline_crds::conditions::READY;
use hookline_crds::reasons::{DEAD_LETTER_NOT_EMPTY, DRAINING, IN_USE};
use hookline_operator::aws::dns::Record;
use serde_json::json;

use crate::harness::{Scenario, queue_names};
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(
    deletion_removes_the_route_then_waits_for_the_queue_to_drain_then_for_the_dead_letter_queue,
    the_queue_loss_annotation_releases_a_queue_that_still_holds_messages,
    a_gateway_waits_for_its_webhooks_then_removes_every_part_and_only_its_own,
);

async fn deletion_removes_the_route_then_waits_for_the_queue_to_drain_then_for_the_dead_letter_queue()
-> Result<()> {
    let mut s = Scenario::new("drain", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let (queue, dlq) = queue_names(&s.namespace, "stripe");
    s.aws.set_depth(&queue, 1, 0);
    s.aws.set_depth(&dlq, 2, 0);
    s.delete_webhook("stripe").await?;
    s.until("Draining", |p| async move {
        p.webhook_is("stripe", READY, "False", DRAINING).await
    })
    .await?;
    let status = s.gateway_now().await?.status.context("status")?;
    let (api_id, stage) = (
        status.rest_api_id.context("id")?,
        status.stage_name.context("stage")?,
    );
    ensure!(
        !s.aws.live_routes(&api_id, &stage).contains_key("/stripe"),
        "the route is gone from the stage first"
    );
    ensure!(
        s.aws.queue(&queue).is_some() && s.aws.queue(&dlq).is_some(),
        "both queues kept while draining"
    );

    // The worker delivers the last message (it lives until the Webhook is gone).
    s.aws.set_depth(&queue, 0, 0);
    s.until("DeadLetterQueueNotEmpty", |p| async move {
        p.webhook_is("stripe", READY, "False", DEAD_LETTER_NOT_EMPTY)
            .await
    })
    .await?;
    ensure!(s.aws.queue(&dlq).is_some(), "the DLQ kept");
    s.patch_webhook(
        "stripe",
        json!({"metadata": {"annotations": {"hookline.dev/allow-dlq-loss": "true"}}}),
    )
    .await?;
    s.until("the Webhook gone", |p| async move {
        p.webhook_gone("stripe").await
    })
    .await?;
    ensure!(
        s.aws.queue(&queue).is_none() && s.aws.queue(&dlq).is_none(),
        "both queues deleted"
    );
    Ok(())
}

async fn the_queue_loss_annotation_releases_a_queue_that_still_holds_messages() -> Result<()> {
    let mut s = Scenario::new("loss", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let (queue, _) = queue_names(&s.namespace, "stripe");
    s.aws.set_depth(&queue, 0, 4);
    s.delete_webhook("stripe").await?;
    s.until("Draining (in flight counts)", |p| async move {
        p.webhook_is("stripe", READY, "False", DRAINING).await
    })
    .await?;
    s.patch_webhook(
        "stripe",
        json!({"metadata": {"annotations": {"hookline.dev/allow-queue-loss": "true"}}}),
    )
    .await?;
    s.until("the Webhook gone", |p| async move {
        p.webhook_gone("stripe").await
    })
    .await?;
    ensure!(
        s.aws.queue(&queue).is_none(),
        "the queue deleted with its messages"
    );
    Ok(())
}

async fn a_gateway_waits_for_its_webhooks_then_removes_every_part_and_only_its_own() -> Result<()> {
    let mut s = Scenario::new("gwdelete", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let hostname = format!("hooks.{}", s.zone.0);
    let theirs = Record::txt(&format!("other.{}", s.zone.0), "someone else's", 300).normalized();
    let zone_id = s.zone.1.clone();
    s.aws.edit(|state| {
        if let Some(zone) = state.zones.get_mut(&zone_id) {
            zone.records.push(theirs.clone());
        }
    });
    let status = s.gateway_now().await?.status.context("status")?;
    let api_id = status.rest_api_id.clone().context("id")?;
    let certificate = status.certificate_arn.clone().context("certificate")?;
    s.gateways().delete(&s.gateway, &Default::default()).await?;
    s.until("InUse while a Webhook is attached", |p| async move {
        p.gateway_is(READY, "False", IN_USE).await
    })
    .await?;
    ensure!(
        s.aws.rest_api(&api_id).is_some(),
        "nothing deleted while in use"
    );
    s.delete_webhook("stripe").await?;
    s.until("the gateway gone", |p| async move {
        Ok(p.gateways.get_opt(&p.gateway).await?.is_none())
    })
    .await?;
    ensure!(s.aws.rest_api(&api_id).is_none(), "REST API deleted");
    ensure!(s.aws.domain(&hostname).is_none(), "custom domain deleted");
    ensure!(
        s.aws.certificate(&certificate).is_none(),
        "certificate deleted"
    );
    ensure!(
        !s.records(&hostname)
            .iter()
            .any(|r| r.kind == RrType::A || r.kind == RrType::Aaaa),
        "alias records deleted"
    );
    ensure!(
        s.records(&format!("_hookline.{hostname}")).is_empty(),
        "ownership record deleted"
    );
    ensure!(
        s.aws
            .read(|state| state.roles.is_empty() && state.log_groups.is_empty()),
        "role and log group deleted"
    );
    ensure!(
        s.records(&theirs.name) == vec![theirs],
        "someone else's record untouched"
    );
    s.calls_are_known()
}
