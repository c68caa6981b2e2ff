//! [`Domains`]: the gateway's custom domain (ownership decided by
//! [`domain_owned`]) and its `(none)` base path mapping.

use aws_sdk_apigateway::operation::get_domain_name::GetDomainNameOutput;
use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, SecurityPolicy};

use super::diff::{domain_owned, replace};
use super::{APIGW, ApiGatewayRestApis};
use crate::aws::error::gone_is_fine;
use crate::aws::{AwsError, Owner};

/// A custom domain for the gateway's hostname.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The hostname.
    pub domain: String,
    /// Regional ACM certificate ARN.
    pub certificate_arn: String,
    /// API and stage served at its root.
    pub api_id: String,
    /// Stage name.
    pub stage: String,
    /// The owning gateway.
    pub owner: Owner,
    /// The regional domain name the gateway's status holds for the domain it created
    /// (or proved its own before): the proof of ownership where the domain's owner
    /// tag cannot be read (see [`domain_owned`]).
    pub created: Option<String>,
}

/// Where the alias record of a custom domain points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainTarget {
    /// Regional domain name, e.g. `d-abc.execute-api.eu-west-1.amazonaws.com`.
    pub regional_domain_name: String,
    /// Its hosted zone id, for the Route 53 alias.
    pub regional_zone_id: String,
}

/// The gateway's custom domain and its base path mapping.
#[async_trait::async_trait]
pub trait Domains: Send + Sync {
    /// The custom domain (found, or created with the gateway's certificate), with
    /// that certificate. The caller records the returned regional domain name in the
    /// gateway's status before anything else ([`DomainSpec::created`]).
    async fn ensure_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError>;
    /// The domain's `(none)` base path mapping to the API's stage; a root mapped to
    /// anything else is a conflict, left untouched.
    async fn ensure_base_path_mapping(&self, spec: &DomainSpec) -> Result<(), AwsError>;
    /// Deletes the custom domain if it is ours (by its tag, or by `created`, the
    /// regional domain name the gateway recorded: see [`domain_owned`]).
    async fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
        created: Option<&str>,
    ) -> Result<(), AwsError>;
}

impl ApiGatewayRestApis {
    /// The custom domain, if it exists.
    pub(super) async fn get_domain(
        &self,
        domain: &str,
    ) -> Result<Option<GetDomainNameOutput>, AwsError> {
        match self
            .caller
            .call(
                APIGW,
                "GetDomainName",
                &format!("/domainnames/{domain}"),
                || self.apigateway.get_domain_name().domain_name(domain).send(),
            )
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A regional, TLS 1.2 custom domain with the gateway's certificate, tagged.
    async fn create_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError> {
        let created = self
            .caller
            .call(
                APIGW,
                "CreateDomainName",
                &format!("/domainnames/{}", spec.domain),
                || {
                    self.apigateway
                        .create_domain_name()
                        .domain_name(&spec.domain)
                        .regional_certificate_arn(&spec.certificate_arn)
                        .endpoint_configuration(
                            EndpointConfiguration::builder()
                                .types(EndpointType::Regional)
                                .build(),
                        )
                        .security_policy(SecurityPolicy::Tls12)
                        .set_tags(Some(spec.owner.tags().into_iter().collect()))
                        .send()
                },
            )
            .await?;
        domain_target(
            "CreateDomainName",
            created.regional_domain_name,
            created.regional_hosted_zone_id,
        )
    }
}

/// Where the alias goes, from what API Gateway answered `operation`.
fn domain_target(
    operation: &'static str,
    regional_domain_name: Option<String>,
    regional_zone_id: Option<String>,
) -> Result<DomainTarget, AwsError> {
    Ok(DomainTarget {
        regional_domain_name: regional_domain_name
            .ok_or_else(|| AwsError::unexpected(APIGW, operation, "no regional domain name"))?,
        regional_zone_id: regional_zone_id
            .ok_or_else(|| AwsError::unexpected(APIGW, operation, "no regional zone id"))?,
    })
}

#[async_trait::async_trait]
impl Domains for ApiGatewayRestApis {
    async fn ensure_domain(&self, spec: &DomainSpec) -> Result<DomainTarget, AwsError> {
        let Some(domain) = self.get_domain(&spec.domain).await? else {
            return self.create_domain(spec).await;
        };
        domain_owned(
            &spec.owner,
            &domain.tags.clone().unwrap_or_default(),
            domain.regional_domain_name.as_deref(),
            spec.created.as_deref(),
            "GetDomainName",
            &spec.domain,
        )?;
        if domain.regional_certificate_arn.as_deref() != Some(spec.certificate_arn.as_str()) {
            self.caller
                .call(
                    APIGW,
                    "UpdateDomainName",
                    &format!("/domainnames/{}", spec.domain),
                    || {
                        self.apigateway
                            .update_domain_name()
                            .domain_name(&spec.domain)
                            .patch_operations(replace(
                                "/regionalCertificateArn".into(),
                                spec.certificate_arn.clone(),
                            ))
                            .send()
                    },
                )
                .await?;
        }
        domain_target(
            "GetDomainName",
            domain.regional_domain_name,
            domain.regional_hosted_zone_id,
        )
    }

    async fn ensure_base_path_mapping(&self, spec: &DomainSpec) -> Result<(), AwsError> {
        let mappings = self
            .caller
            .call(
                APIGW,
                "GetBasePathMappings",
                &format!("/domainnames/{}/basepathmappings", spec.domain),
                || {
                    self.apigateway
                        .get_base_path_mappings()
                        .domain_name(&spec.domain)
                        .send()
                },
            )
            .await?
            .items
            .unwrap_or_default();
        let root = mappings
            .iter()
            .find(|m| matches!(m.base_path.as_deref(), Some("(none)" | "") | None));
        match root {
            Some(m)
                if m.rest_api_id.as_deref() == Some(spec.api_id.as_str())
                    && m.stage.as_deref() == Some(spec.stage.as_str()) => {}
            Some(m) => {
                return Err(AwsError::Conflict {
                    service: APIGW,
                    operation: "GetBasePathMappings",
                    message: format!(
                        "{} already maps its root to API {} stage {}; left untouched",
                        spec.domain,
                        m.rest_api_id.as_deref().unwrap_or("?"),
                        m.stage.as_deref().unwrap_or("?")
                    ),
                });
            }
            None => {
                self.caller
                    .call(
                        APIGW,
                        "CreateBasePathMapping",
                        &format!(
                            "/domainnames/{}/basepathmappings/(none) to /restapis/{}/stages/{}",
                            spec.domain, spec.api_id, spec.stage
                        ),
                        || {
                            self.apigateway
                                .create_base_path_mapping()
                                .domain_name(&spec.domain)
                                .rest_api_id(&spec.api_id)
                                .stage(&spec.stage)
                                .send()
                        },
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn delete_domain(
        &self,
        domain: &str,
        owner: &Owner,
        created: Option<&str>,
    ) -> Result<(), AwsError> {
        let Some(existing) = self.get_domain(domain).await? else {
            return Ok(());
        };
        domain_owned(
            owner,
            &existing.tags.unwrap_or_default(),
            existing.regional_domain_name.as_deref(),
            created,
            "GetDomainName",
            domain,
        )?;
        gone_is_fine(
            self.caller
                .call(
                    APIGW,
                    "DeleteDomainName",
                    &format!("/domainnames/{domain}"),
                    || {
                        self.apigateway
                            .delete_domain_name()
                            .domain_name(domain)
                            .send()
                    },
                )
                .await,
        )
    }
}
