//! What an AWS failure of one operation shows, and what the operator does with an
//! object under its name that is not its own.

use anyhow::{Context as _, Result, ensure};
use hookline_crds::conditions::{
    API_READY, CERTIFICATE_READY, DNS_READY, QUEUE_READY, READY, ROUTE_READY,
};
use hookline_crds::reasons::{AWS_ERROR, NOT_OWNED, PROGRESSING, RECONCILED};
use hookline_operator::aws::memory::MemoryQueue;
use hookline_operator::aws::{AwsError, Service};
use serde_json::json;

use crate::harness::{REGION, Scenario, queue_names};
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(
    a_failed_webhook_operation_is_reported_on_its_part_until_it_succeeds,
    a_failed_gateway_operation_is_reported_on_its_part_and_spares_the_others,
    aws_throttling_reads_as_retrying_never_as_a_failure,
    a_webhook_waiting_for_a_deployment_does_not_ask_aws_whether_it_is_live,
    a_foreign_queue_under_the_webhooks_name_is_never_adopted_or_deleted_nor_blocks_deletion,
);

fn refused(service: Service, operation: &'static str) -> AwsError {
    AwsError::Invalid {
        service,
        operation,
        code: "AccessDenied".to_owned(),
        message: format!("not allowed to {operation} (scenario)"),
    }
}

/// Whether `condition` is False with reason AwsError and a message naming `operation`.
async fn failed_with(
    p: &crate::harness::Probe,
    webhook: Option<&str>,
    condition: &str,
    operation: &str,
) -> Result<bool> {
    let conditions = match webhook {
        Some(name) => p
            .webhooks
            .get(name)
            .await?
            .status
            .map(|s| s.conditions)
            .unwrap_or_default(),
        None => p
            .gateways
            .get(&p.gateway)
            .await?
            .status
            .map(|s| s.conditions)
            .unwrap_or_default(),
    };
    Ok(conditions.iter().any(|c| {
        c.type_ == condition
            && c.status == "False"
            && c.reason == AWS_ERROR
            && c.message.contains(operation)
    }))
}

async fn a_failed_webhook_operation_is_reported_on_its_part_until_it_succeeds() -> Result<()> {
    let table = [
        (Service::Sqs, "CreateQueue", QUEUE_READY),
        (Service::Sqs, "GetQueueAttributes", QUEUE_READY),
        (Service::ApiGateway, "PutIntegration", ROUTE_READY),
        (Service::ApiGateway, "CreateResource", ROUTE_READY),
    ];
    for (service, operation, part) in table {
        let mut s = Scenario::new("wfail", json!({})).await?;
        s.until("the gateway Ready", |p| async move {
            p.gateway_is(READY, "True", RECONCILED).await
        })
        .await?;
        s.aws.fail(operation, refused(service, operation));
        s.create_webhook("stripe", "/stripe", json!({})).await?;
        s.until(&format!("{operation} on {part}"), |p| async move {
            failed_with(&p, Some("stripe"), part, operation).await
        })
        .await
        .with_context(|| format!("{operation} → {part}"))?;
        ensure!(
            s.probe()
                .webhook_condition("stripe", READY)
                .await?
                .is_some_and(|(st, _)| st == "False"),
            "{operation}: not Ready"
        );
        s.aws.heal(operation);
        s.until(&format!("Ready once {operation} works"), |p| async move {
            p.webhook_is("stripe", READY, "True", RECONCILED).await
        })
        .await?;
    }
    Ok(())
}

/// AWS throttling a call (after the caller's own retries) is retried by the next
/// pass: the part reads `Progressing`, "throttled, retrying", never `AwsError`, on
/// the Webhook and on the gateway, and both become Ready once AWS lets it through.
async fn aws_throttling_reads_as_retrying_never_as_a_failure() -> Result<()> {
    let throttled = |service, operation| AwsError::Throttled {
        service,
        operation,
        message: "Too Many Requests (scenario)".to_owned(),
    };
    let retrying = |conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
                    part: &str| {
        let seen: Vec<_> = conditions
            .iter()
            .filter(|c| c.message.contains("throttled"))
            .collect();
        let ok = seen.iter().all(|c| c.reason == PROGRESSING)
            && seen
                .iter()
                .any(|c| c.type_ == part && c.message.contains("throttled, retrying"));
        (ok, seen.iter().all(|c| c.reason != AWS_ERROR))
    };
    let mut s = Scenario::new("throttle", json!({})).await?;
    s.aws.fail(
        "CreateRestApi",
        throttled(Service::ApiGateway, "CreateRestApi"),
    );
    s.until(
        "the gateway's ApiReady: throttled, retrying",
        |p| async move {
            let gateway = p.gateways.get(&p.gateway).await?;
            let (ok, never_failed) =
                retrying(gateway.status.unwrap_or_default().conditions, API_READY);
            ensure!(
                never_failed,
                "throttling surfaced as AwsError on the gateway"
            );
            Ok(ok)
        },
    )
    .await?;
    s.aws.heal("CreateRestApi");
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    s.aws
        .fail("PutMethod", throttled(Service::ApiGateway, "PutMethod"));
    s.create_webhook("stripe", "/stripe", json!({})).await?;
    s.until(
        "the Webhook's RouteReady: throttled, retrying",
        |p| async move {
            let webhook = p.webhooks.get("stripe").await?;
            let (ok, never_failed) =
                retrying(webhook.status.unwrap_or_default().conditions, ROUTE_READY);
            ensure!(
                never_failed,
                "throttling surfaced as AwsError on the Webhook"
            );
            Ok(ok)
        },
    )
    .await?;
    s.aws.heal("PutMethod");
    s.until("the Webhook Ready", |p| async move {
        p.webhook_is("stripe", READY, "True", RECONCILED).await
    })
    .await?;
    Ok(())
}

