//! [`Dns`] in memory: Route 53 hosted zones and their record sets. An UPSERT
//! replaces the record set of the same name and type, as Route 53's does; every
//! change is INSYNC at once.

use std::time::Duration;

use super::{MemoryAws, State, not_found};
use crate::aws::dns::{ChangeId, Record, Value, fqdn, the_public_zone};
use crate::aws::{AwsError, Dns, Service};

const R53: Service = Service::Route53;

/// A hosted zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryZone {
    /// Zone name, with a trailing dot.
    pub name: String,
    /// A private zone (never the gateway's).
    pub private: bool,
    /// Record sets, names normalised (lowercase, trailing dot).
    pub records: Vec<Record>,
}

impl MemoryAws {
    /// Creates a public hosted zone `name`; returns its id.
    pub fn create_zone(&self, name: &str) -> String {
        self.edit(|s| {
            let id = format!("Z{}", s.new_id().to_ascii_uppercase());
            s.zones.insert(
                id.clone(),
                MemoryZone {
                    name: fqdn(name),
                    ..MemoryZone::default()
                },
            );
            id
        })
    }

    /// The record sets of zone `zone_id` named `name` (any type).
    pub fn records_named(&self, zone_id: &str, name: &str) -> Vec<Record> {
        self.read(|s| {
            s.zones
                .get(zone_id)
                .map(|z| {
                    z.records
                        .iter()
                        .filter(|r| r.name == fqdn(name))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

/// Whether an existing record already is what we want (values in any order).
fn same(have: &Record, want: &Record) -> bool {
    let (have, want) = (have.clone().normalized(), want.clone().normalized());
    have.name == want.name
        && have.kind == want.kind
        && match (&have.value, &want.value) {
            (Value::Plain { values: a, ttl: ta }, Value::Plain { values: b, ttl: tb }) => {
                let (mut a, mut b) = (a.clone(), b.clone());
                a.sort();
                b.sort();
                a == b && ta == tb
            }
            (a, b) => a == b,
        }
}

fn zone<'a>(
    state: &'a mut State,
    zone_id: &str,
    operation: &'static str,
) -> Result<&'a mut MemoryZone, AwsError> {
    state
        .zones
        .get_mut(zone_id.trim_start_matches("/hostedzone/"))
        .ok_or_else(|| not_found(R53, operation, format!("hosted zone {zone_id}")))
}

fn list(state: &mut State, zone_id: &str, name: &str) -> Result<Vec<Record>, AwsError> {
    state.call(R53, "ListResourceRecordSets")?;
    let name = fqdn(name);
    Ok(zone(state, zone_id, "ListResourceRecordSets")?
        .records
        .iter()
        .filter(|r| r.name == name)
        .cloned()
        .collect())
}

#[async_trait::async_trait]
impl Dns for MemoryAws {
    async fn zone_by_name(&self, name: &str) -> Result<String, AwsError> {
        let mut state = self.lock();
        state.call(R53, "ListHostedZonesByName")?;
        let wanted = fqdn(name);
        let public: Vec<String> = state
            .zones
            .iter()
            .filter(|(_, z)| z.name == wanted && !z.private)
            .map(|(id, _)| id.clone())
            .collect();
        the_public_zone(public, &wanted)
    }

    async fn ensure_records(
        &self,
        zone_id: &str,
        records: &[Record],
    ) -> Result<Option<ChangeId>, AwsError> {
        let mut state = self.lock();
        let mut names: Vec<String> = records.iter().map(|r| fqdn(&r.name)).collect();
        names.dedup();
        let mut existing = Vec::new();
        for name in &names {
            existing.extend(list(&mut state, zone_id, name)?);
        }
        let changes: Vec<Record> = records
            .iter()
            .filter(|want| !existing.iter().any(|have| same(have, want)))
            .map(|r| r.clone().normalized())
            .collect();
        if changes.is_empty() {
            return Ok(None);
        }
        state.call(R53, "ChangeResourceRecordSets")?;
        let id = state.new_id();
        let zone = zone(&mut state, zone_id, "ChangeResourceRecordSets")?;
        for change in changes {
            zone.records
                .retain(|r| !(r.name == change.name && r.kind == change.kind));
            zone.records.push(change);
        }
        Ok(Some(ChangeId(format!("/change/C{id}"))))
    }

    async fn records(&self, zone_id: &str, name: &str) -> Result<Vec<Record>, AwsError> {
        list(&mut self.lock(), zone_id, name)
    }

    async fn delete_records(&self, zone_id: &str, records: &[Record]) -> Result<(), AwsError> {
        let mut state = self.lock();
        let mut gone = Vec::new();
        for want in records {
            // Route 53 deletes only an exact match; anything else is someone else's.
            if let Some(have) = list(&mut state, zone_id, &want.name)?
                .into_iter()
                .find(|have| same(have, want))
            {
                gone.push(have);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        state.call(R53, "ChangeResourceRecordSets")?;
        zone(&mut state, zone_id, "ChangeResourceRecordSets")?
            .records
            .retain(|r| !gone.contains(r));
        Ok(())
    }

    async fn wait_in_sync(&self, _change: &ChangeId, _timeout: Duration) -> Result<bool, AwsError> {
        self.lock().call(R53, "GetChange")?;
        Ok(true)
    }
}
