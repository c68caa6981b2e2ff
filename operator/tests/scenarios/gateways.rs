//! The gateway's own parts, and what it applies for the Webhooks attached to it.

use anyhow::{Context as _, Result, ensure};
use aws_sdk_route53::types::RrType;
use hookline_crds::conditions::{
    ACCESS_LOGS_READY, API_READY, CERTIFICATE_READY, DNS_READY, READY,
};
use hookline_crds::reasons::{
    CLOUDWATCH_ROLE_MISSING, HOSTNAME_CONFLICT, NOT_OWNED, PROGRESSING, RECONCILED,
};
use hookline_operator::aws::dns::{Record, Value};
use hookline_operator::aws::memory::rest_apis::REGIONAL_ZONE_ID;
use hookline_operator::controller::context::Context;
use serde_json::json;

use crate::harness::Scenario;
use crate::scenario;
use crate::webhooks::ready_webhook;

scenario!(
    the_certificate_goes_pending_then_issued_then_domain_and_alias_follow,
    a_certificate_acm_gave_up_on_is_replaced_and_retired,
    a_hostname_another_owner_claims_gets_nothing_created,
    a_foreign_custom_domain_is_never_adopted,
    a_restarted_operator_finds_its_objects_and_creates_nothing_twice,
    removing_a_webhooks_throttle_override_removes_it_from_the_stage,
    deleting_the_last_webhook_with_an_ip_allow_list_removes_the_resource_policy,
    an_account_without_a_cloudwatch_role_is_served_without_access_logs,
    an_alias_record_deleted_by_hand_is_written_again,
);

async fn the_certificate_goes_pending_then_issued_then_domain_and_alias_follow() -> Result<()> {
    let mut s = Scenario::new("cert", json!({})).await?;
    s.aws.edit(|state| state.auto_validate = false);
    s.until("CertificateReady Progressing", |p| async move {
        p.gateway_is(CERTIFICATE_READY, "False", PROGRESSING).await
    })
    .await?;
    let status = s.gateway_now().await?.status.context("status")?;
    let arn = status
        .certificate_arn
        .clone()
        .context("the certificate in status")?;
    let validation = s
        .aws
        .certificate(&arn)
        .context("the certificate")?
        .validation;
    ensure!(
        s.records(&validation.name)
            .iter()
            .any(|r| r.kind == RrType::Cname),
        "the validation CNAME is written while the certificate is pending"
    );
    let hostname = format!("hooks.{}", s.zone.0);
    ensure!(
        s.aws.domain(&hostname).is_none(),
        "no custom domain before the certificate is issued"
    );
    ensure!(
        !s.records(&hostname).iter().any(|r| r.kind == RrType::A),
        "no alias before the domain"
    );
    ensure!(
        s.probe().gateway_is(READY, "False", PROGRESSING).await?
            || s.probe()
                .gateway_condition(READY)
                .await?
                .is_some_and(|(st, _)| st == "False")
    );

    // ACM sees the record and issues.
    s.aws.edit(|state| state.auto_validate = true);
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    let domain = s.aws.domain(&hostname).context("the custom domain")?;
    ensure!(
        domain.certificate_arn == arn,
        "with the gateway's certificate"
    );
    let status = s.gateway_now().await?.status.context("status")?;
    ensure!(
        domain.mappings.get("(none)")
            == Some(&(
                status.rest_api_id.clone().context("id")?,
                status.stage_name.clone().context("stage")?
            )),
        "its root maps to the gateway's stage: {:?}",
        domain.mappings
    );
    ensure!(
        status.regional_domain_name.as_ref() == Some(&domain.regional_domain_name),
        "checkpointed"
    );
    for kind in [RrType::A, RrType::Aaaa] {
        let alias = s
            .records(&hostname)
            .into_iter()
            .find(|r| r.kind == kind)
            .context("an alias")?;
        ensure!(
            alias.value
                == Value::Alias {
                    target: format!("{}.", domain.regional_domain_name),
                    zone_id: REGIONAL_ZONE_ID.to_owned()
                },
            "{kind:?} alias {alias:?}"
        );
    }
    s.calls_are_known()
}

