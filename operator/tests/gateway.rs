//! The gateway reconciler against the bench (real API server + MiniStack), for what
//! AWS does and MiniStack does not do by itself, produced on the emulator:
//! - an account without API Gateway's CloudWatch Logs role (MiniStack's default, as a
//!   fresh AWS account): the stage gets no access logs, `AccessLogsReady` says why, and
//!   the gateway is Ready; once the role is set (UpdateAccount), access logs go on;
//! - a part that fails (a log group of our name without our tag) does not keep the
//!   certificate, custom domain and DNS from converging;
//! - a certificate that ACM still reports in use after DeleteDomainName (AWS: 10–20
//!   minutes; here a Signer signing profile holds it, which is what makes MiniStack
//!   answer ResourceInUseException): the REST API, log group and role are deleted
//!   anyway, and the finalizer waits for the certificate.
//!
//! Its own test binary, so its operator is the only one on its API server.

mod common;

use anyhow::{Context as _, Result, bail};
use aws_sdk_apigateway::types::{Op, PatchOperation};
use common::Operator;
use hookline_crds::WebhookGateway;
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::Context;
use hookline_tests::Bench;
use hookline_tests::util::wait_for;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn condition(gateway: &WebhookGateway, type_: &str) -> Option<Condition> {
    gateway
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

fn status_of(gateway: &WebhookGateway, type_: &str) -> (String, String) {
    condition(gateway, type_)
        .map(|c| (c.status, c.reason))
        .unwrap_or_default()
}

fn gateway(name: &str, hostname: &str, zone: &str) -> Result<WebhookGateway> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "WebhookGateway",
        "metadata": {"name": name},
        "spec": {"hostname": hostname, "hostedZone": {"name": zone}}
    }))?)
}

/// One request to MiniStack's AWS Signer API. The credential scope in the
/// Authorization header routes it (MiniStack checks no signature without AUTH).
async fn signer(port: u16, method: &str, path: &str, body: &str) -> Result<u16> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/{}/signer/aws4_request, \
         SignedHeaders=host, Signature=0\r\n\r\n{body}",
        body.len(),
        hookline_tests::aws::REGION
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {response}"))
}

