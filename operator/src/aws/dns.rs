//! [`Dns`]: records in the gateway's Route 53 hosted zone (certificate validation
//! CNAMEs, the alias to API Gateway, the TXT ownership record).
//!
//! Route 53 allows 5 requests per second per account, so all of a gateway's records
//! go in one change batch, and only the records that differ are in it.

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord,
    ResourceRecordSet, RrType,
};
use std::time::Duration;

use super::{AwsError, Caller, Service};

const R53: Service = Service::Route53;

/// The value of a record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Plain values with a TTL (for TXT, each already quoted).
    Plain {
        /// The values.
        values: Vec<String>,
        /// TTL in seconds.
        ttl: i64,
    },
    /// An alias to an AWS endpoint (no TTL).
    Alias {
        /// DNS name of the target.
        target: String,
        /// Hosted zone of the target (API Gateway's regional zone).
        zone_id: String,
    },
}

/// One record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Fully qualified name; a trailing dot is optional.
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`.
    pub kind: RrType,
    /// What it holds.
    pub value: Value,
}

impl Record {
    /// The record as Route 53 reports it: lowercase names with a trailing dot.
    #[must_use]
    pub fn normalized(mut self) -> Self {
        self.name = fqdn(&self.name);
        if let Value::Alias { target, .. } = &mut self.value {
            *target = fqdn(target);
        }
        self
    }

    /// A TXT record holding `text` (quoted here).
    pub fn txt(name: &str, text: &str, ttl: i64) -> Self {
        Self {
            name: name.to_owned(),
            kind: RrType::Txt,
            value: Value::Plain {
                values: vec![format!("\"{}\"", text.replace('"', "\\\""))],
                ttl,
            },
        }
    }
}

/// A pending change, to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeId(pub String);

/// Records of a hosted zone.
#[async_trait::async_trait]
pub trait Dns: Send + Sync {
    /// The id of the one public hosted zone named `name`.
    async fn zone_by_name(&self, name: &str) -> Result<String, AwsError>;
    /// Upserts the records that differ, in one batch; `None` when all matched.
    async fn ensure_records(
        &self,
        zone_id: &str,
        records: &[Record],
    ) -> Result<Option<ChangeId>, AwsError>;
    /// The record sets of `name` (any type).
    async fn records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, AwsError>;
    /// Deletes those of `records` that exist as given; others are left alone.
    async fn delete_records(&self, zone_id: &str, records: &[Record]) -> Result<(), AwsError>;
    /// Waits until the change is INSYNC, or `timeout` passes.
    async fn wait_in_sync(&self, change: &ChangeId, timeout: Duration) -> Result<bool, AwsError>;
}

/// [`Dns`] on the Route 53 SDK.
#[derive(Debug, Clone)]
pub struct Route53Dns {
    route53: aws_sdk_route53::Client,
    caller: Caller,
}

impl Route53Dns {
    /// Uses `route53` for calls and `caller` for limits, retries and counts.
    pub fn new(route53: aws_sdk_route53::Client, caller: Caller) -> Self {
        Self { route53, caller }
    }

    async fn change(
        &self,
        zone_id: &str,
        changes: Vec<Change>,
        comment: &str,
    ) -> Result<ChangeId, AwsError> {
        let object = changes_object(zone_id, &changes);
        let batch = ChangeBatch::builder()
            .set_changes(Some(changes))
            .comment(comment)
            .build()
            .map_err(|e| AwsError::unexpected(R53, "ChangeResourceRecordSets", e.to_string()))?;
        let info = self
            .caller
            .call(R53, "ChangeResourceRecordSets", &object, || {
                self.route53
                    .change_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .change_batch(batch.clone())
                    .send()
            })
            .await?
            .change_info
            .ok_or_else(|| {
                AwsError::unexpected(R53, "ChangeResourceRecordSets", "no change info")
            })?;
        Ok(ChangeId(info.id))
    }
}

/// What a change batch touches, for the log: the zone and each record's action,
/// name and type.
fn changes_object(zone_id: &str, changes: &[Change]) -> String {
    let records: Vec<String> = changes
        .iter()
        .map(|c| match c.resource_record_set() {
            Some(set) => format!(
                "{} {} {}",
                c.action().as_str(),
                set.name(),
                set.r#type().as_str()
            ),
            None => c.action().as_str().to_owned(),
        })
        .collect();
    format!("hostedzone/{zone_id}: {}", records.join(", "))
}

/// `name` lowercased with exactly one trailing dot, as Route 53 answers.
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// The one public hosted zone of `ids` (those named `wanted`): none is not found,
/// several is a conflict the spec must settle by naming one by id.
pub fn the_public_zone(ids: Vec<String>, wanted: &str) -> Result<String, AwsError> {
    match ids.as_slice() {
        [zone] => Ok(zone.clone()),
        [] => Err(AwsError::NotFound {
            service: R53,
            operation: "ListHostedZonesByName",
            message: format!("no public hosted zone named {wanted}"),
        }),
        _ => Err(AwsError::Conflict {
            service: R53,
            operation: "ListHostedZonesByName",
            message: format!(
                "{} public hosted zones are named {wanted}; name one by id",
                ids.len()
            ),
        }),
    }
}

fn to_set(record: &Record) -> Result<ResourceRecordSet, AwsError> {
    let builder = ResourceRecordSet::builder()
        .name(fqdn(&record.name))
        .r#type(record.kind.clone());
    let builder = match &record.value {
        Value::Plain { values, ttl } => builder.ttl(*ttl).set_resource_records(Some(
            values
                .iter()
                .filter_map(|v| ResourceRecord::builder().value(v).build().ok())
                .collect(),
        )),
        Value::Alias { target, zone_id } => builder.alias_target(
            AliasTarget::builder()
                .dns_name(fqdn(target))
                .hosted_zone_id(zone_id)
                .evaluate_target_health(false)
                .build()
                .map_err(|e| {
                    AwsError::unexpected(R53, "ChangeResourceRecordSets", e.to_string())
                })?,
        ),
    };
    builder
        .build()
        .map_err(|e| AwsError::unexpected(R53, "ChangeResourceRecordSets", e.to_string()))
}

fn from_set(set: ResourceRecordSet) -> Record {
    let value = match set.alias_target {
        Some(alias) => Value::Alias {
            target: fqdn(&alias.dns_name),
            zone_id: alias.hosted_zone_id,
        },
        None => Value::Plain {
            values: set
                .resource_records
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.value)
                .collect(),
            ttl: set.ttl.unwrap_or(0),
        },
    };
    Record {
        name: fqdn(&set.name),
        kind: set.r#type,
        value,
    }
}

/// Whether an existing record already is what we want.
fn matches(have: &Record, want: &Record) -> bool {
    fqdn(&have.name) == fqdn(&want.name)
        && have.kind == want.kind
        && match (&have.value, &want.value) {
            (
                Value::Alias {
                    target: a,
                    zone_id: za,
                },
                Value::Alias {
                    target: b,
                    zone_id: zb,
                },
            ) => fqdn(a) == fqdn(b) && za == zb,
            (Value::Plain { values: a, ttl: ta }, Value::Plain { values: b, ttl: tb }) => {
                let mut a = a.clone();
                let mut b = b.clone();
                a.sort();
                b.sort();
                a == b && ta == tb
            }
            _ => false,
        }
}

#[async_trait::async_trait]
impl Dns for Route53Dns {
    async fn zone_by_name(&self, name: &str) -> Result<String, AwsError> {
        let wanted = fqdn(name);
        let zones = self
            .caller
            .call(R53, "ListHostedZonesByName", &wanted, || {
                self.route53
                    .list_hosted_zones_by_name()
                    .dns_name(&wanted)
                    .max_items(10)
                    .send()
            })
            .await?
            .hosted_zones;
        let public: Vec<_> = zones
            .into_iter()
            .filter(|z| {
                fqdn(&z.name) == wanted && !z.config.as_ref().is_some_and(|c| c.private_zone)
            })
            .collect();
        let ids: Vec<String> = public
            .iter()
            .map(|zone| zone.id.trim_start_matches("/hostedzone/").to_owned())
            .collect();
        the_public_zone(ids, &wanted)
    }

    async fn ensure_records(
        &self,
        zone_id: &str,
        records: &[Record],
    ) -> Result<Option<ChangeId>, AwsError> {
        let mut changes = Vec::new();
        let mut names: Vec<String> = records.iter().map(|r| fqdn(&r.name)).collect();
        names.dedup();
        let mut existing = Vec::new();
        for name in &names {
            existing.extend(self.records(zone_id, name).await?);
        }
        for want in records {
            if !existing.iter().any(|have| matches(have, want)) {
                changes.push(
                    Change::builder()
                        .action(ChangeAction::Upsert)
                        .resource_record_set(to_set(want)?)
                        .build()
                        .map_err(|e| {
                            AwsError::unexpected(R53, "ChangeResourceRecordSets", e.to_string())
                        })?,
                );
            }
        }
        if changes.is_empty() {
            return Ok(None);
        }
        self.change(zone_id, changes, "hookline").await.map(Some)
    }

    async fn records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, AwsError> {
        let name = fqdn(name);
        let sets = self
            .caller
            .call(
                R53,
                "ListResourceRecordSets",
                &format!("{zone_id} {name}"),
                || {
                    self.route53
                        .list_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .start_record_name(&name)
                        .max_items(20)
                        .send()
                },
            )
            .await?
            .resource_record_sets;
        // The listing starts at `name` and continues with the names after it.
        Ok(sets
            .into_iter()
            .map(from_set)
            .filter(|r| r.name == name)
            .collect())
    }

    async fn delete_records(&self, zone_id: &str, records: &[Record]) -> Result<(), AwsError> {
        let mut changes = Vec::new();
        for want in records {
            let existing = self.records(zone_id, &want.name).await?;
            // Route 53 deletes only an exact match, so delete what is there if it is
            // what we wrote; anything else is someone else's and stays.
            if let Some(have) = existing.iter().find(|have| matches(have, want)) {
                changes.push(
                    Change::builder()
                        .action(ChangeAction::Delete)
                        .resource_record_set(to_set(have)?)
                        .build()
                        .map_err(|e| {
                            AwsError::unexpected(R53, "ChangeResourceRecordSets", e.to_string())
                        })?,
                );
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        match self.change(zone_id, changes, "hookline cleanup").await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    async fn wait_in_sync(&self, change: &ChangeId, timeout: Duration) -> Result<bool, AwsError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self
                .caller
                .call(R53, "GetChange", &change.0, || {
                    self.route53.get_change().id(&change.0).send()
                })
                .await?
                .change_info
                .map(|info| info.status);
            if status == Some(ChangeStatus::Insync) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_or_trailing_dot() {
        assert_eq!(fqdn("Hooks.Example.com"), "hooks.example.com.");
        assert_eq!(fqdn("hooks.example.com."), "hooks.example.com.");
    }

    #[test]
    fn records_match_by_meaning() {
        let a = Record::txt("_hookline.hooks.example.com", "owner=abc", 300);
        let mut b = a.clone();
        b.name = "_HOOKLINE.hooks.example.com.".to_owned();
        assert!(matches(&a, &b));
        let c = Record::txt("_hookline.hooks.example.com", "owner=xyz", 300);
        assert!(!matches(&a, &c));
        let alias = |target: &str| Record {
            name: "hooks.example.com".to_owned(),
            kind: RrType::A,
            value: Value::Alias {
                target: target.to_owned(),
                zone_id: "Z2FDTNDATAQYW2".to_owned(),
            },
        };
        assert!(matches(
            &alias("d-abc.execute-api.eu-west-1.amazonaws.com"),
            &alias("D-ABC.execute-api.eu-west-1.amazonaws.com.")
        ));
        assert!(!matches(
            &alias("d-abc.execute-api.eu-west-1.amazonaws.com"),
            &alias("d-def.execute-api.eu-west-1.amazonaws.com")
        ));
    }

    #[test]
    fn txt_values_are_quoted() {
        let r = Record::txt("x.example.com", "a \"b\"", 60);
        assert_eq!(
            r.value,
            Value::Plain {
                values: vec!["\"a \\\"b\\\"\"".to_owned()],
                ttl: 60
            }
        );
    }
}
