//! A Webhook's own parts and the checks made before any AWS call.

use anyhow::{Context as _, Result, ensure};
use hookline_crds::conditions::{QUEUE_READY, READY, ROUTE_READY, WORKER_READY};
use hookline_crds::reasons::{
    NAMESPACE_NOT_ALLOWED, PATH_CONFLICT, RECONCILED, RESOURCES_PER_API_QUOTA, SECRET_NOT_FOUND,
};
use hookline_operator::aws::templates::Handshake;
use hookline_operator::aws::{OWNER_TAG, memory::is_write};
use hookline_operator::controller::context::Context;
use hookline_operator::quotas::Quotas;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::harness::{Scenario, queue_names};
use crate::scenario;

scenario!(
    a_webhook_becomes_ready_with_its_queue_pair_route_and_worker,
    a_route_is_ready_only_once_a_deployment_containing_it_is_live,
    the_newer_webhook_on_a_taken_path_is_refused_and_the_older_keeps_it,
    a_namespace_the_gateway_does_not_allow_is_refused_before_any_aws_call,
    a_missing_or_empty_signature_secret_is_refused_before_any_aws_call,
    a_webhook_that_would_exceed_a_quota_is_refused_before_any_aws_call,
    a_spec_change_reaches_the_queue,
    a_queue_deleted_by_hand_is_created_again,
    a_steady_state_pass_makes_no_aws_writes,
    a_handshake_follows_its_secret_and_goes_with_the_spec,
);

/// Creates Webhook `name` at `path` and passes until it is Ready.
pub async fn ready_webhook(
    s: &mut Scenario,
    name: &str,
    path: &str,
    extra: serde_json::Value,
) -> Result<()> {
    s.create_webhook(name, path, extra).await?;
    let name = name.to_owned();
    s.until(&format!("{name} Ready"), |p| {
        let name = name.clone();
        async move { p.webhook_is(&name, READY, "True", RECONCILED).await }
    })
    .await
}

