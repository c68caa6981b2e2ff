//! [`Certificates`]: the ACM certificate of a gateway's hostname, validated through
//! DNS records that the operator writes itself.

use aws_sdk_acm::types::{CertificateStatus, Tag, ValidationMethod};

use super::error::gone_is_fine;
use super::{AwsError, Caller, Owner, Service};

const ACM: Service = Service::Acm;

/// What a certificate should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSpec {
    /// The hostname it covers.
    pub domain: String,
    /// The owning resource.
    pub owner: Owner,
    /// Extra tags.
    pub tags: Vec<(String, String)>,
}

/// A DNS record ACM wants to see before it issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationRecord {
    /// Record name, e.g. `_x1.hooks.example.com.`.
    pub name: String,
    /// Record type (always CNAME today).
    pub kind: String,
    /// Record value.
    pub value: String,
}

/// Where a certificate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the validation records to be seen.
    Pending,
    /// Usable.
    Issued,
    /// ACM gave up (FAILED, VALIDATION_TIMED_OUT after 72 hours), or the certificate
    /// expired, was revoked or is inactive; the text says which. Terminal: ACM never
    /// moves such a certificate back to ISSUED, so it has to be replaced.
    Failed(String),
}

impl Status {
    /// ACM's status name, as a terminal status is reported.
    fn of(status: Option<&CertificateStatus>) -> Self {
        match status {
            Some(CertificateStatus::Issued) => Self::Issued,
            Some(CertificateStatus::PendingValidation) | None => Self::Pending,
            Some(other) => Self::Failed(other.as_str().to_owned()),
        }
    }

    /// Whether the certificate can never become usable again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Failed(_))
    }
}

/// A certificate as ACM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Certificate ARN.
    pub arn: String,
    /// Status.
    pub status: Status,
    /// Records to publish; empty until ACM has generated them (a few seconds).
    pub validation_records: Vec<ValidationRecord>,
    /// ARNs of what uses the certificate (custom domains, load balancers). ACM
    /// refuses to delete it until this is empty, which can take 10–20 minutes after
    /// DeleteDomainName.
    pub in_use_by: Vec<String>,
}

/// A gateway's certificate.
#[async_trait::async_trait]
pub trait Certificates: Send + Sync {
    /// Our certificate for the domain, requested if there is none usable (one in a
    /// terminal status is never returned).
    async fn ensure(&self, spec: &CertificateSpec) -> Result<Certificate, AwsError>;
    /// A new certificate in place of `old`, which is terminal: requested with an
    /// idempotency token of its own, since ACM would answer a repeat of the first
    /// request (within an hour) with `old` again.
    async fn replace(&self, spec: &CertificateSpec, old: &str) -> Result<Certificate, AwsError>;
    /// The current state of a certificate.
    async fn describe(&self, arn: &str) -> Result<Certificate, AwsError>;
    /// Deletes a certificate of ours; one already gone is fine. One still in use
    /// answers [`AwsError::Conflict`] (ACM's ResourceInUseException).
    async fn delete(&self, arn: &str, owner: &Owner) -> Result<(), AwsError>;
}

/// [`Certificates`] on the ACM SDK.
#[derive(Debug, Clone)]
pub struct AcmCertificates {
    acm: aws_sdk_acm::Client,
    caller: Caller,
}

impl AcmCertificates {
    /// Uses `acm` for calls and `caller` for limits, retries and counts.
    pub fn new(acm: aws_sdk_acm::Client, caller: Caller) -> Self {
        Self { acm, caller }
    }

    async fn owner_of(&self, arn: &str) -> Result<Option<String>, AwsError> {
        let tags = self
            .caller
            .call(ACM, "ListTagsForCertificate", arn, || {
                self.acm
                    .list_tags_for_certificate()
                    .certificate_arn(arn)
                    .send()
            })
            .await?
            .tags
            .unwrap_or_default();
        Ok(tags
            .into_iter()
            .find(|t| t.key == super::OWNER_TAG)
            .and_then(|t| t.value))
    }

