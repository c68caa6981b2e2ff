//! Step 2 of a gateway reconcile (pure): the hosted zone exists, and the hostname is
//! not claimed by another owner's ownership record. Nothing is created for a
//! hostname someone else holds.

use aws_sdk_route53::types::RrType;
use hookline_crds::WebhookGateway;
use hookline_crds::conditions::DNS_READY;
use hookline_crds::reasons::{HOSTNAME_CONFLICT, INVALID_SPEC};

use super::super::status::aws_failure;
use super::observe::Observed;
use super::plan::owner_record;
use crate::aws::AwsError;
use crate::aws::dns::Value;
use crate::conditions::Report;

/// What the pass builds on: the hosted zone's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    /// The zone the records go in.
    pub zone: String,
}

/// Why the pass stops before any change: `DnsReady`'s report, and the AWS error to
/// retry on when a read failed (rather than the spec being wrong).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// `DnsReady`, False.
    pub report: Report,
    /// The failed read, if that is why.
    pub error: Option<Box<AwsError>>,
}

fn failed_read(error: &AwsError) -> Invalid {
    Invalid {
        report: aws_failure(DNS_READY, error),
        error: Some(Box::new(error.clone())),
    }
}

/// Checks the zone and the hostname's ownership; `cluster` names this cluster in the
/// ownership record.
pub fn validate(
    gateway: &WebhookGateway,
    observed: &Observed,
    cluster: &str,
) -> Result<Valid, Invalid> {
    let zone = match &observed.zone {
        Ok(zone) => zone.clone(),
        Err(e @ (AwsError::NotFound { .. } | AwsError::Conflict { .. })) => {
            return Err(Invalid {
                report: Report::failed(DNS_READY, INVALID_SPEC, e.to_string()),
                error: None,
            });
        }
        Err(e) => return Err(failed_read(e)),
    };
    let existing = match &observed.owner_records {
        Some(Ok(records)) => records,
        Some(Err(e)) => return Err(failed_read(e)),
        None => return Ok(Valid { zone }),
    };
    let ours = owner_record(cluster, gateway);
    if let Some(other) = existing
        .iter()
        .find(|r| r.kind == RrType::Txt && r.value != ours.value)
    {
        let claim = match &other.value {
            Value::Plain { values, .. } => values.join(" "),
            Value::Alias { .. } => "an alias".to_owned(),
        };
        return Err(Invalid {
            report: Report::failed(
                DNS_READY,
                HOSTNAME_CONFLICT,
                format!(
                    "{} is claimed by another owner ({claim}); nothing was changed",
                    gateway.spec.hostname
                ),
            ),
            error: None,
        });
    }
    Ok(Valid { zone })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Service;
    use crate::aws::dns::Record;

    use super::super::fixtures::gateway;

    fn observed(
        zone: Result<String, AwsError>,
        records: Option<Result<Vec<Record>, AwsError>>,
    ) -> Observed {
        Observed {
            read_at: tokio::time::Instant::now(),
            webhooks: Vec::new(),
            zone,
            owner_records: records,
            cloudwatch_role: None,
            certificate: Ok(None),
        }
    }

    #[test]
    fn the_zone_and_the_hostnames_owner_decide() {
        let missing = AwsError::NotFound {
            service: Service::Route53,
            operation: "ListHostedZonesByName",
            message: "no zone example.com".to_owned(),
        };
        let throttled = AwsError::Throttled {
            service: Service::Route53,
            operation: "ListResourceRecordSets",
            message: "slow down".to_owned(),
        };
        let failed = AwsError::Other {
            service: Service::Route53,
            operation: "ListHostedZonesByName",
            message: "InternalFailure".to_owned(),
            retryable: true,
        };
        let theirs = Record::txt(
            "_hookline.hooks.example.com",
            "hookline cluster=other gateway=gw uid=x",
            300,
        );
        let ours = owner_record("bench", &gateway());
        let zone = || Ok("Z1".to_owned());
        let cases = [
            (
                "no zone",
                observed(Err(missing), None),
                Some((INVALID_SPEC, false)),
            ),
            (
                "zone read failed",
                observed(Err(failed), None),
                Some(("AwsError", true)),
            ),
            // Throttling is retried, and reads so.
            (
                "records read throttled",
                observed(zone(), Some(Err(throttled))),
                Some(("Progressing", true)),
            ),
            (
                "claimed",
                observed(zone(), Some(Ok(vec![theirs]))),
                Some((HOSTNAME_CONFLICT, false)),
            ),
            ("ours", observed(zone(), Some(Ok(vec![ours]))), None),
            ("free", observed(zone(), Some(Ok(Vec::new()))), None),
        ];
        for (name, observed, expected) in cases {
            let got = validate(&gateway(), &observed, "bench");
            match (&got, expected) {
                (Ok(valid), None) => assert_eq!(valid.zone, "Z1", "{name}"),
                (Err(invalid), Some((reason, retried))) => {
                    assert_eq!(invalid.report.type_, DNS_READY, "{name}");
                    assert_eq!(invalid.report.reason, reason, "{name}");
                    assert_eq!(invalid.error.is_some(), retried, "{name}");
                }
                _ => panic!("{name}: {got:?}"),
            }
        }
    }
}