async fn a_webhook_becomes_ready_with_its_queue_pair_route_and_worker() -> Result<()> {
    let mut s = Scenario::new("ready", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/payments/stripe", json!({})).await?;
    let hook = s.webhook_now("stripe").await?.context("the Webhook")?;
    let uid = hook.metadata.uid.clone().unwrap_or_default();
    let status = hook.status.clone().context("status")?;
    let (queue_name, dlq_name) = queue_names(&s.namespace, "stripe");
    let queue = s.aws.queue(&queue_name).context("the queue")?;
    let dlq = s.aws.queue(&dlq_name).context("the dead-letter queue")?;
    ensure!(
        queue.tags.get(OWNER_TAG) == Some(&uid),
        "queue tagged with the Webhook's uid: {:?}",
        queue.tags
    );
    ensure!(dlq.tags.get(OWNER_TAG) == Some(&uid), "DLQ tagged too");
    ensure!(
        queue
            .attributes
            .get("RedrivePolicy")
            .is_some_and(|p| p.contains(&dlq.arn)),
        "the queue redrives into its DLQ: {:?}",
        queue.attributes
    );
    ensure!(
        dlq.attributes
            .get("RedriveAllowPolicy")
            .is_some_and(|p| p.contains(&queue.arn)),
        "the DLQ accepts only its queue: {:?}",
        dlq.attributes
    );
    ensure!(status.queue.as_ref().map(|q| q.arn.as_str()) == Some(queue.arn.as_str()));
    ensure!(status.dead_letter_queue.as_ref().map(|q| q.arn.as_str()) == Some(dlq.arn.as_str()));

    let gateway = s.gateway_now().await?.status.context("gateway status")?;
    let api_id = gateway.rest_api_id.context("REST API id")?;
    let live = s
        .aws
        .live_routes(&api_id, &gateway.stage_name.context("stage")?);
    let route = live
        .get("/payments/stripe")
        .context("the route in the live deployment")?;
    ensure!(
        route.queue_arn == queue.arn,
        "the route writes to the Webhook's queue"
    );
    ensure!(
        Some(&route.role_arn) == gateway.role_arn.as_ref(),
        "with the gateway's role"
    );
    ensure!(
        status.url.as_deref()
            == Some(format!("https://hooks.{}/payments/stripe", s.zone.0).as_str()),
        "URL {:?}",
        status.url
    );
    let deployment = Api::<Deployment>::namespaced(s.client.clone(), &s.namespace)
        .get_opt("stripe-worker")
        .await?;
    ensure!(deployment.is_some(), "the worker Deployment");
    for part in [QUEUE_READY, ROUTE_READY, WORKER_READY] {
        ensure!(
            s.probe()
                .webhook_is("stripe", part, "True", RECONCILED)
                .await?,
            "{part}"
        );
    }
    s.calls_are_known()
}

async fn a_route_is_ready_only_once_a_deployment_containing_it_is_live() -> Result<()> {
    let mut s = Scenario::new("live", json!({})).await?;
    ready_webhook(&mut s, "first", "/first", json!({})).await?;
    s.aws.fail(
        "CreateDeployment",
        hookline_operator::aws::AwsError::Throttled {
            service: hookline_operator::aws::Service::ApiGateway,
            operation: "CreateDeployment",
            message: "Too Many Requests".into(),
        },
    );
    s.create_webhook("second", "/second", json!({})).await?;
    for _ in 0..6 {
        s.pass().await?;
    }
    let gateway = s.gateway_now().await?.status.context("gateway status")?;
    let (api_id, stage) = (
        gateway.rest_api_id.context("id")?,
        gateway.stage_name.context("stage")?,
    );
    let api = s.aws.rest_api(&api_id).context("the API")?;
    ensure!(
        api.resources
            .get("/second")
            .is_some_and(|r| r.post.is_some()),
        "the route is built"
    );
    ensure!(
        !s.aws.live_routes(&api_id, &stage).contains_key("/second"),
        "but not deployed"
    );
    ensure!(
        s.probe()
            .webhook_condition("second", ROUTE_READY)
            .await?
            .is_some_and(|(status, _)| status == "False"),
        "RouteReady is not True while no deployment contains the route"
    );
    s.aws.heal("CreateDeployment");
    s.until("second RouteReady once deployed", |p| async move {
        p.webhook_is("second", ROUTE_READY, "True", RECONCILED)
            .await
    })
    .await?;
    ensure!(s.aws.live_routes(&api_id, &stage).contains_key("/second"));
    Ok(())
}

async fn the_newer_webhook_on_a_taken_path_is_refused_and_the_older_keeps_it() -> Result<()> {
    let mut s = Scenario::new("conflict", json!({})).await?;
    ready_webhook(&mut s, "older", "/payments", json!({})).await?;
    // Newer by its creationTimestamp, which has one-second resolution: within the
    // same second the index breaks the tie by namespace/name instead.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.create_webhook("newer", "/payments", json!({})).await?;
    s.until("PathConflict on the newer", |p| async move {
        p.webhook_is("newer", READY, "False", PATH_CONFLICT).await
    })
    .await?;
    ensure!(
        s.probe()
            .webhook_is("older", READY, "True", RECONCILED)
            .await?,
        "the older keeps its path"
    );
    let gateway = s.gateway_now().await?.status.context("gateway status")?;
    let live = s.aws.live_routes(
        gateway.rest_api_id.as_deref().context("id")?,
        gateway.stage_name.as_deref().context("stage")?,
    );
    let older_queue = s
        .aws
        .queue(&queue_names(&s.namespace, "older").0)
        .context("queue")?;
    ensure!(
        live.get("/payments").map(|r| r.queue_arn.as_str()) == Some(older_queue.arn.as_str()),
        "the path still writes to the older Webhook's queue"
    );
    ensure!(
        s.aws.queue(&queue_names(&s.namespace, "newer").0).is_none(),
        "no queue for the refused one"
    );
    Ok(())
}

async fn a_namespace_the_gateway_does_not_allow_is_refused_before_any_aws_call() -> Result<()> {
    let mut s = Scenario::new(
        "allowed",
        json!({"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"hookline.dev/webhooks": "allowed"}}}}),
    )
    .await?;
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    s.aws.reset_calls();
    s.create_webhook("stray", "/stray", json!({})).await?;
    s.until("NamespaceNotAllowed", |p| async move {
        p.webhook_is("stray", ROUTE_READY, "False", NAMESPACE_NOT_ALLOWED)
            .await
    })
    .await?;
    ensure!(
        s.aws.calls("CreateQueue") == 0 && s.aws.calls("GetQueueUrl") == 0,
        "no SQS call: {:?}",
        s.aws.all_calls()
    );
    // Once the namespace carries the label, the same Webhook is served.
    Api::<Namespace>::all(s.client.clone())
        .patch(
            &s.namespace,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"hookline.dev/webhooks": "allowed"}}})),
        )
        .await?;
    s.until("stray Ready once allowed", |p| async move {
        p.webhook_is("stray", READY, "True", RECONCILED).await
    })
    .await
}

