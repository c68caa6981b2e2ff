//! The scaler's decisions, on queue depths set in memory.

use anyhow::{Context as _, Result, ensure};
use hookline_crds::conditions::WORKER_READY;
use hookline_crds::reasons::KEDA_NOT_INSTALLED;
use hookline_operator::scaler::Scaler;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

use crate::harness::{Scenario, queue_names};
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(
    the_scaler_scales_up_at_once_never_past_max_and_down_only_after_the_delay,
    the_scaler_reads_the_dead_letter_queue_once_per_interval,
    the_keda_engine_is_explained_until_keda_is_installed_then_gets_a_scaled_object,
);

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

/// The main queue is read every tick (scaling needs it); the dead-letter queue once
/// per interval, its last count kept in status meanwhile.
async fn the_scaler_reads_the_dead_letter_queue_once_per_interval() -> Result<()> {
    let mut s = Scenario::new("scaledlq", json!({})).await?;
    ready_webhook(&mut s, "dlq", "/dlq", json!({})).await?;
    let (queue, dead_letter) = queue_names(&s.namespace, "dlq");
    let dead_letters = || async {
        Ok::<_, anyhow::Error>(
            s.webhook_now("dlq")
                .await?
                .and_then(|w| w.status)
                .and_then(|st| st.backlog)
                .map(|b| (b.visible, b.dead_letter)),
        )
    };
    let interval = Duration::from_millis(1500);
    let scaler = Scaler::new(interval);
    // What the scaler read shows in status (counting GetQueueAttributes would also
    // count the reconciles the scaler's status writes wake).
    s.aws.set_depth(&dead_letter, 3, 0);
    scaler.tick(&s.ctx).await?;
    ensure!(
        dead_letters().await? == Some((0, 3)),
        "first tick: both queues"
    );

    s.aws.set_depth(&queue, 4, 0);
    s.aws.set_depth(&dead_letter, 5, 0);
    scaler.tick(&s.ctx).await?;
    ensure!(
        dead_letters().await? == Some((4, 3)),
        "within the interval: the main queue read, the dead-letter count the last one read"
    );

    tokio::time::sleep(interval).await;
    scaler.tick(&s.ctx).await?;
    ensure!(
        dead_letters().await? == Some((4, 5)),
        "after the interval: both read"
    );
    Ok(())
}

/// The only scenario that installs KEDA's CRDs on the shared API server (they are
/// cluster-wide): the other scenarios use the built-in engine, which does not read them.
async fn the_keda_engine_is_explained_until_keda_is_installed_then_gets_a_scaled_object()
-> Result<()> {
    let mut s = Scenario::new("keda", json!({})).await?;
    s.create_webhook(
        "keda",
        "/keda",
        json!({"worker": {
            "template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}},
            "scaling": {"engine": "Keda", "minReplicas": 0, "maxReplicas": 4, "targetBacklogPerReplica": 25}
        }}),
    )
    .await?;
    s.until("KedaNotInstalled", |p| async move {
        p.webhook_is("keda", WORKER_READY, "False", KEDA_NOT_INSTALLED)
            .await
    })
    .await?;
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    for (name, crd) in [
        (
            "scaledobjects.keda.sh",
            hookline_tests::keda_scaled_object_crd()?,
        ),
        (
            "triggerauthentications.keda.sh",
            hookline_tests::keda_trigger_authentication_crd()?,
        ),
    ] {
        crds.patch(
            name,
            &PatchParams::apply("hookline-test").force(),
            &Patch::Apply(&crd),
        )
        .await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            kube::runtime::wait::await_condition(
                crds.clone(),
                name,
                kube::runtime::wait::conditions::is_crd_established(),
            ),
        )
        .await??;
    }
    let keda = |kind| {
        Api::<DynamicObject>::namespaced_with(
            s.client.clone(),
            &s.namespace,
            &ApiResource::from_gvk(&GroupVersionKind::gvk("keda.sh", "v1alpha1", kind)),
        )
    };
    let (scaled_objects, authentications) = (keda("ScaledObject"), keda("TriggerAuthentication"));
    for _ in 0..30 {
        s.pass().await?;
        if scaled_objects.get_opt("keda-worker").await?.is_some() {
            break;
        }
    }
    // The API server validated both against KEDA's own schemas.
    let scaled_object = scaled_objects.get("keda-worker").await?;
    ensure!(scaled_object.data["spec"]["maxReplicaCount"] == 4);
    let trigger = &scaled_object.data["spec"]["triggers"][0];
    ensure!(trigger["metadata"]["queueLength"] == "25", "{trigger}");
    ensure!(
        trigger["authenticationRef"]["name"] == "keda-worker",
        "{trigger}"
    );
    let authentication = authentications.get("keda-worker").await?;
    ensure!(
        authentication.data["spec"]["podIdentity"]
            == json!({"provider": "aws", "identityOwner": "keda"}),
        "{}",
        authentication.data
    );
    Ok(())
}
