//! Step 3 of a gateway reconcile (pure): what each part should be: the role, the
//! access-log group, the REST API and its stage (with the per-route throttles of the
//! index), the certificate, the resource policy (the index's source-IP lists), the
//! records. Values that depend on what AWS returns (the domain needs the certificate
//! and the API; the aliases need the domain) are pure functions of those.

use aws_sdk_route53::types::RrType;
use hookline_crds::{Webhook, WebhookGateway};
use kube::ResourceExt;
use serde_json::Value as Json;
use std::sync::Arc;

use super::super::index::{self, GatewayIndex};
use crate::aws::dns::{Record, Value};
use crate::aws::{
    ApiSpec, Certificate, CertificateSpec, DomainSpec, DomainTarget, Owner, RoleSpec, StageSpec,
};
use crate::desired::{Settings, gateway_owner};
use crate::names;
use crate::quotas::Quotas;

/// What the pass makes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The owner tag of everything the gateway makes.
    pub owner: Owner,
    /// The index of the gateway's Webhooks.
    pub index: GatewayIndex,
    /// The role the Webhooks' integrations pass to API Gateway.
    pub role: RoleSpec,
    /// The access-log group and its retention in days; `None` when logs are off.
    pub access_logs: Option<(String, i32)>,
    /// The REST API.
    pub api: ApiSpec,
    /// The stage, without its access-log destination (known once the group exists).
    pub stage: StageSpec,
    /// The certificate.
    pub certificate: CertificateSpec,
    /// The TXT record that says this cluster's gateway owns the hostname.
    pub owner_record: Record,
    /// The resource policy (source-IP allow lists); `None` for no policy.
    pub policy: Option<Json>,
    /// The gateway's public base URL.
    pub url: String,
    /// How many Webhooks are attached.
    pub attached: i32,
}

/// The plan for `gateway`; `cluster` names this cluster in the ownership record.
pub fn plan(
    gateway: &WebhookGateway,
    webhooks: &[Arc<Webhook>],
    settings: &Settings,
    quotas: &Quotas,
    cluster: &str,
) -> Plan {
    let spec = &gateway.spec;
    let name = gateway.name_any();
    let owner = gateway_owner(gateway);
    let index = GatewayIndex::build(
        &name,
        &index::attachments(webhooks.iter().map(|w| &**w), None),
        quotas,
    );
    Plan {
        role: RoleSpec {
            name: names::gateway_role(&settings.name_prefix, &name),
            region: settings.region.clone(),
            queue_prefix: settings.name_prefix.clone(),
            owner: owner.clone(),
        },
        access_logs: spec.access_logs.enabled.then(|| {
            (
                names::gateway_log_group(&settings.name_prefix, &name),
                spec.access_logs.retention_days,
            )
        }),
        api: ApiSpec {
            name: names::gateway_api(&settings.name_prefix, &name),
            tags: spec.tags.clone(),
            owner: owner.clone(),
        },
        stage: StageSpec {
            name: spec.stage_name.clone(),
            rate_limit: spec.throttling.rate_limit,
            burst_limit: spec.throttling.burst_limit,
            route_throttling: index.route_throttling(),
            access_log: None,
        },
        certificate: CertificateSpec {
            domain: spec.hostname.clone(),
            owner: owner.clone(),
            tags: spec.tags.clone().into_iter().collect(),
        },
        owner_record: owner_record(cluster, gateway),
        policy: index.source_ip_policy(),
        url: format!("https://{}", spec.hostname),
        attached: index.attached().try_into().unwrap_or(i32::MAX),
        index,
        owner,
    }
}

/// The TXT record that says this cluster's gateway owns the hostname.
pub fn owner_record(cluster: &str, gateway: &WebhookGateway) -> Record {
    Record::txt(
        &names::owner_record_name(&gateway.spec.hostname),
        &format!(
            "hookline cluster={cluster} gateway={} uid={}",
            gateway.name_any(),
            gateway.metadata.uid.as_deref().unwrap_or_default()
        ),
        300,
    )
}

impl Plan {
    /// The custom domain, once the certificate is issued and the API exists;
    /// `created` is the regional domain name the status holds.
    pub fn domain(
        &self,
        gateway: &WebhookGateway,
        certificate_arn: &str,
        api_id: &str,
        created: Option<String>,
    ) -> DomainSpec {
        DomainSpec {
            domain: gateway.spec.hostname.clone(),
            certificate_arn: certificate_arn.to_owned(),
            api_id: api_id.to_owned(),
            stage: self.stage.name.clone(),
            owner: self.owner.clone(),
            created,
        }
    }

    /// The records the zone should hold: the ownership record, the certificate's
    /// validation records, and (once the domain exists) the aliases to it.
    pub fn records(
        &self,
        hostname: &str,
        certificate: Option<&Certificate>,
        alias: Option<&DomainTarget>,
    ) -> Vec<Record> {
        let mut records = vec![self.owner_record.clone()];
        records.extend(certificate.map(validation_records).unwrap_or_default());
        if let Some(target) = alias {
            records.extend(alias_records(
                hostname,
                &target.regional_domain_name,
                &target.regional_zone_id,
            ));
        }
        records
    }
}