    /// Our certificate for `domain`, found by tag: ACM allows many certificates per
    /// domain, and its idempotency token only holds for an hour (emulators ignore it).
    async fn find(&self, domain: &str, owner: &Owner) -> Result<Option<String>, AwsError> {
        let mut next: Option<String> = None;
        // Bounded: at most 100 pages of 1,000 certificates.
        for _ in 0..100 {
            let page = self
                .caller
                .call(ACM, "ListCertificates", domain, || {
                    self.acm
                        .list_certificates()
                        .set_next_token(next.clone())
                        .max_items(1000)
                        .send()
                })
                .await?;
            for summary in page.certificate_summary_list.unwrap_or_default() {
                if Status::of(summary.status.as_ref()).is_terminal() {
                    continue;
                }
                let (Some(arn), Some(name)) = (summary.certificate_arn, summary.domain_name) else {
                    continue;
                };
                if name == domain
                    && self.owner_of(&arn).await?.as_deref() == Some(owner.uid.as_str())
                {
                    return Ok(Some(arn));
                }
            }
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        Ok(None)
    }
}

/// An idempotency token from the owner's uid: `\w{1,32}`, stable per resource.
fn idempotency_token(owner: &Owner) -> String {
    owner
        .uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect()
}

/// The token of a replacement: stable for one (owner, old certificate) pair, so a
/// retried replacement is still one certificate, and unlike the first request's.
fn replacement_token(owner: &Owner, old: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{}\n{old}", owner.uid).as_bytes(),
    );
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl AcmCertificates {
    async fn request(
        &self,
        spec: &CertificateSpec,
        token: String,
    ) -> Result<Certificate, AwsError> {
        let tags: Vec<Tag> = spec
            .tags
            .iter()
            .cloned()
            .chain(spec.owner.tags())
            .filter_map(|(key, value)| Tag::builder().key(key).value(value).build().ok())
            .collect();
        let arn = self
            .caller
            .call(ACM, "RequestCertificate", &spec.domain, || {
                self.acm
                    .request_certificate()
                    .domain_name(&spec.domain)
                    .validation_method(ValidationMethod::Dns)
                    .idempotency_token(token.clone())
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?
            .certificate_arn
            .ok_or_else(|| AwsError::unexpected(ACM, "RequestCertificate", "no certificate ARN"))?;
        tracing::info!(domain = %spec.domain, %arn, "requested certificate");
        self.describe(&arn).await
    }
}

#[async_trait::async_trait]
impl Certificates for AcmCertificates {
    async fn ensure(&self, spec: &CertificateSpec) -> Result<Certificate, AwsError> {
        if let Some(arn) = self.find(&spec.domain, &spec.owner).await? {
            return self.describe(&arn).await;
        }
        self.request(spec, idempotency_token(&spec.owner)).await
    }

    async fn replace(&self, spec: &CertificateSpec, old: &str) -> Result<Certificate, AwsError> {
        tracing::info!(domain = %spec.domain, %old, "replacing a certificate ACM will not issue");
        self.request(spec, replacement_token(&spec.owner, old))
            .await
    }

    async fn describe(&self, arn: &str) -> Result<Certificate, AwsError> {
        let detail = self
            .caller
            .call(ACM, "DescribeCertificate", arn, || {
                self.acm.describe_certificate().certificate_arn(arn).send()
            })
            .await?
            .certificate
            .ok_or_else(|| {
                AwsError::unexpected(ACM, "DescribeCertificate", format!("no detail for {arn}"))
            })?;
        let status = match Status::of(detail.status.as_ref()) {
            Status::Failed(name) => Status::Failed(format!(
                "{name}{}",
                detail
                    .failure_reason
                    .map(|r| format!(": {}", r.as_str()))
                    .unwrap_or_default()
            )),
            other => other,
        };
        let validation_records = detail
            .domain_validation_options
            .unwrap_or_default()
            .into_iter()
            .filter_map(|option| option.resource_record)
            .map(|record| ValidationRecord {
                name: record.name,
                kind: record.r#type.as_str().to_owned(),
                value: record.value,
            })
            .collect();
        Ok(Certificate {
            arn: arn.to_owned(),
            status,
            validation_records,
            in_use_by: detail.in_use_by.unwrap_or_default(),
        })
    }

    async fn delete(&self, arn: &str, owner: &Owner) -> Result<(), AwsError> {
        let current = match self.owner_of(arn).await {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        if current.as_deref() != Some(owner.uid.as_str()) {
            return Err(AwsError::not_owned(
                ACM,
                "ListTagsForCertificate",
                "certificate",
                arn,
                current.as_deref(),
            ));
        }
        gone_is_fine(
            self.caller
                .call(ACM, "DeleteCertificate", arn, || {
                    self.acm.delete_certificate().certificate_arn(arn).send()
                })
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_are_the_ones_acm_never_leaves() {
        for status in [
            CertificateStatus::Failed,
            CertificateStatus::ValidationTimedOut,
            CertificateStatus::Revoked,
            CertificateStatus::Expired,
            CertificateStatus::Inactive,
        ] {
            assert!(Status::of(Some(&status)).is_terminal(), "{status:?}");
        }
        for status in [
            Some(CertificateStatus::Issued),
            Some(CertificateStatus::PendingValidation),
            None,
        ] {
            assert!(!Status::of(status.as_ref()).is_terminal(), "{status:?}");
        }
    }

    #[test]
    fn a_replacement_has_its_own_stable_token() {
        let owner = Owner {
            uid: "0f3c2a9e-1b2c-4d5e-8f90-123456789abc".into(),
            resource: "WebhookGateway public".into(),
        };
        let first = idempotency_token(&owner);
        let replacement = replacement_token(&owner, "arn:aws:acm:r:1:certificate/a");
        assert_ne!(first, replacement);
        assert_eq!(
            replacement,
            replacement_token(&owner, "arn:aws:acm:r:1:certificate/a")
        );
        assert_ne!(
            replacement,
            replacement_token(&owner, "arn:aws:acm:r:1:certificate/b")
        );
        assert!(replacement.len() <= 32 && replacement.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
