//! Step 5 of a gateway reconcile (pure): each part's report from what
//! [`super::apply`] came to, in the order the parts ran, and the error the pass
//! returns (the first AWS failure, so the reconcile is retried with backoff once
//! every part has had its try). `Ready` and the merge into conditions are the shared
//! [`crate::controller::status`]'s.

use hookline_crds::WebhookGateway;
use hookline_crds::conditions::{ACCESS_LOGS_READY, API_READY, CERTIFICATE_READY, DNS_READY};
use hookline_crds::reasons::{
    AWS_ERROR, CLOUDWATCH_ROLE_MISSING, DISABLED, HOSTNAME_CONFLICT, PROGRESSING, RECONCILED,
};

use super::super::status::aws_failure;
use super::apply::{AccessLogs, Applied};
use crate::aws::AwsError;
use crate::aws::certificates::Status as CertStatus;
use crate::conditions::Report;

/// Conditions that inform but do not gate `Ready`: webhooks are served without
/// access logs.
pub const INFORMATIONAL: &[&str] = &[ACCESS_LOGS_READY];

/// The parts' reports, and the first AWS failure among them.
#[derive(Debug, Default)]
pub struct Derived {
    /// One or more per part, in the order the parts ran.
    pub reports: Vec<Report>,
    /// The first AWS failure.
    pub error: Option<AwsError>,
}

impl Derived {
    fn failed(&mut self, part: &'static str, error: &AwsError) {
        self.reports.push(aws_failure(part, error));
        self.error.get_or_insert_with(|| error.clone());
    }

    fn result<'a, T>(
        &mut self,
        part: &'static str,
        result: &'a Option<Result<T, AwsError>>,
    ) -> Option<&'a T> {
        match result {
            Some(Err(e)) => {
                self.failed(part, e);
                None
            }
            Some(Ok(value)) => Some(value),
            None => None,
        }
    }
}

/// The reports of a pass over `gateway` in `region`.
pub fn derive(gateway: &WebhookGateway, region: &str, applied: &Applied) -> Derived {
    let mut out = Derived::default();
    out.result(API_READY, &applied.role);
    if let Some(logs) = &applied.access_logs {
        access_logs(&mut out, region, logs);
    }
    let api = out.result(API_READY, &applied.api).cloned();
    if let (Some(api), Some(_)) = (api, out.result(API_READY, &applied.stage)) {
        out.reports.push(Report::ok(
            API_READY,
            RECONCILED,
            format!("REST API {} stage {}", api.id, gateway.spec.stage_name),
        ));
    }
    let certificate = out.result(CERTIFICATE_READY, &applied.certificate).cloned();
    for e in &applied.retire_failures {
        out.failed(CERTIFICATE_READY, e);
    }
    if let Some(certificate) = certificate {
        out.reports.push(match &certificate.status {
            CertStatus::Issued => Report::ok(
                CERTIFICATE_READY,
                RECONCILED,
                format!("certificate {} issued", certificate.arn),
            ),
            CertStatus::Pending => Report::failed(
                CERTIFICATE_READY,
                PROGRESSING,
                format!(
                    "waiting for ACM to validate {} through DNS",
                    gateway.spec.hostname
                ),
            ),
            // Only a replacement that failed at once lands here; the next pass
            // replaces it again.
            CertStatus::Failed(why) => Report::failed(
                CERTIFICATE_READY,
                AWS_ERROR,
                format!("certificate {}: {why}", certificate.arn),
            ),
        });
    }
    out.result(DNS_READY, &applied.domain);
    let mapped = out.result(DNS_READY, &applied.mapping).is_some();
    let conflict = out.result(DNS_READY, &applied.alias_check).cloned();
    let aliased = mapped && matches!(conflict, Some(None));
    let unchecked = matches!(applied.alias_check, Some(Err(_)));
    if out.result(DNS_READY, &applied.records).is_some() && !unchecked {
        out.reports.push(if let Some(Some(record)) = conflict {
            Report::failed(
                DNS_READY,
                HOSTNAME_CONFLICT,
                format!(
                    "{record}; the alias was not written, so nothing there changed. Delete or \
                     rename that record (its traffic then moves to the gateway) and the next \
                     pass writes the alias"
                ),
            )
        } else if aliased {
            Report::ok(
                DNS_READY,
                RECONCILED,
                format!("{} points at the REST API", gateway.spec.hostname),
            )
        } else if applied.issued() {
            Report::failed(DNS_READY, PROGRESSING, "the alias waits for the REST API")
        } else {
            Report::failed(
                DNS_READY,
                PROGRESSING,
                "the alias waits for the certificate",
            )
        });
    }
    out
}

