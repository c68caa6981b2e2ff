//! Status writes (server-side apply on the status subresource, skipped when nothing
//! but time would change), the one derivation of conditions from step results that
//! both reconcilers use, and an Event for every condition that flips.

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
use crate::aws::AwsError;
use crate::conditions::{self, Report};
use hookline_crds::conditions::READY;
use hookline_crds::reasons::{AWS_ERROR, NOT_OWNED, PROGRESSING, RECONCILED};

/// The current time as Kubernetes writes it.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A part's condition when an AWS call of its step failed: `NotOwned` for an object
/// with our name but not our tag, `AwsError` for the rest, in AWS's words. AWS's
/// throttling is no failure: the call is retried (with backoff, then by the
/// reconcile's requeue) until it goes through, so the part is only `Progressing`,
/// "throttled, retrying".
pub fn aws_failure(part: &'static str, error: &AwsError) -> Report {
    match error {
        AwsError::NotOwned { .. } => Report::failed(part, NOT_OWNED, error.to_string()),
        AwsError::Throttled {
            service, operation, ..
        } => Report::failed(
            part,
            PROGRESSING,
            format!("{service} {operation}: throttled, retrying"),
        ),
        _ => Report::failed(part, AWS_ERROR, error.to_string()),
    }
}

/// The conditions of one pass, from what its steps reported (pure; both reconcilers
/// use it): one condition per part, where a failure beats a success and the first
/// failure wins; then `Ready`, True when every part not listed in `informational`
/// is, else False with the first such failure's reason and message.
pub fn conditions(reports: &[Report], informational: &[&str], ready_message: &str) -> Vec<Report> {
    let mut parts: Vec<Report> = Vec::with_capacity(reports.len() + 1);
    for report in reports.iter().filter(|r| r.type_ != READY) {
        match parts.iter_mut().find(|r| r.type_ == report.type_) {
            Some(existing) if existing.ok && !report.ok => *existing = report.clone(),
            Some(_) => {}
            None => parts.push(report.clone()),
        }
    }
    // A step may speak for Ready itself (deletion: draining, in use); it wins.
    let failed = reports
        .iter()
        .find(|r| r.type_ == READY && !r.ok)
        .or_else(|| {
            parts
                .iter()
                .find(|r| !r.ok && !informational.contains(&r.type_))
        });
    parts.push(match failed {
        None => Report::ok(READY, RECONCILED, ready_message),
        Some(first) => Report::failed(READY, &first.reason, first.message.clone()),
    });
    parts
}

/// Merges `reports` into `conditions` with `Ready` derived by [`conditions`], and
/// publishes an Event per flip.
pub async fn merge_reports<K>(
    ctx: &Context,
    obj: &K,
    conditions: &mut Vec<Condition>,
    reports: &[Report],
    ready_message: &str,
) where
    K: Resource<DynamicType = ()>,
{
    let all = self::conditions(reports, &[], ready_message);
    merge_informational(ctx, obj, conditions, &all).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(reports: &'a [Report], type_: &str) -> &'a Report {
        reports
            .iter()
            .find(|r| r.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} in {reports:?}"))
    }

    #[test]
    fn ready_is_true_only_when_every_gating_part_is() {
        let all_ok = [
            Report::ok("QueueReady", RECONCILED, "q"),
            Report::ok("RouteReady", RECONCILED, "r"),
        ];
        let out = conditions(&all_ok, &[], "serving");
        assert_eq!(out.len(), 3);
        assert_eq!(*find(&out, READY), Report::ok(READY, RECONCILED, "serving"));

        let one_failed = [
            Report::ok("QueueReady", RECONCILED, "q"),
            Report::failed("RouteReady", "Progressing", "waits"),
            Report::failed("WorkerReady", "SecretNotFound", "no secret"),
        ];
        let out = conditions(&one_failed, &[], "serving");
        assert_eq!(
            *find(&out, READY),
            Report::failed(READY, "Progressing", "waits"),
            "the first failure speaks for Ready"
        );
    }

    #[test]
    fn a_failure_beats_a_success_and_the_first_failure_wins() {
        let reports = [
            Report::ok("ApiReady", RECONCILED, "stage"),
            Report::failed("ApiReady", AWS_ERROR, "first"),
            Report::failed("ApiReady", AWS_ERROR, "second"),
            Report::ok("ApiReady", RECONCILED, "later success"),
        ];
        let out = conditions(&reports, &[], "");
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(
            *find(&out, "ApiReady"),
            Report::failed("ApiReady", AWS_ERROR, "first")
        );
    }

    #[test]
    fn informational_parts_do_not_gate_ready() {
        let reports = [
            Report::failed("AccessLogsReady", "CloudWatchRoleMissing", "no role"),
            Report::ok("ApiReady", RECONCILED, "stage"),
        ];
        let out = conditions(&reports, &["AccessLogsReady"], "serves");
        assert!(!find(&out, "AccessLogsReady").ok);
        assert_eq!(*find(&out, READY), Report::ok(READY, RECONCILED, "serves"));
    }

    #[test]
    fn a_step_that_speaks_for_ready_wins() {
        let reports = [
            Report::ok("QueueReady", RECONCILED, "q"),
            Report::failed(READY, "Draining", "deleting"),
        ];
        let out = conditions(&reports, &[], "");
        assert_eq!(out.iter().filter(|r| r.type_ == READY).count(), 1);
        assert_eq!(
            *find(&out, READY),
            Report::failed(READY, "Draining", "deleting")
        );
    }

    #[test]
    fn aws_failures_name_an_untagged_object_not_owned() {
        let not_owned = AwsError::NotOwned {
            service: crate::aws::Service::Sqs,
            operation: "CreateQueue",
            message: "queue q has no owner tag".to_owned(),
        };
        assert_eq!(aws_failure("QueueReady", &not_owned).reason, NOT_OWNED);
    }
}
