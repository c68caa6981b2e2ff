//! Step 5 of a Webhook reconcile (pure): the status fields and the parts' reports
//! from what [`super::apply`] came to. `Ready` and the merge into conditions are the
//! shared [`crate::controller::status`]'s.
//!
//! The reconcile writes every status field but three: `backlog`, `replicas` and
//! `lastScaleTime` are the scaler's, under its own field manager
//! ([`crate::scaler::MANAGER`]); [`operator_fields`] leaves them out of every write.

use hookline_crds::conditions::{QUEUE_READY, ROUTE_READY, WORKER_READY};
use hookline_crds::reasons::{PROGRESSING, RECONCILED};
use hookline_crds::{QueueRef as QueueStatus, Webhook, WebhookStatus};

use super::super::Error;
use super::super::status::aws_failure;
use super::apply::{Applied, RouteDone, WorkerDone};
use crate::aws::QueuePair;
use crate::conditions::Report;

/// The status a pass starts from: what is there, at this generation.
pub fn base(webhook: &Webhook) -> WebhookStatus {
    let mut status = webhook.status.clone().unwrap_or_default();
    status.observed_generation = webhook.metadata.generation;
    status
}

/// `status` with the queue pair's ids.
pub fn with_queues(mut status: WebhookStatus, pair: &QueuePair) -> WebhookStatus {
    status.queue = Some(QueueStatus {
        url: pair.queue.url.clone(),
        arn: pair.queue.arn.clone(),
    });
    status.dead_letter_queue = Some(QueueStatus {
        url: pair.dead_letter.url.clone(),
        arn: pair.dead_letter.arn.clone(),
    });
    status
}

/// The fields the reconcile owns: all but the scaler's.
pub fn operator_fields(status: &WebhookStatus) -> WebhookStatus {
    WebhookStatus {
        backlog: None,
        replicas: None,
        last_scale_time: None,
        ..status.clone()
    }
}

/// The status after a pass, and its parts' reports in the order they ran.
pub fn status(
    base: WebhookStatus,
    webhook: &Webhook,
    applied: &Applied,
) -> (WebhookStatus, Vec<Report>) {
    let mut status = base;
    let mut reports = Vec::new();
    if let Some(pair) = &applied.queue {
        status = with_queues(status, pair);
        reports.push(Report::ok(
            QUEUE_READY,
            RECONCILED,
            format!("{} and its dead-letter queue", pair.queue.url),
        ));
    }
    if let Some(route) = &applied.route {
        let gateway = status.gateway.clone().unwrap_or_default();
        reports.push(route_report(webhook, &gateway, route));
        match route {
            RouteDone::Blocked(_) => {}
            RouteDone::Undeployed { route, .. } | RouteDone::PolicyPending { route } => {
                status.route = Some(route.clone());
            }
            RouteDone::Live { route, url, .. } => {
                status.route = Some(route.clone());
                status.url = Some(url.clone());
            }
        }
    }
    if let Some(worker) = &applied.worker {
        reports.push(worker_report(worker));
    }
    if let Some(stop) = &applied.stopped
        && let (Some(part), Error::Aws(error)) = (stop.part, &stop.error)
    {
        reports.push(aws_failure(part, error));
    }
    (status, reports)
}

fn route_report(webhook: &Webhook, gateway: &str, route: &RouteDone) -> Report {
    let path = &webhook.spec.path;
    match route {
        RouteDone::Blocked(report) => report.clone(),
        RouteDone::Undeployed { stage, .. } => Report::failed(
            ROUTE_READY,
            PROGRESSING,
            format!("POST {path} waits for WebhookGateway {gateway} to deploy it to stage {stage}"),
        ),
        RouteDone::PolicyPending { .. } => Report::failed(
            ROUTE_READY,
            PROGRESSING,
            format!(
                "POST {path} is deployed, but its sourceIpAllowList is not enforced yet: it waits \
                 for WebhookGateway {gateway} to put it in the REST API's resource policy (see \
                 the gateway's ApiReady condition)"
            ),
        ),
        RouteDone::Live { stage, .. } => Report::ok(
            ROUTE_READY,
            RECONCILED,
            format!("POST {path} is deployed to stage {stage}"),
        ),
    }
}

