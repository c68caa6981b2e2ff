//! [`Certificates`] in memory: ACM certificates validated through DNS. A pending
//! certificate becomes ISSUED when it is next read once its validation CNAME is in a
//! hosted zone of the in-memory Route 53 (unless [`super::State::auto_validate`] is
//! off); one in use by a custom domain cannot be deleted.

use std::collections::BTreeMap;

use super::{ACCOUNT, MemoryAws, State, not_found, owner_of};
use crate::aws::certificates::{Status, ValidationRecord};
use crate::aws::dns::{Value, fqdn};
use crate::aws::{AwsError, Certificate, CertificateSpec, Certificates, Owner, Service};

const ACM: Service = Service::Acm;

/// ACM's status names.
pub const PENDING_VALIDATION: &str = "PENDING_VALIDATION";
/// An issued certificate.
pub const ISSUED: &str = "ISSUED";

/// One ACM certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCertificate {
    /// The hostname it covers.
    pub domain: String,
    /// ACM's status name (`PENDING_VALIDATION`, `ISSUED`, `VALIDATION_TIMED_OUT`, …).
    pub status: String,
    /// The CNAME ACM wants to see.
    pub validation: ValidationRecord,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl MemoryCertificate {
    fn terminal(&self) -> bool {
        self.status != PENDING_VALIDATION && self.status != ISSUED
    }
}

impl MemoryAws {
    /// The certificate `arn`, if it exists.
    pub fn certificate(&self, arn: &str) -> Option<MemoryCertificate> {
        self.read(|s| s.certificates.get(arn).cloned())
    }

    /// The ARNs of the certificates for `domain`.
    pub fn certificates_for(&self, domain: &str) -> Vec<String> {
        self.read(|s| {
            s.certificates
                .iter()
                .filter(|(_, c)| c.domain == domain)
                .map(|(arn, _)| arn.clone())
                .collect()
        })
    }

    /// Sets a certificate's status, as ACM would after 72 hours without validation
    /// (`VALIDATION_TIMED_OUT`), or on revocation.
    pub fn set_certificate_status(&self, arn: &str, status: &str) -> bool {
        self.edit(|s| {
            s.certificates
                .get_mut(arn)
                .map(|c| c.status = status.to_owned())
        })
        .is_some()
    }
}

/// Whether a hosted zone holds `record` (ACM's check before it issues).
fn published(state: &State, record: &ValidationRecord) -> bool {
    state.zones.values().any(|zone| {
        zone.records.iter().any(|r| {
            fqdn(&r.name) == fqdn(&record.name)
                && r.kind.as_str() == record.kind
                && matches!(&r.value, Value::Plain { values, .. }
                    if values.iter().any(|v| fqdn(v) == fqdn(&record.value)))
        })
    })
}

fn describe(state: &mut State, arn: &str) -> Result<Certificate, AwsError> {
    state.call(ACM, "DescribeCertificate")?;
    let auto = state.auto_validate;
    let validated = state
        .certificates
        .get(arn)
        .is_some_and(|c| auto && c.status == PENDING_VALIDATION && published(state, &c.validation));
    let certificate = state
        .certificates
        .get_mut(arn)
        .ok_or_else(|| not_found(ACM, "DescribeCertificate", format!("certificate {arn}")))?;
    if validated {
        ISSUED.clone_into(&mut certificate.status);
    }
    let status = match certificate.status.as_str() {
        ISSUED => Status::Issued,
        PENDING_VALIDATION => Status::Pending,
        other => Status::Failed(other.to_owned()),
    };
    let certificate = certificate.clone();
    let in_use_by = state
        .domains
        .iter()
        .filter(|(_, d)| d.certificate_arn == arn)
        .map(|(name, _)| format!("arn:aws:apigateway:{}::/domainnames/{name}", state.region))
        .collect();
    Ok(Certificate {
        arn: arn.to_owned(),
        status,
        validation_records: vec![certificate.validation],
        in_use_by,
    })
}

fn request(state: &mut State, spec: &CertificateSpec) -> Result<Certificate, AwsError> {
    state.call(ACM, "RequestCertificate")?;
    let id = state.new_id();
    let arn = format!("arn:aws:acm:{}:{ACCOUNT}:certificate/{id}", state.region);
    let mut tags: BTreeMap<String, String> = spec.tags.iter().cloned().collect();
    tags.extend(spec.owner.tags());
    state.certificates.insert(
        arn.clone(),
        MemoryCertificate {
            domain: spec.domain.clone(),
            status: PENDING_VALIDATION.to_owned(),
            validation: ValidationRecord {
                name: format!("_{id}.{}.", spec.domain.trim_end_matches('.')),
                kind: "CNAME".to_owned(),
                value: format!("_{id}v.acm-validations.aws."),
            },
            tags,
        },
    );
    describe(state, &arn)
}

#[async_trait::async_trait]
impl Certificates for MemoryAws {
    async fn ensure(&self, spec: &CertificateSpec) -> Result<Certificate, AwsError> {
        let mut state = self.lock();
        state.call(ACM, "ListCertificates")?;
        let candidates: Vec<(String, Option<String>)> = state
            .certificates
            .iter()
            .filter(|(_, c)| c.domain == spec.domain && !c.terminal())
            .map(|(arn, c)| (arn.clone(), owner_of(&c.tags).map(str::to_owned)))
            .collect();
        for (arn, owner) in candidates {
            state.call(ACM, "ListTagsForCertificate")?;
            if owner.as_deref() == Some(spec.owner.uid.as_str()) {
                return describe(&mut state, &arn);
            }
        }
        request(&mut state, spec)
    }

    async fn replace(&self, spec: &CertificateSpec, _old: &str) -> Result<Certificate, AwsError> {
        request(&mut self.lock(), spec)
    }

    async fn describe(&self, arn: &str) -> Result<Certificate, AwsError> {
        describe(&mut self.lock(), arn)
    }

    async fn delete(&self, arn: &str, owner: &Owner) -> Result<(), AwsError> {
        let mut state = self.lock();
        state.call(ACM, "ListTagsForCertificate")?;
        let Some(certificate) = state.certificates.get(arn) else {
            return Ok(());
        };
        let current = owner_of(&certificate.tags);
        if current != Some(owner.uid.as_str()) {
            return Err(AwsError::not_owned(
                ACM,
                "ListTagsForCertificate",
                "certificate",
                arn,
                current,
            ));
        }
        state.call(ACM, "DeleteCertificate")?;
        if state.domains.values().any(|d| d.certificate_arn == arn) {
            return Err(AwsError::Conflict {
                service: ACM,
                operation: "DeleteCertificate",
                message: format!("Certificate {arn} in use"),
            });
        }
        state.certificates.remove(arn);
        Ok(())
    }
}
