//! A gateway whose hostname already has a record that is not ours (an `A` record a
//! team serves its old webhook endpoint from): Route 53's UPSERT would replace it
//! without asking, so the operator must leave it and say `HostnameConflict`, and
//! write its alias only once the record is gone. Real API server + MiniStack.
//!
//! Its own test binary, so its operator is the only one on its API server.

mod common;

use anyhow::{Context as _, Result};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use common::Operator;
use hookline_crds::WebhookGateway;
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::Context;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use kube::api::Api;
use std::time::Duration;

fn condition(gateway: &WebhookGateway, type_: &str) -> (String, String, String) {
    gateway
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

async fn change(
    clients: &AwsClients,
    zone_id: &str,
    action: ChangeAction,
    set: ResourceRecordSet,
) -> Result<()> {
    clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(
            ChangeBatch::builder()
                .changes(
                    Change::builder()
                        .action(action)
                        .resource_record_set(set)
                        .build()?,
                )
                .build()?,
        )
        .send()
        .await
        .context("ChangeResourceRecordSets")?;
    Ok(())
}

/// The record sets of `name` and `kind` in the zone.
async fn sets(
    clients: &AwsClients,
    zone_id: &str,
    name: &str,
    kind: RrType,
) -> Result<Vec<ResourceRecordSet>> {
    let fqdn = format!("{name}.");
    Ok(clients
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(&fqdn)
        .send()
        .await?
        .resource_record_sets
        .into_iter()
        .filter(|s| s.name.eq_ignore_ascii_case(&fqdn) && s.r#type == kind)
        .collect())
}

#[tokio::test]
async fn a_record_at_the_hostname_that_is_not_ours_is_left_alone() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let id = std::process::id();
    let prefix = format!("hn{id}");
    let ctx = Context::new(
        client.clone(),
        &clients,
        common::settings(bench.aws.endpoint(), &prefix),
        common::fast_timing(Duration::from_secs(2)),
        "bench".to_owned(),
        Vec::new(),
    );
    let zone = format!("hn{id}.example.com");
    let zone_id = common::hosted_zone(&clients, &zone).await?;
    let hostname = format!("hooks.{zone}");
    let theirs = ResourceRecordSet::builder()
        .name(format!("{hostname}."))
        .r#type(RrType::A)
        .ttl(300)
        .resource_records(ResourceRecord::builder().value("192.0.2.10").build()?)
        .build()?;
    change(&clients, &zone_id, ChangeAction::Create, theirs.clone()).await?;

    let name = format!("hn-{id}");
    common::create_gateway(&client, &name, &zone, serde_json::json!({})).await?;
    let gateways: Api<WebhookGateway> = Api::all(client.clone());
    let operator = Operator::start(ctx);
    wait_for(
        "DnsReady=False HostnameConflict",
        Duration::from_secs(60),
        || async { Ok(condition(&gateways.get(&name).await?, "DnsReady").1 == "HostnameConflict") },
    )
    .await?;
    let (status, _, message) = condition(&gateways.get(&name).await?, "DnsReady");
    assert_eq!(status, "False");
    assert!(message.contains("192.0.2.10"), "{message}");
    // The pass that found the conflict, and a few after it, left the record as it was.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = sets(&clients, &zone_id, &hostname, RrType::A).await?;
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(
        a[0].alias_target.is_none(),
        "the A record was replaced: {a:?}"
    );
    assert_eq!(
        a[0].resource_records()
            .iter()
            .map(|r| r.value())
            .collect::<Vec<_>>(),
        ["192.0.2.10"]
    );
    assert_ne!(condition(&gateways.get(&name).await?, "Ready").0, "True");

    // The team removes its record: the next pass writes the alias.
    change(&clients, &zone_id, ChangeAction::Delete, theirs).await?;
    wait_for("the gateway Ready", Duration::from_secs(60), || async {
        Ok(condition(&gateways.get(&name).await?, "Ready").0 == "True")
    })
    .await?;
    let a = sets(&clients, &zone_id, &hostname, RrType::A).await?;
    let regional = gateways
        .get(&name)
        .await?
        .status
        .and_then(|s| s.regional_domain_name)
        .context("regionalDomainName")?;
    assert!(
        a.iter().any(|s| s.alias_target.as_ref().is_some_and(|t| t
            .dns_name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(&regional))),
        "no alias to {regional}: {a:?}"
    );
    operator.stop().await;
    Ok(())
}
