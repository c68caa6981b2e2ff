//! The steady-state resync: an unchanged Webhook or gateway costs at most two AWS
//! reads; drift those reads see is repaired by that resync, the rest by the audit
//! (the first pass after a start, then every audit interval).

use anyhow::{Context as _, Result, ensure};
use hookline_crds::conditions::READY;
use hookline_crds::reasons::RECONCILED;
use serde_json::json;
use std::time::Duration;

use crate::harness::{Scenario, queue_names};
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(
    an_unchanged_webhook_resyncs_with_two_reads_and_no_writes,
    an_unchanged_gateway_resyncs_with_two_reads_and_no_writes,
    a_queue_deleted_by_hand_is_created_again_by_the_next_resync,
    a_route_method_deleted_by_hand_is_created_again_by_the_next_resync,
    a_custom_domain_deleted_by_hand_is_created_again_by_the_next_resync,
    a_spec_change_runs_the_full_pass,
    a_dead_letter_queue_deleted_by_hand_is_created_again_by_the_audit,
);

fn sorted(mut calls: Vec<String>) -> Vec<String> {
    calls.sort();
    calls
}

async fn an_unchanged_webhook_resyncs_with_two_reads_and_no_writes() -> Result<()> {
    let mut s = Scenario::new("steadyhook", json!({})).await?;
    ready_webhook(
        &mut s,
        "stripe",
        "/stripe",
        json!({"throttling": {"rateLimit": 5, "burstLimit": 10}}),
    )
    .await?;
    for round in ["after the full pass", "and again"] {
        s.aws.reset_calls();
        s.reconcile_webhook("stripe").await?;
        let (reads, writes) = s.reads_and_writes();
        ensure!(writes.is_empty(), "{round}: wrote {writes:?}");
        ensure!(
            sorted(reads.clone()) == ["GetMethod", "GetQueueAttributes"],
            "{round}: read {reads:?}"
        );
        ensure!(
            s.probe()
                .webhook_is("stripe", READY, "True", RECONCILED)
                .await?,
            "{round}: still Ready"
        );
    }
    // A restarted operator (or a new leader) audits once, then reads two again.
    s.restart();
    s.aws.reset_calls();
    s.reconcile_webhook("stripe").await?;
    let (reads, writes) = s.reads_and_writes();
    ensure!(writes.is_empty(), "the audit wrote {writes:?}");
    ensure!(
        reads.iter().any(|r| r == "GetQueueUrl") && reads.len() > 2,
        "the first pass after a start is the full one: {reads:?}"
    );
    s.aws.reset_calls();
    s.reconcile_webhook("stripe").await?;
    ensure!(
        s.reads_and_writes().0.len() <= 2,
        "{:?}",
        s.reads_and_writes()
    );
    s.calls_are_known()
}

async fn an_unchanged_gateway_resyncs_with_two_reads_and_no_writes() -> Result<()> {
    let mut s = Scenario::new("steadygw", json!({})).await?;
    ready_webhook(
        &mut s,
        "stripe",
        "/stripe",
        json!({"throttling": {"rateLimit": 5, "burstLimit": 10}}),
    )
    .await?;
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    // The pass after the Webhook went live: its deployment, if any, is done.
    s.reconcile_gateway().await?;
    for round in ["after the full pass", "and again"] {
        s.aws.reset_calls();
        s.reconcile_gateway().await?;
        let (reads, writes) = s.reads_and_writes();
        ensure!(writes.is_empty(), "{round}: wrote {writes:?}");
        ensure!(
            sorted(reads.clone()) == ["GetDomainName", "GetStage"],
            "{round}: read {reads:?}"
        );
    }
    ensure!(
        s.probe().gateway_is(READY, "True", RECONCILED).await?,
        "still Ready"
    );
    s.calls_are_known()
}

async fn a_queue_deleted_by_hand_is_created_again_by_the_next_resync() -> Result<()> {
    let mut s = Scenario::new("steadyqueue", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let queue = queue_names(&s.namespace, "stripe").0;
    s.aws.edit(|state| state.queues.remove(&queue));
    s.reconcile_webhook("stripe").await?;
    ensure!(s.aws.queue(&queue).is_some(), "the queue is back");
    Ok(())
}

async fn a_route_method_deleted_by_hand_is_created_again_by_the_next_resync() -> Result<()> {
    let mut s = Scenario::new("steadyroute", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let api_id = s
        .gateway_now()
        .await?
        .status
        .and_then(|st| st.rest_api_id)
        .context("REST API id")?;
    let has_method = |s: &Scenario| {
        s.aws
            .rest_api(&api_id)
            .and_then(|api| api.resources.get("/stripe").cloned())
            .is_some_and(|r| r.post.is_some())
    };
    s.aws.edit(|state| {
        if let Some(resource) = state
            .rest_apis
            .get_mut(&api_id)
            .and_then(|api| api.resources.get_mut("/stripe"))
        {
            resource.post = None;
        }
    });
    ensure!(!has_method(&s));
    s.reconcile_webhook("stripe").await?;
    ensure!(has_method(&s), "the POST method is back");
    ready_webhook_again(&mut s).await
}

async fn ready_webhook_again(s: &mut Scenario) -> Result<()> {
    s.until("stripe Ready again", |p| async move {
        p.webhook_is("stripe", READY, "True", RECONCILED).await
    })
    .await
}

async fn a_custom_domain_deleted_by_hand_is_created_again_by_the_next_resync() -> Result<()> {
    let mut s = Scenario::new("steadydomain", json!({})).await?;
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    s.reconcile_gateway().await?;
    let hostname = format!("hooks.{}", s.zone.0);
    s.aws.edit(|state| state.domains.remove(&hostname));
    s.reconcile_gateway().await?;
    ensure!(
        s.aws.domain(&hostname).is_some(),
        "the custom domain is back"
    );
    Ok(())
}

async fn a_spec_change_runs_the_full_pass() -> Result<()> {
    let mut s = Scenario::new("steadychange", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    s.patch_webhook(
        "stripe",
        json!({"spec": {"delivery": {"visibilityTimeoutSeconds": 90}}}),
    )
    .await?;
    s.aws.reset_calls();
    s.reconcile_webhook("stripe").await?;
    let queue = queue_names(&s.namespace, "stripe").0;
    ensure!(
        s.aws
            .queue(&queue)
            .and_then(|q| q.attributes.get("VisibilityTimeout").cloned())
            .as_deref()
            == Some("90"),
        "the new visibility timeout, in the first reconcile after the change: {:?}",
        s.reads_and_writes()
    );
    Ok(())
}

/// The steady reads do not look at the dead-letter queue: the audit does, on the
/// first pass after a start and then every audit interval.
async fn a_dead_letter_queue_deleted_by_hand_is_created_again_by_the_audit() -> Result<()> {
    let mut s = Scenario::new("steadyaudit", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let dead_letter = queue_names(&s.namespace, "stripe").1;
    s.aws.edit(|state| state.queues.remove(&dead_letter));
    s.restart();
    s.reconcile_webhook("stripe").await?;
    ensure!(s.aws.queue(&dead_letter).is_some(), "back after a restart");
    s.ctx = s.ctx.clone().with_audit_interval(Duration::ZERO);
    s.reconcile_webhook("stripe").await?;
    s.aws.edit(|state| state.queues.remove(&dead_letter));
    s.reconcile_webhook("stripe").await?;
    ensure!(
        s.aws.queue(&dead_letter).is_some(),
        "back at the audit, every pass with an interval of 0"
    );
    Ok(())
}