/// While a Webhook's route waits in the request for the next deployment (here, the
/// gateway's CreateDeployment keeps failing), its passes do not ask AWS whether it
/// is live (GetMethod, GetStage, GetDeployment) to learn what the operator knows: many new Webhooks waiting at once would
/// otherwise spend the account's API Gateway quota that the routes being made need.
async fn a_webhook_waiting_for_a_deployment_does_not_ask_aws_whether_it_is_live() -> Result<()> {
    let mut s = Scenario::new("waiting", json!({})).await?;
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    s.aws.fail(
        "CreateDeployment",
        AwsError::Other {
            service: Service::ApiGateway,
            operation: "CreateDeployment",
            message: "InternalFailure (scenario)".to_owned(),
            retryable: true,
        },
    );
    s.create_webhook("stripe", "/stripe", json!({})).await?;
    s.pass().await?;
    // Only `route_is_live` reads deployments (the gateway reads its stage too).
    let reads = s.aws.calls("GetDeployment");
    for _ in 0..3 {
        s.pass().await?;
    }
    ensure!(
        s.aws.calls("GetDeployment") == reads,
        "a waiting Webhook asked AWS {} times whether its route is live",
        s.aws.calls("GetDeployment") - reads
    );
    s.aws.heal("CreateDeployment");
    s.until("the Webhook Ready once deployed", |p| async move {
        p.webhook_is("stripe", READY, "True", RECONCILED).await
    })
    .await?;
    Ok(())
}

async fn a_failed_gateway_operation_is_reported_on_its_part_and_spares_the_others() -> Result<()> {
    // (service, operation, the part that fails, a part that still succeeds)
    let table = [
        (
            Service::ApiGateway,
            "CreateRestApi",
            API_READY,
            CERTIFICATE_READY,
        ),
        (
            Service::Acm,
            "RequestCertificate",
            CERTIFICATE_READY,
            API_READY,
        ),
        (Service::Iam, "CreateRole", API_READY, CERTIFICATE_READY),
        (
            Service::ApiGateway,
            "CreateDomainName",
            DNS_READY,
            API_READY,
        ),
    ];
    for (service, operation, part, spared) in table {
        let mut s = Scenario::new("gfail", json!({})).await?;
        s.aws.fail(operation, refused(service, operation));
        s.until(
            &format!("{operation} on {part}, {spared} True"),
            |p| async move {
                Ok(failed_with(&p, None, part, operation).await?
                    && p.gateway_is(spared, "True", RECONCILED).await?)
            },
        )
        .await
        .with_context(|| format!("{operation} → {part}"))?;
        s.aws.heal(operation);
        s.until(&format!("Ready once {operation} works"), |p| async move {
            p.gateway_is(READY, "True", RECONCILED).await
        })
        .await?;
    }
    Ok(())
}

async fn a_foreign_queue_under_the_webhooks_name_is_never_adopted_or_deleted_nor_blocks_deletion()
-> Result<()> {
    let mut s = Scenario::new("foreignq", json!({})).await?;
    ready_webhook(&mut s, "other", "/other", json!({})).await?;
    let (queue, _) = queue_names(&s.namespace, "stripe");
    let mut foreign = MemoryQueue::new(REGION, &queue);
    foreign
        .attributes
        .insert("VisibilityTimeout".into(), "7".into());
    foreign.visible = 3;
    s.aws
        .edit(|state| state.queues.insert(queue.clone(), foreign.clone()));
    s.create_webhook("stripe", "/stripe", json!({})).await?;
    s.until("NotOwned on QueueReady", |p| async move {
        p.webhook_is("stripe", QUEUE_READY, "False", NOT_OWNED)
            .await
    })
    .await?;
    ensure!(
        s.aws.queue(&queue) == Some(foreign.clone()),
        "the foreign queue is left as it was"
    );
    let (_, dead_letter) = queue_names(&s.namespace, "stripe");
    let ours_too = s.aws.queue(&dead_letter).is_some();
    s.delete_webhook("stripe").await?;
    // The queue was never the Webhook's, so its deletion neither waits for it nor
    // takes it; a dead-letter queue of ours under the name goes.
    s.until("the Webhook gone", |p| async move {
        p.webhook_gone("stripe").await
    })
    .await?;
    ensure!(
        s.aws.queue(&queue) == Some(foreign),
        "and is not deleted with the Webhook"
    );
    ensure!(
        s.aws.queue(&dead_letter).is_none(),
        "our dead-letter queue is deleted"
    );
    ensure!(
        s.aws.calls("DeleteQueue") == u64::from(ours_too),
        "DeleteQueue only for our own dead-letter queue"
    );
    Ok(())
}
