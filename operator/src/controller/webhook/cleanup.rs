//! A Webhook's deletion (the finalizer's Cleanup): the route first, so nothing new
//! arrives; then, once every accepted message is delivered (or loss is allowed by
//! annotation), the queues and the worker's identity. It works from the ids in
//! status, so a spec that became invalid does not keep its AWS objects alive.

use hookline_crds::conditions::READY;
use hookline_crds::reasons::{DEAD_LETTER_NOT_EMPTY, DRAIN_STALLED, DRAINING, NOT_OWNED};
use hookline_crds::{AuthMode, DeletionPolicy, Webhook, WebhookGateway, WebhookStatus};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::super::context::Context;
use super::super::index::authorizer_name;
use super::super::{ALLOW_DLQ_LOSS, ALLOW_QUEUE_LOSS, Error, Result, identity, status};
use super::apply::revoke_invoke_permissions;
use crate::aws::ApiRef;
use crate::conditions::Report;
use crate::desired::{self, webhook_owner};
use crate::names;

/// Deletes what the Webhook made in AWS, or says (in `Ready`) what it waits for.
pub async fn cleanup(api: &Api<Webhook>, webhook: &Webhook, ctx: &Context) -> Result<Action> {
    let namespace = webhook.namespace().ok_or(Error::Malformed("namespace"))?;
    if let Some(uid) = &webhook.metadata.uid {
        ctx.steady.forget(uid);
    }
    if webhook.spec.deletion_policy == DeletionPolicy::Retain {
        return Ok(Action::await_change());
    }
    let status = webhook.status.clone().unwrap_or_default();
    remove_route(ctx, webhook, &namespace, &status).await?;
    if let Some((report, blocked)) = queues_held(ctx, webhook, &status).await? {
        let mut next = status.clone();
        status::merge_reports(ctx, webhook, &mut next.conditions, &[report], "").await;
        super::write(api, webhook, Some(&status), &next).await?;
        // An error, not an Action: a cleanup that returns Ok has its finalizer
        // removed (kube-runtime's finalizer contract).
        return Err(Error::Blocked(blocked));
    }
    let name = names::queue_base(&ctx.settings.name_prefix, &namespace, &webhook.name_any());
    match ctx
        .aws
        .queues
        .delete_pair(&name, &webhook_owner(webhook))
        .await
    {
        // A queue of someone else's under the Webhook's name was never this
        // Webhook's (its creation was refused with NotOwned), so deletion leaves it and
        // does not wait for it: nothing the Webhook accepted is in it.
        Err(e) if e.is_not_owned() => {
            tracing::warn!(webhook = %webhook.name_any(), error = %e, "left a queue that is not the webhook's");
            let event = Event {
                type_: EventType::Warning,
                reason: NOT_OWNED.to_owned(),
                note: Some(
                    format!("{e}; deletion leaves it as it is")
                        .chars()
                        .take(1000)
                        .collect(),
                ),
                action: "Delete".to_owned(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &webhook.object_ref(&())).await {
                tracing::warn!(error = %e, "could not publish an Event");
            }
        }
        other => other?,
    }
    identity::release(ctx, webhook, &namespace).await?;
    tracing::info!(webhook = %webhook.name_any(), "deleted the webhook's AWS objects");
    Ok(Action::await_change())
}

/// The route, its deployment (so the live stage stops accepting requests into the
/// queue), its authorizers and their grants, and its API key.
async fn remove_route(
    ctx: &Context,
    webhook: &Webhook,
    namespace: &str,
    status: &WebhookStatus,
) -> Result<()> {
    let aws = &ctx.aws;
    let Some(gateway) = (match &status.gateway {
        Some(name) => {
            Api::<WebhookGateway>::all(ctx.client.clone())
                .get_opt(name)
                .await?
        }
        None => None,
    }) else {
        return Ok(());
    };
    let gs = gateway.status.clone().unwrap_or_default();
    if let (Some(api_id), Some(root), Some(stage)) =
        (gs.rest_api_id, gs.root_resource_id, gs.stage_name)
    {
        let rest_api = ApiRef {
            id: api_id.clone(),
            root_resource_id: root,
        };
        aws.apis.delete_route(&rest_api, &webhook.spec.path).await?;
        // Deployed here rather than asked of the gateway: the queue may go only
        // once the live stage no longer accepts requests into it.
        ctx.deployer
            .deploy_after(&*aws.apis, &api_id, &stage, tokio::time::Instant::now())
            .await?;
        let deleted = aws
            .apis
            .delete_authorizers(
                &api_id,
                &authorizer_name(namespace, &webhook.name_any()),
                None,
            )
            .await?;
        revoke_invoke_permissions(&*aws.functions, &api_id, &deleted).await?;
    }
    if webhook.spec.auth.mode == AuthMode::ApiKey {
        aws.apis
            .delete_api_key(
                &names::webhook_api_key(&ctx.settings.name_prefix, namespace, &webhook.name_any()),
                &webhook_owner(webhook),
            )
            .await?;
    }
    Ok(())
}

/// Why the queues must stay for now, if they must: every message the route accepted
/// is delivered before its queue goes (the worker Deployment lives until the Webhook
/// is gone, its owner reference, and the scaler keeps sizing it while the queue
/// drains), and a non-empty dead-letter queue is kept unless loss is allowed. The
/// report for `Ready`, and the reconcile error's words.
async fn queues_held(
    ctx: &Context,
    webhook: &Webhook,
    status: &WebhookStatus,
) -> Result<Option<(Report, String)>> {
    let who = format!(
        "{}/{}",
        webhook.namespace().unwrap_or_default(),
        webhook.name_any()
    );
    let Some(pair) = desired::queue_pair_in(status) else {
        return Ok(None);
    };
    let annotated = |key: &str| webhook.annotations().get(key).is_some_and(|v| v == "true");
    let backlog = match ctx.aws.queues.backlog(&pair).await {
        Ok(backlog) => Some(backlog),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let queued = backlog.map_or(0, |b| b.visible + b.in_flight + b.delayed);
    if queued > 0 && !annotated(ALLOW_QUEUE_LOSS) {
        return Ok(Some((
            drain_report(webhook, queued, ctx.timing.drain_stall),
            format!("{who} is draining {queued} message(s)"),
        )));
    }
    let dead = backlog.map_or(0, |b| b.dead_letter);
    if dead > 0 && !annotated(ALLOW_DLQ_LOSS) {
        return Ok(Some((
            Report::failed(
                READY,
                DEAD_LETTER_NOT_EMPTY,
                format!(
                    "{dead} message(s) in the dead-letter queue; redrive or inspect them, or annotate {ALLOW_DLQ_LOSS}=\"true\" to delete anyway"
                ),
            ),
            format!("dead-letter queue of {who} is not empty"),
        )));
    }
    Ok(None)
}

/// What deletion says while the main queue still holds `queued` messages: draining,
/// or stalled once deletion began longer than `stall` ago.
fn drain_report(webhook: &Webhook, queued: i64, stall: std::time::Duration) -> Report {
    let waited = webhook
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| {
            let since = std::time::SystemTime::from(t.0);
            std::time::SystemTime::now().duration_since(since).ok()
        })
        .unwrap_or_default();
    if waited > stall {
        Report::failed(
            READY,
            DRAIN_STALLED,
            format!(
                "{queued} message(s) still queued {} min after deletion began; check WorkerReady and the worker's logs (is its Deployment still there, is the handler failing?), or annotate {ALLOW_QUEUE_LOSS}=\"true\" to delete the queue with them",
                waited.as_secs() / 60
            ),
        )
    } else {
        Report::failed(
            READY,
            DRAINING,
            format!(
                "deleting: the route is gone; the worker is delivering the {queued} message(s) still queued, then the queues are deleted"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn deleted_ago(ago: Duration) -> Webhook {
        let mut webhook: Webhook = serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n"},
            "spec": {"path": "/w", "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}}
        }))
        .unwrap();
        let since = std::time::SystemTime::now() - ago;
        webhook.metadata.deletion_timestamp =
            Some(Time(k8s_openapi::jiff::Timestamp::try_from(since).unwrap()));
        webhook
    }

    #[test]
    fn a_drain_is_reported_as_stalled_only_past_the_bound() {
        let stall = Duration::from_secs(3600);
        let fresh = drain_report(&deleted_ago(Duration::from_secs(60)), 7, stall);
        assert_eq!((fresh.ok, fresh.reason.as_str()), (false, DRAINING));
        assert!(fresh.message.contains("7 message(s)"), "{}", fresh.message);
        let stalled = drain_report(&deleted_ago(Duration::from_secs(7300)), 7, stall);
        assert_eq!(
            (stalled.ok, stalled.reason.as_str()),
            (false, DRAIN_STALLED)
        );
        assert!(stalled.message.contains("121 min"), "{}", stalled.message);
        assert!(
            stalled.message.contains(ALLOW_QUEUE_LOSS),
            "{}",
            stalled.message
        );
    }
}