async fn a_missing_or_empty_signature_secret_is_refused_before_any_aws_call() -> Result<()> {
    let mut s = Scenario::new("secret", json!({})).await?;
    let signed =
        |secret: serde_json::Value| json!({"signature": {"preset": "Stripe", "secretRef": secret}});
    s.create_webhook("unsigned", "/unsigned", signed(json!({"name": "missing"})))
        .await?;
    let empty: Secret = serde_json::from_value(json!({"metadata": {"name": "empty"}}))?;
    Api::<Secret>::namespaced(s.client.clone(), &s.namespace)
        .create(&PostParams::default(), &empty)
        .await?;
    s.create_webhook(
        "keyless",
        "/keyless",
        signed(json!({"name": "empty", "keys": []})),
    )
    .await?;
    s.until("SecretNotFound on both", |p| async move {
        Ok(
            p.webhook_is("unsigned", WORKER_READY, "False", SECRET_NOT_FOUND)
                .await?
                && p.webhook_is("keyless", WORKER_READY, "False", SECRET_NOT_FOUND)
                    .await?,
        )
    })
    .await?;
    let message = s
        .webhook_now("keyless")
        .await?
        .and_then(|w| w.status)
        .and_then(|st| st.conditions.into_iter().find(|c| c.type_ == WORKER_READY))
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(message.contains("has no keys"), "{message}");
    ensure!(
        s.aws.calls("CreateQueue") == 0,
        "no queue for an invalid spec"
    );
    Ok(())
}

async fn a_webhook_that_would_exceed_a_quota_is_refused_before_any_aws_call() -> Result<()> {
    let mut s = Scenario::new("quota", json!({})).await?;
    // `/`, `/a`, `/b`: a third route would be the fourth resource.
    s.ctx = s.ctx.clone().with_quotas(Quotas {
        resources_per_api: 3,
        ..Quotas::default()
    });
    ready_webhook(&mut s, "a", "/a", json!({})).await?;
    ready_webhook(&mut s, "b", "/b", json!({})).await?;
    s.create_webhook("c", "/c", json!({})).await?;
    s.until("the quota on the newest", |p| async move {
        p.webhook_is("c", ROUTE_READY, "False", RESOURCES_PER_API_QUOTA)
            .await
    })
    .await?;
    ensure!(
        s.aws.queue(&queue_names(&s.namespace, "c").0).is_none(),
        "no queue for c"
    );
    ensure!(
        s.probe().webhook_is("a", READY, "True", RECONCILED).await?,
        "the older ones keep working"
    );
    Ok(())
}