/// The reports of the shared step (resource policy, deployments), with `error`
/// taking its first failure if it has none yet.
pub fn derive_shared(applied: &Applied, error: &mut Option<AwsError>) -> Vec<Report> {
    applied
        .shared_failures
        .iter()
        .map(|e| {
            error.get_or_insert_with(|| e.clone());
            aws_failure(API_READY, e)
        })
        .collect()
}

fn access_logs(out: &mut Derived, region: &str, logs: &AccessLogs) {
    match logs {
        AccessLogs::Disabled => out.reports.push(Report::ok(
            ACCESS_LOGS_READY,
            DISABLED,
            "accessLogs.enabled is false",
        )),
        AccessLogs::NoCloudWatchRole => out.reports.push(Report::failed(
            ACCESS_LOGS_READY,
            CLOUDWATCH_ROLE_MISSING,
            format!(
                "API Gateway in {region} has no CloudWatch Logs role (account setting \
                 cloudwatchRoleArn), so the stage cannot log access; access logs are \
                 skipped until it is set (aws apigateway update-account)"
            ),
        )),
        AccessLogs::Failed(e) => out.failed(ACCESS_LOGS_READY, e),
        AccessLogs::Ready { group, .. } => out.reports.push(Report::ok(
            ACCESS_LOGS_READY,
            RECONCILED,
            format!("the stage logs access to {group}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{ApiRef, Certificate, DomainTarget, Service};

    use super::super::fixtures::gateway;

    fn certificate(status: CertStatus) -> Certificate {
        Certificate {
            arn: "arn:c".to_owned(),
            status,
            validation_records: Vec::new(),
            in_use_by: Vec::new(),
        }
    }

    fn error(operation: &'static str) -> AwsError {
        AwsError::Other {
            service: Service::ApiGateway,
            operation,
            message: operation.to_owned(),
            retryable: false,
        }
    }

    fn served() -> Applied {
        Applied {
            role: Some(Ok("arn:r".to_owned())),
            access_logs: Some(AccessLogs::Disabled),
            api: Some(Ok(ApiRef {
                id: "api".to_owned(),
                root_resource_id: "root".to_owned(),
            })),
            stage: Some(Ok(())),
            certificate: Some(Ok(certificate(CertStatus::Issued))),
            domain: Some(Ok(DomainTarget {
                regional_domain_name: "d".to_owned(),
                regional_zone_id: "z".to_owned(),
            })),
            mapping: Some(Ok(())),
            alias_check: Some(Ok(None)),
            records: Some(Ok(())),
            ..Applied::default()
        }
    }

    #[test]
    fn a_record_the_alias_would_replace_is_a_hostname_conflict() {
        let conflicted = Applied {
            alias_check: Some(Ok(Some("h has an A record (192.0.2.1)".to_owned()))),
            ..served()
        };
        assert!(!conflicted.aliased());
        let derived = derive(&gateway(), "us-east-1", &conflicted);
        let dns = derived.reports.iter().rfind(|r| r.type_ == DNS_READY);
        assert_eq!(
            dns.map(|r| (r.ok, r.reason.as_str())),
            Some((false, HOSTNAME_CONFLICT))
        );
        assert!(dns.is_some_and(|r| r.message.starts_with("h has an A record (192.0.2.1);")));
        let unread = Applied {
            alias_check: Some(Err(error("ListResourceRecordSets"))),
            ..served()
        };
        assert!(!unread.aliased());
        let derived = derive(&gateway(), "us-east-1", &unread);
        assert!(
            !derived.reports.iter().any(|r| r.type_ == DNS_READY && r.ok),
            "{:?}",
            derived.reports
        );
    }

    fn summary(derived: &Derived) -> Vec<(&'static str, bool, &str)> {
        derived
            .reports
            .iter()
            .map(|r| (r.type_, r.ok, r.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_served_gateway() {
        let derived = derive(&gateway(), "us-east-1", &served());
        assert_eq!(
            summary(&derived),
            [
                (ACCESS_LOGS_READY, true, DISABLED),
                (API_READY, true, RECONCILED),
                (CERTIFICATE_READY, true, RECONCILED),
                (DNS_READY, true, RECONCILED)
            ]
        );
        assert!(derived.error.is_none());
    }

    #[test]
    fn the_alias_waits_for_the_certificate_then_the_api() {
        let pending = Applied {
            certificate: Some(Ok(certificate(CertStatus::Pending))),
            domain: None,
            mapping: None,
            ..served()
        };
        let derived = derive(&gateway(), "us-east-1", &pending);
        let dns = derived.reports.iter().rfind(|r| r.type_ == DNS_READY);
        assert_eq!(
            dns.map(|r| r.message.as_str()),
            Some("the alias waits for the certificate")
        );
        let no_api = Applied {
            api: Some(Err(error("CreateRestApi"))),
            stage: None,
            domain: None,
            mapping: None,
            ..served()
        };
        let derived = derive(&gateway(), "us-east-1", &no_api);
        let dns = derived.reports.iter().rfind(|r| r.type_ == DNS_READY);
        assert_eq!(
            dns.map(|r| r.message.as_str()),
            Some("the alias waits for the REST API")
        );
        assert_eq!(
            derived.error.map(|e| e.to_string()),
            Some(error("CreateRestApi").to_string())
        );
    }

    #[test]
    fn the_first_failure_is_returned_and_every_part_reports() {
        let failing = Applied {
            role: Some(Err(error("CreateRole"))),
            ..served()
        };
        let mut derived = derive(&gateway(), "us-east-1", &failing);
        let shared = Applied {
            shared_failures: vec![error("CreateDeployment")],
            ..Applied::default()
        };
        let more = derive_shared(&shared, &mut derived.error);
        assert_eq!(more.len(), 1);
        derived.reports.extend(more);
        assert_eq!(
            derived.error.map(|e| e.to_string()),
            Some(error("CreateRole").to_string())
        );
        let conditions =
            super::super::super::status::conditions(&derived.reports, INFORMATIONAL, "");
        let api = conditions.iter().find(|r| r.type_ == API_READY);
        assert_eq!(
            api.map(|r| (r.ok, r.reason.as_str())),
            Some((false, AWS_ERROR))
        );
        assert!(
            conditions.iter().any(|r| r.type_ == DNS_READY && r.ok),
            "{conditions:?}"
        );
    }

    #[test]
    fn missing_access_logs_do_not_gate_ready() {
        let unlogged = Applied {
            access_logs: Some(AccessLogs::NoCloudWatchRole),
            ..served()
        };
        let derived = derive(&gateway(), "eu-west-1", &unlogged);
        let conditions =
            super::super::super::status::conditions(&derived.reports, INFORMATIONAL, "serves");
        let logs = conditions.iter().find(|r| r.type_ == ACCESS_LOGS_READY);
        assert_eq!(
            logs.map(|r| (r.ok, r.reason.as_str())),
            Some((false, CLOUDWATCH_ROLE_MISSING))
        );
        assert!(logs.is_some_and(|r| r.message.contains("eu-west-1")));
        assert!(
            conditions
                .iter()
                .any(|r| r.type_ == hookline_crds::conditions::READY && r.ok)
        );
    }
}
