//! Who owns a custom domain, on both data planes: the domain the gateway created is
//! its own by the owner tag, or (where the tag cannot be read: LocalStack drops a
//! domain's tags) by the regional domain name its status recorded at creation; a
//! domain someone else created under the hostname is refused in every case, for
//! updating and for deleting (`rest_apis::domain_owned`, docs/operator.md).

use anyhow::{Context as _, Result};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{
    AcmCertificates, ApiGatewayRestApis, ApiSpec, AwsClients, AwsError, CertificateSpec,
    DomainSpec, OWNER_TAG, Owner, RateLimits, RetryPolicy,
};
use hookline_tests::{Bench, EmulatorKind, data_plane_test};
use std::collections::{BTreeMap, HashMap};

fn owner(uid: &str) -> Owner {
    Owner {
        uid: uid.to_owned(),
        resource: format!("WebhookGateway {uid}"),
    }
}

fn not_owned<T: std::fmt::Debug>(result: Result<T, AwsError>, what: &str) -> Result<()> {
    match result {
        Err(AwsError::NotOwned { .. }) => Ok(()),
        other => anyhow::bail!("{what}: expected NotOwned, got {other:?}"),
    }
}

data_plane_test!(a_domain_is_ours_by_tag_or_by_the_name_recorded_at_creation);

async fn a_domain_is_ours_by_tag_or_by_the_name_recorded_at_creation(
    kind: EmulatorKind,
) -> Result<()> {
    let aws = Bench::shared().await?.data_plane(kind).await?;
    let clients = AwsClients::new(
        &aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
    let acm = AcmCertificates::new(clients.acm.clone(), clients.caller.clone());
    let id = format!("{}x{}", std::process::id(), kind.name());
    let ours = owner(&format!("gw-{id}"));
    let api = apis
        .ensure_api(
            &ApiSpec {
                name: format!("hookline-domains-{id}"),
                tags: BTreeMap::new(),
                owner: ours.clone(),
            },
            None,
        )
        .await?;
    let domain_for = |host: &str, certificate_arn: &str, created: Option<String>| DomainSpec {
        domain: host.to_owned(),
        certificate_arn: certificate_arn.to_owned(),
        api_id: api.id.clone(),
        stage: "live".to_owned(),
        owner: ours.clone(),
        created,
    };
    let certificate = |host: String| {
        let acm = &acm;
        let ours = &ours;
        async move {
            acm.ensure(&CertificateSpec {
                domain: host,
                owner: ours.clone(),
                tags: vec![],
            })
            .await
            .map(|c| c.arn)
        }
    };

    // The platform team's zone: LocalStack answers a domain's regionalHostedZoneId
    // only when a zone holds its name (docs/emulators.md).
    let zone = format!("domains-{id}.example.com");
    clients
        .route53
        .create_hosted_zone()
        .name(&zone)
        .caller_reference(&zone)
        .send()
        .await?;

    // Ours: created by the gateway, then found again by the name it recorded.
    let host = format!("hooks.{zone}");
    let arn = certificate(host.clone()).await?;
    let target = apis.ensure_domain(&domain_for(&host, &arn, None)).await?;
    let recorded = Some(target.regional_domain_name.clone());
    let again = apis
        .ensure_domain(&domain_for(&host, &arn, recorded.clone()))
        .await?;
    assert_eq!(again, target, "the domain it created, found again");
    // Without the record, the tag alone decides: ours where the emulator keeps a
    // domain's tags (AWS does), refused where it drops them (LocalStack).
    let tags_kept = clients
        .apigateway
        .get_domain_name()
        .domain_name(&host)
        .send()
        .await?
        .tags
        .unwrap_or_default()
        .get(OWNER_TAG)
        == Some(&ours.uid);
    let unrecorded = apis.ensure_domain(&domain_for(&host, &arn, None)).await;
    if tags_kept {
        unrecorded.context("our tagged domain, without a record")?;
    } else {
        not_owned(unrecorded, "our untagged domain without a record")?;
    }

    // Someone else's domain under another hostname, created without tags: refused with
    // no record, with our own domain's record, and for deletion.
    let foreign = format!("foreign.{zone}");
    let foreign_arn = certificate(foreign.clone()).await?;
    clients
        .apigateway
        .create_domain_name()
        .domain_name(&foreign)
        .regional_certificate_arn(&foreign_arn)
        .endpoint_configuration(
            aws_sdk_apigateway::types::EndpointConfiguration::builder()
                .types(aws_sdk_apigateway::types::EndpointType::Regional)
                .build(),
        )
        .send()
        .await?;
    not_owned(
        apis.ensure_domain(&domain_for(&foreign, &arn, None)).await,
        "a foreign untagged domain",
    )?;
    not_owned(
        apis.ensure_domain(&domain_for(&foreign, &arn, recorded.clone()))
            .await,
        "a foreign untagged domain, with our domain's record",
    )?;
    not_owned(
        apis.delete_domain(&foreign, &ours, None).await,
        "deleting a foreign untagged domain",
    )?;
    not_owned(
        apis.delete_domain(&foreign, &ours, recorded.as_deref())
            .await,
        "deleting a foreign untagged domain, with our domain's record",
    )?;

    // Someone else's domain tagged as theirs: their tag wins even over a record that
    // names it (status cannot hand us a domain whose owner tag says otherwise).
    let rival = format!("rival.{zone}");
    let rival_arn = certificate(rival.clone()).await?;
    let rival_target = clients
        .apigateway
        .create_domain_name()
        .domain_name(&rival)
        .regional_certificate_arn(&rival_arn)
        .endpoint_configuration(
            aws_sdk_apigateway::types::EndpointConfiguration::builder()
                .types(aws_sdk_apigateway::types::EndpointType::Regional)
                .build(),
        )
        .set_tags(Some(HashMap::from([(
            OWNER_TAG.to_owned(),
            "someone-else".to_owned(),
        )])))
        .send()
        .await?
        .regional_domain_name;
    let rival_tagged = clients
        .apigateway
        .get_domain_name()
        .domain_name(&rival)
        .send()
        .await?
        .tags
        .unwrap_or_default()
        .contains_key(OWNER_TAG);
    if rival_tagged {
        not_owned(
            apis.ensure_domain(&domain_for(&rival, &arn, rival_target.clone()))
                .await,
            "a domain tagged as another owner's, with a record naming it",
        )?;
        not_owned(
            apis.delete_domain(&rival, &ours, rival_target.as_deref())
                .await,
            "deleting a domain tagged as another owner's",
        )?;
    }
    for name in [&foreign, &rival] {
        assert!(
            clients
                .apigateway
                .get_domain_name()
                .domain_name(name)
                .send()
                .await
                .is_ok(),
            "{name} is left untouched"
        );
    }

    // Our domain is deleted with its record (on LocalStack, only with it).
    apis.delete_domain(&host, &ours, recorded.as_deref())
        .await?;
    assert!(
        clients
            .apigateway
            .get_domain_name()
            .domain_name(&host)
            .send()
            .await
            .is_err(),
        "our domain deleted"
    );
    for name in [&foreign, &rival] {
        clients
            .apigateway
            .delete_domain_name()
            .domain_name(name)
            .send()
            .await?;
    }
    Ok(())
}