async fn a_certificate_acm_gave_up_on_is_replaced_and_retired() -> Result<()> {
    let mut s = Scenario::new("timedout", json!({})).await?;
    s.aws.edit(|state| state.auto_validate = false);
    s.until("a certificate in status", |p| async move {
        Ok(p.gateways
            .get(&p.gateway)
            .await?
            .status
            .and_then(|st| st.certificate_arn)
            .is_some())
    })
    .await?;
    let old = s
        .gateway_now()
        .await?
        .status
        .and_then(|st| st.certificate_arn)
        .context("arn")?;
    s.aws.set_certificate_status(&old, "VALIDATION_TIMED_OUT");
    s.aws.edit(|state| state.auto_validate = true);
    s.until("the gateway Ready on a new certificate", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    let status = s.gateway_now().await?.status.context("status")?;
    let new = status.certificate_arn.clone().context("arn")?;
    ensure!(new != old, "a new certificate");
    ensure!(
        s.aws
            .domain(&format!("hooks.{}", s.zone.0))
            .is_some_and(|d| d.certificate_arn == new)
    );
    s.until("the old one retired (deleted)", |p| {
        let old = old.clone();
        async move { Ok(p.aws.certificate(&old).is_none()) }
    })
    .await
}

async fn a_hostname_another_owner_claims_gets_nothing_created() -> Result<()> {
    let mut s = Scenario::new("claimed", json!({})).await?;
    let claim = Record::txt(
        &format!("_hookline.hooks.{}", s.zone.0),
        "hookline cluster=elsewhere gateway=x uid=y",
        300,
    )
    .normalized();
    let zone_id = s.zone.1.clone();
    s.aws.edit(|state| {
        if let Some(zone) = state.zones.get_mut(&zone_id) {
            zone.records.push(claim.clone());
        }
    });
    s.until("HostnameConflict", |p| async move {
        p.gateway_is(DNS_READY, "False", HOSTNAME_CONFLICT).await
    })
    .await?;
    ensure!(
        s.aws.read(|state| state.rest_apis.is_empty()),
        "no REST API"
    );
    ensure!(
        s.aws.read(|state| state.certificates.is_empty()),
        "no certificate"
    );
    ensure!(
        s.aws.writes().is_empty(),
        "nothing written at all: {:?}",
        s.aws.writes()
    );
    ensure!(s.records(&claim.name) == vec![claim], "the claim untouched");
    Ok(())
}

async fn a_foreign_custom_domain_is_never_adopted() -> Result<()> {
    let mut s = Scenario::new("squatted", json!({})).await?;
    let hostname = format!("hooks.{}", s.zone.0);
    let foreign = s.aws.create_foreign_domain(
        &hostname,
        "arn:aws:acm:eu-west-1:123456789012:certificate/theirs",
    );
    s.until("NotOwned on DnsReady", |p| async move {
        p.gateway_is(DNS_READY, "False", NOT_OWNED).await
    })
    .await?;
    ensure!(
        s.aws.domain(&hostname) == Some(foreign),
        "the foreign domain is left as it was"
    );
    ensure!(
        !s.records(&hostname).iter().any(|r| r.kind == RrType::A),
        "no alias to it"
    );
    // Deleting the gateway does not delete it either: the deletion waits, and says why.
    s.gateways().delete(&s.gateway, &Default::default()).await?;
    for _ in 0..5 {
        s.pass().await?;
    }
    ensure!(
        s.aws.domain(&hostname).is_some(),
        "the foreign domain survives the gateway's deletion"
    );
    ensure!(
        s.gateways().get_opt(&s.gateway).await?.is_some(),
        "which waits for it"
    );
    // The squatter leaves; the gateway's own parts then go with it.
    s.aws.edit(|state| state.domains.remove(&hostname));
    s.until("the gateway gone", |p| async move {
        Ok(p.gateways.get_opt(&p.gateway).await?.is_none())
    })
    .await
}

async fn a_restarted_operator_finds_its_objects_and_creates_nothing_twice() -> Result<()> {
    let mut s = Scenario::new("restart", json!({})).await?;
    s.create_webhook("stripe", "/stripe", json!({})).await?;
    s.until("the REST API id in status", |p| async move {
        Ok(p.gateways
            .get(&p.gateway)
            .await?
            .status
            .and_then(|st| st.rest_api_id)
            .is_some())
    })
    .await?;
    // A new operator: no caches, no deployer state, nothing remembered.
    s.ctx = Context::with_services(
        s.client.clone(),
        s.aws.services(),
        crate::harness::settings(),
        crate::harness::TIMING,
        "scenario".to_owned(),
        Vec::new(),
    );
    s.until("the Webhook Ready", |p| async move {
        p.webhook_is("stripe", READY, "True", RECONCILED).await
    })
    .await?;
    for operation in [
        "CreateRestApi",
        "RequestCertificate",
        "CreateDomainName",
        "CreateRole",
        "CreateLogGroup",
    ] {
        ensure!(
            s.aws.calls(operation) == 1,
            "{operation} made {} times",
            s.aws.calls(operation)
        );
    }
    ensure!(s.aws.calls("CreateQueue") == 2, "one queue pair");
    Ok(())
}

async fn removing_a_webhooks_throttle_override_removes_it_from_the_stage() -> Result<()> {
    let mut s = Scenario::new("throttle", json!({})).await?;
    ready_webhook(
        &mut s,
        "stripe",
        "/stripe",
        json!({"throttling": {"rateLimit": 5, "burstLimit": 10}}),
    )
    .await?;
    let status = s.gateway_now().await?.status.context("status")?;
    let (api_id, stage) = (
        status.rest_api_id.context("id")?,
        status.stage_name.context("stage")?,
    );
    let throttles = |s: &Scenario| {
        s.aws
            .rest_api(&api_id)
            .and_then(|a| a.stages.get(&stage).cloned())
            .map(|st| st.route_throttles)
            .unwrap_or_default()
    };
    s.until("the override on the stage", |_| async { Ok(true) })
        .await?;
    ensure!(
        throttles(&s).get("/stripe") == Some(&(5.0, 10)),
        "{:?}",
        throttles(&s)
    );
    s.patch_webhook("stripe", json!({"spec": {"throttling": null}}))
        .await?;
    for _ in 0..20 {
        s.pass().await?;
        if throttles(&s).is_empty() {
            return Ok(());
        }
    }
    anyhow::bail!("the override is still on the stage: {:?}", throttles(&s))
}

async fn deleting_the_last_webhook_with_an_ip_allow_list_removes_the_resource_policy() -> Result<()>
{
    let mut s = Scenario::new("policy", json!({})).await?;
    ready_webhook(&mut s, "open", "/open", json!({})).await?;
    ready_webhook(
        &mut s,
        "limited",
        "/limited",
        json!({"auth": {"sourceIpAllowList": ["192.0.2.0/24"]}}),
    )
    .await?;
    let status = s.gateway_now().await?.status.context("status")?;
    let (api_id, stage) = (
        status.rest_api_id.context("id")?,
        status.stage_name.context("stage")?,
    );
    let policies = |s: &Scenario| {
        let api = s.aws.rest_api(&api_id);
        (
            api.as_ref().and_then(|a| a.policy.clone()),
            api.as_ref()
                .and_then(|a| a.live(&stage))
                .and_then(|d| d.policy.clone()),
        )
    };
    for _ in 0..20 {
        if policies(&s).1.is_some() {
            break;
        }
        s.pass().await?;
    }
    let (_, live) = policies(&s);
    let live = live.context("a live resource policy")?.to_string();
    ensure!(
        live.contains("192.0.2.0/24") && live.contains("/POST/limited"),
        "{live}"
    );
    s.delete_webhook("limited").await?;
    for _ in 0..30 {
        s.pass().await?;
        if policies(&s) == (None, None) && s.webhook_now("limited").await?.is_none() {
            return Ok(());
        }
    }
    anyhow::bail!(
        "the policy outlived the last allow list: {:?}",
        policies(&s)
    )
}

async fn an_account_without_a_cloudwatch_role_is_served_without_access_logs() -> Result<()> {
    let mut s = Scenario::new("nologs", json!({})).await?;
    s.aws.set_cloudwatch_role(None);
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    ensure!(
        s.probe()
            .gateway_is(ACCESS_LOGS_READY, "False", CLOUDWATCH_ROLE_MISSING)
            .await?,
        "AccessLogsReady says why"
    );
    ensure!(s.probe().gateway_is(API_READY, "True", RECONCILED).await?);
    ensure!(s.aws.calls("CreateLogGroup") == 0, "no log group");
    let status = s.gateway_now().await?.status.context("status")?;
    let stage = s
        .aws
        .rest_api(&status.rest_api_id.context("id")?)
        .and_then(|a| {
            a.stages
                .get(&status.stage_name.unwrap_or_default())
                .cloned()
        })
        .context("the stage")?;
    ensure!(stage.access_log.is_none(), "the stage does not log");
    Ok(())
}

async fn an_alias_record_deleted_by_hand_is_written_again() -> Result<()> {
    let mut s = Scenario::new("aliasdrift", json!({})).await?;
    s.until("the gateway Ready", |p| async move {
        p.gateway_is(READY, "True", RECONCILED).await
    })
    .await?;
    let hostname = format!("hooks.{}", s.zone.0);
    let (zone_id, name) = (s.zone.1.clone(), format!("{hostname}."));
    s.aws.edit(|state| {
        if let Some(zone) = state.zones.get_mut(&zone_id) {
            zone.records
                .retain(|r| !(r.name == name && r.kind == RrType::A));
        }
    });
    ensure!(!s.records(&hostname).iter().any(|r| r.kind == RrType::A));
    // Route 53 is left to the audit (its quota is 5 requests/s per account): the
    // first pass after a start, as here, or the next audit interval.
    s.restart();
    for _ in 0..10 {
        s.pass().await?;
        if s.records(&hostname).iter().any(|r| r.kind == RrType::A) {
            return Ok(());
        }
    }
    anyhow::bail!("the A alias was not written again")
}