fn worker_report(worker: &WorkerDone) -> Report {
    match worker {
        WorkerDone::NoIdentity(report) | WorkerDone::KedaMissing(report) => report.clone(),
        WorkerDone::Deployed {
            name,
            desired,
            ready,
        } => {
            if *ready > 0 || *desired == 0 {
                Report::ok(
                    WORKER_READY,
                    RECONCILED,
                    format!("{ready} of {desired} worker replicas ready"),
                )
            } else {
                Report::failed(
                    WORKER_READY,
                    PROGRESSING,
                    format!("Deployment {name}: {ready} of {desired} replicas ready"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::apply::Stop;
    use super::*;
    use crate::aws::{AwsError, QueueRef, Service};
    use hookline_crds::RouteRef;
    use hookline_crds::reasons::{AWS_ERROR, NOT_OWNED};

    fn webhook() -> Webhook {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n", "generation": 3},
            "spec": {"path": "/w", "gatewayRef": {"name": "gw"},
                     "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}},
            "status": {"gateway": "gw", "backlog": {"visible": 4, "inFlight": 1, "deadLetter": 0},
                       "replicas": {"desired": 2, "ready": 2}}
        }))
        .expect("a valid Webhook")
    }

    fn pair() -> QueuePair {
        let queue = |name: &str| QueueRef {
            url: format!("https://sqs/{name}"),
            arn: format!("arn:aws:sqs:us-east-1:1:{name}"),
        };
        QueuePair {
            queue: queue("q.fifo"),
            dead_letter: queue("q-dlq.fifo"),
        }
    }

    fn route() -> RouteRef {
        RouteRef {
            rest_api_id: "api".to_owned(),
            resource_id: "r".to_owned(),
        }
    }

    fn parts(reports: &[Report]) -> Vec<(&'static str, bool, &str)> {
        reports
            .iter()
            .map(|r| (r.type_, r.ok, r.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_live_route_and_a_ready_worker() {
        let applied = Applied {
            queue: Some(pair()),
            route: Some(RouteDone::Live {
                route: route(),
                url: "https://hooks.example.com/w".to_owned(),
                stage: "live".to_owned(),
            }),
            worker: Some(WorkerDone::Deployed {
                name: "w-worker".to_owned(),
                desired: 1,
                ready: 1,
            }),
            stopped: None,
        };
        let (status, reports) = status(base(&webhook()), &webhook(), &applied);
        assert_eq!(
            parts(&reports),
            [
                (QUEUE_READY, true, RECONCILED),
                (ROUTE_READY, true, RECONCILED),
                (WORKER_READY, true, RECONCILED)
            ]
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.url.as_deref(), Some("https://hooks.example.com/w"));
        assert_eq!(status.route, Some(route()));
        assert_eq!(
            status.queue.map(|q| q.url).as_deref(),
            Some("https://sqs/q.fifo")
        );
    }

    #[test]
    fn what_waits_says_so_and_sets_no_url() {
        let applied = Applied {
            queue: Some(pair()),
            route: Some(RouteDone::Undeployed {
                route: route(),
                stage: "live".to_owned(),
            }),
            worker: Some(WorkerDone::Deployed {
                name: "w-worker".to_owned(),
                desired: 2,
                ready: 0,
            }),
            stopped: None,
        };
        let (status, reports) = status(base(&webhook()), &webhook(), &applied);
        assert_eq!(
            parts(&reports),
            [
                (QUEUE_READY, true, RECONCILED),
                (ROUTE_READY, false, PROGRESSING),
                (WORKER_READY, false, PROGRESSING)
            ]
        );
        assert!(
            reports[1].message.contains("waits for WebhookGateway gw"),
            "{}",
            reports[1].message
        );
        assert_eq!(status.url, None);
        assert_eq!(status.route, Some(route()), "the id is kept while it waits");
    }

    #[test]
    fn an_aws_failure_is_reported_against_its_part() {
        let error = |not_owned: bool| {
            let message = "no".to_owned();
            if not_owned {
                AwsError::NotOwned {
                    service: Service::ApiGateway,
                    operation: "PutIntegration",
                    message,
                }
            } else {
                AwsError::Other {
                    service: Service::Sqs,
                    operation: "CreateQueue",
                    message,
                    retryable: false,
                }
            }
        };
        let stopped = |part, not_owned| Applied {
            queue: (part == ROUTE_READY).then(pair),
            stopped: Some(Stop {
                part: Some(part),
                error: error(not_owned).into(),
            }),
            ..Applied::default()
        };
        let (_, reports) = status(base(&webhook()), &webhook(), &stopped(QUEUE_READY, false));
        assert_eq!(parts(&reports), [(QUEUE_READY, false, AWS_ERROR)]);
        let (_, reports) = status(base(&webhook()), &webhook(), &stopped(ROUTE_READY, true));
        assert_eq!(
            parts(&reports),
            [
                (QUEUE_READY, true, RECONCILED),
                (ROUTE_READY, false, NOT_OWNED)
            ]
        );
    }

    #[test]
    fn the_scalers_fields_are_never_the_reconciles() {
        let ours = operator_fields(&base(&webhook()));
        assert_eq!(
            (ours.backlog, ours.replicas, ours.last_scale_time),
            (None, None, None)
        );
        assert_eq!(ours.observed_generation, Some(3));
    }
}