#[tokio::test]
async fn gateway_parts_converge_apart_and_deletion_waits_for_acm() -> Result<()> {
    let bench = Bench::shared().await?;
    let client = bench.kube.client().await?;
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let id = std::process::id();
    let prefix = format!("gt{id}");
    let settings = common::settings(bench.aws.endpoint(), &prefix);
    let timing = common::fast_timing(Duration::from_secs(2));
    let ctx = Context::new(
        client.clone(),
        &clients,
        settings,
        timing,
        "bench".to_owned(),
        Vec::new(),
    );
    let zone = format!("gt{id}.example.com");
    common::hosted_zone(&clients, &zone).await?;
    let gateways: Api<WebhookGateway> = Api::all(client.clone());

    // 1. A fresh account: API Gateway has no CloudWatch Logs role.
    let account = clients.apigateway.get_account().send().await?;
    assert_eq!(
        account.cloudwatch_role_arn, None,
        "the bench's account starts without a CloudWatch role"
    );
    let logged = format!("logged-{id}");
    gateways
        .create(
            &PostParams::default(),
            &gateway(&logged, &format!("a.{zone}"), &zone)?,
        )
        .await?;
    let operator = Operator::start(ctx.clone());
    wait_for("the gateway Ready", Duration::from_secs(60), || async {
        Ok(status_of(&gateways.get(&logged).await?, "Ready").0 == "True")
    })
    .await?;
    let gw = gateways.get(&logged).await?;
    assert_eq!(
        status_of(&gw, "AccessLogsReady"),
        ("False".to_owned(), "CloudWatchRoleMissing".to_owned()),
        "{:?}",
        condition(&gw, "AccessLogsReady")
    );
    let api_id = gw
        .status
        .as_ref()
        .and_then(|s| s.rest_api_id.clone())
        .context("REST API id")?;
    let stage = clients
        .apigateway
        .get_stage()
        .rest_api_id(&api_id)
        .stage_name("live")
        .send()
        .await?;
    assert!(
        stage
            .access_log_settings
            .as_ref()
            .and_then(|s| s.destination_arn.as_ref())
            .is_none(),
        "no access logs without the role (AWS would refuse them): {stage:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait_for(
        "a CloudWatchRoleMissing Event",
        Duration::from_secs(20),
        || async {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("CloudWatchRoleMissing")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(logged.as_str())
                }))
        },
    )
    .await?;

    // 2. The role is set, and another gateway's log group name is taken by a group
    // without our tag: its access logs fail, and everything else still converges.
    clients
        .apigateway
        .update_account()
        .patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path("/cloudwatchRoleArn")
                .value("arn:aws:iam::000000000000:role/apigateway-cloudwatch")
                .build(),
        )
        .send()
        .await?;
    let taken = format!("taken-{id}");
    let taken_group = format!("/hookline/{prefix}/gateways/{taken}");
    clients
        .logs
        .create_log_group()
        .log_group_name(&taken_group)
        .send()
        .await?;
    gateways
        .create(
            &PostParams::default(),
            &gateway(&taken, &format!("b.{zone}"), &zone)?,
        )
        .await?;
    wait_for(
        "the gateway with a foreign log group Ready",
        Duration::from_secs(60),
        || async {
            let gw = gateways.get(&taken).await?;
            Ok(status_of(&gw, "Ready").0 == "True"
                && status_of(&gw, "DnsReady").0 == "True"
                && status_of(&gw, "AccessLogsReady").1 == "NotOwned")
        },
    )
    .await?;

    // The first gateway logs access now that the account has the role.
    wait_for("access logs on", Duration::from_secs(30), || async {
        Ok(status_of(&gateways.get(&logged).await?, "AccessLogsReady").0 == "True")
    })
    .await?;
    let stage = clients
        .apigateway
        .get_stage()
        .rest_api_id(&api_id)
        .stage_name("live")
        .send()
        .await?;
    let destination = stage
        .access_log_settings
        .and_then(|s| s.destination_arn)
        .context("access log destination")?;
    assert!(
        destination.ends_with(&format!("/hookline/{prefix}/gateways/{logged}")),
        "{destination}"
    );

    // 3. Deleting while ACM still reports the certificate in use.
    let gw = gateways.get(&logged).await?;
    let certificate = gw
        .status
        .as_ref()
        .and_then(|s| s.certificate_arn.clone())
        .context("certificate ARN")?;
    let profile = format!("hold{id}");
    let put = signer(
        bench.aws.port(),
        "PUT",
        &format!("/signing-profiles/{profile}"),
        &json!({"platformId": "AmazonFreeRTOS-Default", "signingMaterial": {"certificateArn": certificate}})
            .to_string(),
    )
    .await?;
    assert!(
        (200..300).contains(&put),
        "PutSigningProfile answered {put}"
    );
    assert!(
        clients
            .acm
            .delete_certificate()
            .certificate_arn(&certificate)
            .send()
            .await
            .is_err(),
        "the certificate is in use"
    );
    gateways.delete(&logged, &DeleteParams::default()).await?;
    let role = format!("{prefix}-gw-{logged}");
    wait_for(
        "the REST API, log group and role deleted",
        Duration::from_secs(60),
        || async {
            let api_gone = clients
                .apigateway
                .get_rest_api()
                .rest_api_id(&api_id)
                .send()
                .await
                .is_err();
            let group = format!("/hookline/{prefix}/gateways/{logged}");
            let groups_left = clients
                .logs
                .describe_log_groups()
                .log_group_name_prefix(&group)
                .send()
                .await?
                .log_groups
                .unwrap_or_default()
                .len();
            let role_gone = clients
                .iam
                .get_role()
                .role_name(&role)
                .send()
                .await
                .is_err();
            Ok(api_gone && groups_left == 0 && role_gone)
        },
    )
    .await?;
    let waiting = gateways
        .get_opt(&logged)
        .await?
        .context("the finalizer waits for the certificate")?;
    let ready = condition(&waiting, "Ready").context("Ready")?;
    assert_eq!(ready.reason, "Deleting", "{ready:?}");
    assert!(ready.message.contains(&certificate), "{}", ready.message);

    // ACM lets go: the gateway goes, with its certificate.
    let cancel = signer(
        bench.aws.port(),
        "DELETE",
        &format!("/signing-profiles/{profile}"),
        "",
    )
    .await?;
    assert!(
        (200..300).contains(&cancel),
        "CancelSigningProfile answered {cancel}"
    );
    wait_for("the gateway deleted", Duration::from_secs(60), || async {
        Ok(gateways.get_opt(&logged).await?.is_none())
    })
    .await?;
    match clients
        .acm
        .describe_certificate()
        .certificate_arn(&certificate)
        .send()
        .await
    {
        Err(_) => {}
        Ok(found) => bail!("certificate left behind: {found:?}"),
    }

    // The foreign log group is not ours to delete; its owner removes it.
    clients
        .logs
        .delete_log_group()
        .log_group_name(&taken_group)
        .send()
        .await?;
    gateways.delete(&taken, &DeleteParams::default()).await?;
    wait_for(
        "the second gateway deleted",
        Duration::from_secs(60),
        || async { Ok(gateways.get_opt(&taken).await?.is_none()) },
    )
    .await?;
    operator.stop().await;
    Ok(())
}