async fn a_spec_change_reaches_the_queue() -> Result<()> {
    let mut s = Scenario::new("change", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    s.patch_webhook(
        "stripe",
        json!({"spec": {"delivery": {"maxReceiveCount": 8, "visibilityTimeoutSeconds": 90}}}),
    )
    .await?;
    let queue = queue_names(&s.namespace, "stripe").0;
    s.until("maxReceiveCount 8 and visibility 90 s", |p| {
        let queue = queue.clone();
        async move {
            let attributes = p
                .aws
                .queue(&queue)
                .map(|q| q.attributes)
                .unwrap_or_default();
            Ok(attributes
                .get("RedrivePolicy")
                .is_some_and(|r| r.contains("\"maxReceiveCount\":8"))
                && attributes.get("VisibilityTimeout").map(String::as_str) == Some("90"))
        }
    })
    .await
}

async fn a_queue_deleted_by_hand_is_created_again() -> Result<()> {
    let mut s = Scenario::new("drift", json!({})).await?;
    ready_webhook(&mut s, "stripe", "/stripe", json!({})).await?;
    let queue = queue_names(&s.namespace, "stripe").0;
    s.aws.edit(|state| state.queues.remove(&queue));
    s.until("the queue back", |p| {
        let queue = queue.clone();
        async move { Ok(p.aws.queue(&queue).is_some()) }
    })
    .await
}

async fn a_steady_state_pass_makes_no_aws_writes() -> Result<()> {
    let mut s = Scenario::new("steady", json!({})).await?;
    ready_webhook(
        &mut s,
        "stripe",
        "/stripe",
        json!({"throttling": {"rateLimit": 5, "burstLimit": 10}}),
    )
    .await?;
    // A fresh operator on the same AWS, as after a restart: nothing remembered.
    s.ctx = Context::with_services(
        s.client.clone(),
        s.aws.services(),
        crate::harness::settings(),
        crate::harness::TIMING,
        "scenario".to_owned(),
        Vec::new(),
    );
    s.pass().await?;
    s.aws.reset_calls();
    s.pass().await?;
    let writes: Vec<_> = s
        .aws
        .all_calls()
        .into_iter()
        .filter(|((_, op), _)| is_write(op))
        .collect();
    ensure!(
        writes.is_empty(),
        "a pass with nothing to change wrote {writes:?}"
    );
    ensure!(!s.aws.all_calls().is_empty(), "and it did read AWS");
    Ok(())
}

/// A Meta handshake waits for its Secret (a condition, no route), then the live route
/// answers with the Secret's token; a new token in the Secret reaches the live route
/// (the steady-state check reads the GET); removing `handshake` removes the GET.
async fn a_handshake_follows_its_secret_and_goes_with_the_spec() -> Result<()> {
    let mut s = Scenario::new("handshake", json!({})).await?;
    s.create_webhook(
        "meta",
        "/meta",
        json!({"handshake": {"type": "Meta", "verifyTokenSecretRef": {"name": "hs", "key": "token"}}}),
    )
    .await?;
    s.until("SecretNotFound", |p| async move {
        p.webhook_is("meta", ROUTE_READY, "False", SECRET_NOT_FOUND)
            .await
    })
    .await?;
    let message = s
        .webhook_now("meta")
        .await?
        .and_then(|w| w.status)
        .and_then(|st| st.conditions.into_iter().find(|c| c.type_ == ROUTE_READY))
        .map(|c| c.message)
        .unwrap_or_default();
    ensure!(
        message.contains("handshake.verifyTokenSecretRef"),
        "{message}"
    );

    let secrets = Api::<Secret>::namespaced(s.client.clone(), &s.namespace);
    let secret = |token: &str| -> Result<Secret> {
        Ok(serde_json::from_value(
            json!({"metadata": {"name": "hs"}, "stringData": {"token": token}}),
        )?)
    };
    secrets
        .create(&PostParams::default(), &secret("t1\n")?)
        .await?;
    let gateway = s.gateway_now().await?.status.context("gateway status")?;
    let api_id = gateway.rest_api_id.context("REST API id")?;
    let stage = gateway.stage_name.context("stage")?;
    let live_handshake = move |p: &crate::harness::Probe, api: &str, stage: &str| {
        p.aws
            .live_routes(api, stage)
            .get("/meta")
            .map(|r| r.handshake.clone())
    };
    let meta = |token: &str| {
        Some(Some(Handshake::Meta {
            verify_token: token.to_owned(),
        }))
    };
    {
        let (api, stage) = (api_id.clone(), stage.clone());
        s.until("the live route answers with t1", |p| {
            let (api, stage) = (api.clone(), stage.clone());
            async move {
                Ok(p.webhook_is("meta", READY, "True", RECONCILED).await?
                    && live_handshake(&p, &api, &stage) == meta("t1"))
            }
        })
        .await?;
    }
    secrets
        .replace("hs", &PostParams::default(), &secret("t2")?)
        .await?;
    {
        let (api, stage) = (api_id.clone(), stage.clone());
        s.until("the live route answers with t2", |p| {
            let (api, stage) = (api.clone(), stage.clone());
            async move { Ok(live_handshake(&p, &api, &stage) == meta("t2")) }
        })
        .await?;
    }
    s.patch_webhook("meta", json!({"spec": {"handshake": null}}))
        .await?;
    let (api, stage_name) = (api_id.clone(), stage.clone());
    s.until("no handshake on the live route", |p| {
        let (api, stage) = (api.clone(), stage_name.clone());
        async move {
            Ok(p.webhook_is("meta", READY, "True", RECONCILED).await?
                && live_handshake(&p, &api, &stage) == Some(None))
        }
    })
    .await?;
    let gets = s.aws.read(|state| {
        state
            .rest_apis
            .get(&api_id)
            .map(|a| a.resources.values().filter(|r| r.get.is_some()).count())
            .unwrap_or_default()
    });
    ensure!(gets == 0, "the GET is gone ({gets} left)");
    s.calls_are_known()
}
