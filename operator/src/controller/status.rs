//! Status writes (server-side apply on the status subresource, skipped when nothing
//! but time would change) and an Event for every condition that flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

use super::context::Context;
use super::{MANAGER, Result};
use crate::conditions::{self, Report};
use hookline_crds::conditions::READY;

/// The current time as Kubernetes writes it.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Merges `reports` into `conditions`, adds `Ready` (true when every report is),
/// and publishes an Event per flip. Returns whether all are ready.
pub async fn merge_reports<K>(
    ctx: &Context,
    obj: &K,
    conditions: &mut Vec<Condition>,
    reports: &[Report],
    ready_message: &str,
) -> bool
where
    K: Resource<DynamicType = ()>,
{
    let failed = reports.iter().find(|r| !r.ok);
    let ready = match failed {
        None => Report::ok(READY, hookline_crds::reasons::RECONCILED, ready_message),
        Some(first) => Report::failed(READY, &first.reason, first.message.clone()),
    };
    let all_ok = failed.is_none();
    let all: Vec<Report> = reports
        .iter()
        .cloned()
        .chain(std::iter::once(ready))
        .collect();
    merge_informational(ctx, obj, conditions, &all).await;
    all_ok
}

/// Merges `reports` into `conditions` without touching `Ready`, and publishes an
/// Event per flip: for conditions that inform but do not gate readiness.
pub async fn merge_informational<K>(
    ctx: &Context,
    obj: &K,
    conditions: &mut Vec<Condition>,
    reports: &[Report],
) where
    K: Resource<DynamicType = ()>,
{
    let generation = obj.meta().generation;
    let now = now();
    for report in reports {
        if conditions::merge(conditions, report, generation, &now) {
            let event = Event {
                type_: if report.ok {
                    EventType::Normal
                } else {
                    EventType::Warning
                },
                reason: report.reason.clone(),
                note: Some(
                    format!(
                        "{} is {}: {}",
                        report.type_,
                        if report.ok { "True" } else { "False" },
                        report.message
                    )
                    .chars()
                    .take(1000)
                    .collect(),
                ),
                action: "Reconcile".to_owned(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
                tracing::warn!(error = %e, "could not publish an Event");
            }
        }
    }
}

/// Applies `status` to the object's status subresource unless it is unchanged.
pub async fn write<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, status: &S) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}