fn alias_records(hostname: &str, target: &str, zone_id: &str) -> Vec<Record> {
    [RrType::A, RrType::Aaaa]
        .into_iter()
        .map(|kind| Record {
            name: hostname.to_owned(),
            kind,
            value: Value::Alias {
                target: target.to_owned(),
                zone_id: zone_id.to_owned(),
            },
        })
        .collect()
}

/// The CNAMEs ACM validates the certificate through.
pub fn validation_records(certificate: &Certificate) -> Vec<Record> {
    certificate
        .validation_records
        .iter()
        .filter(|r| r.kind == "CNAME")
        .map(|r| Record {
            name: r.name.clone(),
            kind: RrType::Cname,
            value: Value::Plain {
                values: vec![r.value.clone()],
                ttl: 300,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::certificates::{Status, ValidationRecord};

    fn gateway(extra: serde_json::Value) -> WebhookGateway {
        let mut spec = serde_json::json!({"hostname": "hooks.example.com", "hostedZone": {"name": "example.com"}});
        if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "WebhookGateway",
            "metadata": {"name": "gw", "uid": "g1"},
            "spec": spec,
        }))
        .expect("a valid WebhookGateway")
    }

    fn webhook(
        name: &str,
        path: &str,
        auth: serde_json::Value,
        throttling: serde_json::Value,
    ) -> Webhook {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "n", "uid": name,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"path": path, "auth": auth, "throttling": throttling,
                     "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}},
            "status": {"gateway": "gw"}
        }))
        .expect("a valid Webhook")
    }

    fn settings() -> Settings {
        Settings::for_tests()
    }

    fn plan_of(gateway: &WebhookGateway, webhooks: Vec<Webhook>) -> Plan {
        let webhooks: Vec<Arc<Webhook>> = webhooks.into_iter().map(Arc::new).collect();
        plan(gateway, &webhooks, &settings(), &Quotas::default(), "bench")
    }

    #[test]
    fn the_stage_and_the_policy_come_from_the_index() {
        let none = serde_json::json!({"type": "None"});
        let limited = serde_json::json!({"type": "None", "sourceIpAllowList": ["10.0.0.0/8"]});
        let throttled = serde_json::json!({"rateLimit": 5.0, "burstLimit": 10});
        let cases: Vec<(&str, Vec<Webhook>, usize, bool)> = vec![
            ("no webhooks", vec![], 0, false),
            (
                "an open route",
                vec![webhook("a", "/a", none.clone(), serde_json::json!(null))],
                0,
                false,
            ),
            (
                "a throttled route",
                vec![webhook("a", "/a", none.clone(), throttled.clone())],
                1,
                false,
            ),
            (
                "an allow list",
                vec![webhook("a", "/a", limited.clone(), serde_json::json!(null))],
                0,
                true,
            ),
            (
                "both, on two routes",
                vec![
                    webhook("a", "/a", limited, serde_json::json!(null)),
                    webhook("b", "/b", none, throttled),
                ],
                1,
                true,
            ),
        ];
        for (name, webhooks, throttles, policy) in cases {
            let attached = webhooks.len();
            let plan = plan_of(&gateway(serde_json::json!({})), webhooks);
            assert_eq!(plan.stage.route_throttling.len(), throttles, "{name}");
            assert_eq!(plan.policy.is_some(), policy, "{name}");
            assert_eq!(
                plan.attached,
                i32::try_from(attached).unwrap_or(-1),
                "{name}"
            );
        }
    }

    #[test]
    fn access_logs_are_planned_only_when_enabled() {
        let off = plan_of(
            &gateway(serde_json::json!({"accessLogs": {"enabled": false}})),
            vec![],
        );
        assert_eq!(off.access_logs, None);
        let on = plan_of(
            &gateway(serde_json::json!({"accessLogs": {"enabled": true, "retentionDays": 7}})),
            vec![],
        );
        assert_eq!(on.access_logs.map(|(_, days)| days), Some(7));
    }

    #[test]
    fn records_grow_with_the_certificate_and_the_domain() {
        let plan = plan_of(&gateway(serde_json::json!({})), vec![]);
        let certificate = Certificate {
            arn: "arn:c".to_owned(),
            status: Status::Pending,
            validation_records: vec![ValidationRecord {
                name: "_x.hooks.example.com".to_owned(),
                kind: "CNAME".to_owned(),
                value: "_y.acm-validations.aws".to_owned(),
            }],
            in_use_by: Vec::new(),
        };
        let target = DomainTarget {
            regional_domain_name: "d-1.execute-api.us-east-1.amazonaws.com".to_owned(),
            regional_zone_id: "ZR".to_owned(),
        };
        let host = "hooks.example.com";
        assert_eq!(
            plan.records(host, None, None),
            vec![plan.owner_record.clone()]
        );
        assert_eq!(plan.records(host, Some(&certificate), None).len(), 2);
        let all = plan.records(host, Some(&certificate), Some(&target));
        assert_eq!(all.len(), 4, "ownership, validation, A and AAAA: {all:?}");
    }
}
