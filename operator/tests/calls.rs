//! The AWS calls each `ensure` makes on a fresh create and on a repeat with nothing
//! changed, measured on MiniStack and asserted exactly: a steady-state reconcile
//! must stay reads-only and cheap, since control-plane quotas are per account.
//! The steady-state resync's single-read checks are measured the same way, and
//! checked to match what the ensures left and to miss a changed spec.
//! Run with `--nocapture` to print the table (docs/aws-calls.md holds a copy).

use anyhow::Result;
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::limits::CallCounts;
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::templates::{DedupKey, GroupKey, Handshake, RouteTemplate};
use hookline_operator::aws::{
    AcmCertificates, ApiGatewayRestApis, ApiSpec, AwsClients, CertificateSpec, CloudWatchLogGroups,
    DomainSpec, IamRoles, Owner, QueuePairSpec, RateLimits, Record, RetryPolicy, RoleSpec,
    Route53Dns, RouteAuth, RouteSpec, SqsQueues, StageSpec,
};
use hookline_tests::Bench;
use std::collections::BTreeMap;

/// Calls since `before` as `Operation×n` (outcome `ok` omitted), sorted.
fn calls(after: &CallCounts, before: &CallCounts) -> Vec<String> {
    after
        .iter()
        .filter_map(|(key, n)| {
            let new = n - before.get(key).copied().unwrap_or(0);
            let outcome = if key.2 == "ok" {
                String::new()
            } else {
                format!("({})", key.2)
            };
            (new > 0).then(|| format!("{}{outcome}×{new}", key.1))
        })
        .collect()
}

#[tokio::test]
async fn ensure_calls_on_create_and_on_repeat() -> Result<()> {
    let bench = Bench::shared().await?;
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let caller = clients.caller.clone();
    let id = format!("{}", std::process::id());
    let owner = Owner {
        uid: format!("calls-{id}"),
        resource: "WebhookGateway calls".to_owned(),
    };
    let mut table: Vec<(&str, Vec<String>, Vec<String>)> = Vec::new();

    macro_rules! measure {
        ($name:expr, $ensure:expr) => {{
            let before = caller.snapshot();
            let value = $ensure;
            let fresh = calls(&caller.snapshot(), &before);
            let before = caller.snapshot();
            let _ = $ensure;
            let repeat = calls(&caller.snapshot(), &before);
            table.push(($name, fresh, repeat));
            value
        }};
    }

    let queues = SqsQueues::new(clients.sqs.clone(), caller.clone());
    let pair_spec = QueuePairSpec {
        name: format!("hl-calls-{id}"),
        content_based_deduplication: true,
        deduplication_scope: DedupScope::Queue,
        throughput_limit: FifoThroughputLimit::PerQueue,
        visibility_timeout_seconds: 60,
        message_retention_seconds: 3600,
        dead_letter_retention_seconds: 7200,
        max_receive_count: 5,
        tags: BTreeMap::new(),
        owner: owner.clone(),
    };
    let pair = measure!("Queues::ensure_pair", queues.ensure_pair(&pair_spec).await?);

    let roles = IamRoles::new(clients.iam.clone(), caller.clone());
    let role_spec = RoleSpec {
        name: format!("hookline-calls-{id}"),
        region: "us-east-1".into(),
        queue_prefix: "hl".into(),
        owner: owner.clone(),
    };
    let role = measure!("Roles::ensure", roles.ensure(&role_spec).await?);

    let logs = CloudWatchLogGroups::new(clients.logs.clone(), caller.clone());
    let log_arn = measure!(
        "LogGroups::ensure",
        logs.ensure(&format!("/hookline/calls-{id}"), 30, &owner)
            .await?
    );

    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), caller.clone());
    let api_spec = ApiSpec {
        name: format!("hookline-calls-{id}"),
        tags: BTreeMap::new(),
        owner: owner.clone(),
    };
    let before = caller.snapshot();
    let api = apis.ensure_api(&api_spec, None).await?;
    let fresh = calls(&caller.snapshot(), &before);
    let before = caller.snapshot();
    apis.ensure_api(&api_spec, Some(&api.id)).await?;
    table.push((
        "RestApis::ensure_api (repeat with known id)",
        fresh,
        calls(&caller.snapshot(), &before),
    ));

    let route = RouteSpec {
        path: "/payments/stripe".into(),
        queue_arn: pair.queue.arn.clone(),
        role_arn: role,
        template: RouteTemplate {
            group: GroupKey::BodyField("$.data.object.customer".into()),
            dedup: DedupKey::ContentBased,
            headers: vec!["stripe-signature".into(), "content-type".into()],
            query: false,
        },
        auth: RouteAuth::None,
        handshake: None,
    };
    measure!(
        "RestApis::ensure_route",
        apis.ensure_route(&api, &route).await?
    );
    // Another route on the same API: its resources are known by now.
    let second = RouteSpec {
        path: "/payments/adyen".into(),
        ..route.clone()
    };
    measure!(
        "RestApis::ensure_route (a second route on the API)",
        apis.ensure_route(&api, &second).await?
    );
    // A route with a handshake: its GET costs one more read per repeat, and the
    // routes above none.
    let meta = |token: &str| RouteSpec {
        path: "/meta".into(),
        handshake: Some(Handshake::Meta {
            verify_token: token.into(),
        }),
        ..route.clone()
    };
    let (meta_resource, _) = measure!(
        "RestApis::ensure_route (a route with a handshake)",
        apis.ensure_route(&api, &meta("t1")).await?
    );
    let before = caller.snapshot();
    apis.deploy(&api.id, "live").await?;
    table.push((
        "RestApis::deploy",
        calls(&caller.snapshot(), &before),
        vec!["(only when a route or policy changed)".into()],
    ));
    // After the deployment, in a process that did not make it (whose cache of
    // deployment markers is empty), then again.
    let resource = apis.ensure_route(&api, &route).await?.0;
    let cold = ApiGatewayRestApis::new(clients.apigateway.clone(), caller.clone());
    measure!(
        "RestApis::route_is_live",
        cold.route_is_live(&api.id, &resource, "live").await?
    );
    // The steady-state resync's reads (controller::steady): one each, and true on
    // what the ensures just left.
    let matched = measure!(
        "Checks::route_matches (steady resync)",
        apis.route_matches(&api.id, &resource, &route).await?
    );
    assert!(matched, "the route as ensure_route left it matches");
    let matched = measure!(
        "Checks::route_matches (a route with a handshake)",
        apis.route_matches(&api.id, &meta_resource, &meta("t1"))
            .await?
    );
    assert!(matched, "the handshake as ensure_route left it matches");
    assert!(
        !apis
            .route_matches(&api.id, &meta_resource, &meta("t2"))
            .await?,
        "a handshake with another token does not"
    );
    assert!(
        !apis
            .route_matches(
                &api.id,
                &meta_resource,
                &RouteSpec {
                    handshake: None,
                    ..meta("t1")
                }
            )
            .await?,
        "a route that lost its handshake does not"
    );
    let other_queue = RouteSpec {
        queue_arn: format!("{}-other", pair.queue.arn),
        ..route.clone()
    };
    assert!(
        !apis.route_matches(&api.id, &resource, &other_queue).await?,
        "a route to another queue does not"
    );
    let matched = measure!(
        "Queues::queue_matches (steady resync)",
        queues.queue_matches(&pair_spec, &pair).await?
    );
    assert!(matched, "the queue as ensure_pair left it matches");
    let longer = QueuePairSpec {
        visibility_timeout_seconds: 61,
        ..pair_spec.clone()
    };
    assert!(
        !queues.queue_matches(&longer, &pair).await?,
        "a queue with another visibility timeout does not"
    );
    let stage = StageSpec {
        name: "live".into(),
        rate_limit: 100.0,
        burst_limit: 200,
        route_throttling: vec![],
        access_log: Some((
            log_arn,
            hookline_operator::aws::logs::ACCESS_LOG_FORMAT.into(),
        )),
    };
    measure!(
        "RestApis::ensure_stage",
        apis.ensure_stage(&api.id, &stage).await?
    );
    let matched = measure!(
        "Checks::stage_matches (steady resync)",
        apis.stage_matches(&api.id, &stage).await?
    );
    assert!(matched, "the stage as ensure_stage left it matches");
    let slower = StageSpec {
        rate_limit: 50.0,
        ..stage.clone()
    };
    assert!(
        !apis.stage_matches(&api.id, &slower).await?,
        "a stage with another throttle does not"
    );

    let host = format!("calls-{id}.example.com");
    let acm = AcmCertificates::new(clients.acm.clone(), caller.clone());
    let certificate = measure!(
        "Certificates::ensure",
        acm.ensure(&CertificateSpec {
            domain: host.clone(),
            owner: owner.clone(),
            tags: vec![]
        })
        .await?
    );
    let domain = DomainSpec {
        domain: host.clone(),
        certificate_arn: certificate.arn,
        api_id: api.id.clone(),
        stage: "live".into(),
        owner: owner.clone(),
        created: None,
    };
    let target = measure!(
        "RestApis::ensure_domain",
        apis.ensure_domain(&domain).await?
    );
    measure!(
        "RestApis::ensure_base_path_mapping",
        apis.ensure_base_path_mapping(&domain).await?
    );
    let recorded = DomainSpec {
        created: Some(target.regional_domain_name.clone()),
        ..domain.clone()
    };
    let matched = measure!(
        "Checks::domain_matches (steady resync)",
        apis.domain_matches(&recorded).await?
    );
    assert!(matched, "the domain as ensure_domain left it matches");
    let other_certificate = DomainSpec {
        certificate_arn: format!("{}-other", recorded.certificate_arn),
        ..recorded.clone()
    };
    assert!(
        !apis.domain_matches(&other_certificate).await?,
        "a domain with another certificate does not"
    );

    clients
        .route53
        .create_hosted_zone()
        .name(&host)
        .caller_reference(format!("calls-{id}"))
        .send()
        .await?;
    let dns = Route53Dns::new(clients.route53.clone(), caller.clone());
    let zone = dns.zone_by_name(&host).await?;
    let records = vec![
        Record::txt(&format!("_hookline.{host}"), "owner=calls", 300),
        Record {
            name: host.clone(),
            kind: aws_sdk_route53::types::RrType::A,
            value: hookline_operator::aws::dns::Value::Alias {
                target: target.regional_domain_name,
                zone_id: target.regional_zone_id,
            },
        },
    ];
    measure!(
        "Dns::ensure_records",
        dns.ensure_records(&zone, &records).await?
    );

    let mut text =
        String::from("| ensure | fresh create | repeat, nothing changed |\n| --- | --- | --- |\n");
    for (name, fresh, repeat) in &table {
        text.push_str(&format!(
            "| `{name}` | {} | {} |\n",
            fresh.join(", "),
            repeat.join(", ")
        ));
    }
    eprintln!("{text}");

    let expected_repeats: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "Queues::ensure_pair",
            vec!["GetQueueAttributes×2", "GetQueueUrl×2", "ListQueueTags×2"],
        ),
        ("Roles::ensure", vec!["GetRole×1", "GetRolePolicy×1"]),
        (
            "LogGroups::ensure",
            vec!["DescribeLogGroups×1", "ListTagsForResource×1"],
        ),
        (
            "RestApis::ensure_api (repeat with known id)",
            vec!["GetMethod×1", "GetRestApi×1"],
        ),
        ("RestApis::ensure_route", vec!["GetMethod×1"]),
        (
            "RestApis::ensure_route (a second route on the API)",
            vec!["GetMethod×1"],
        ),
        ("RestApis::route_is_live", vec!["GetMethod×1", "GetStage×1"]),
        ("RestApis::ensure_stage", vec!["GetStage×1"]),
        (
            "Certificates::ensure",
            vec![
                "DescribeCertificate×1",
                "ListCertificates×1",
                "ListTagsForCertificate×1",
            ],
        ),
        ("RestApis::ensure_domain", vec!["GetDomainName×1"]),
        (
            "RestApis::ensure_base_path_mapping",
            vec!["GetBasePathMappings×1"],
        ),
        ("Dns::ensure_records", vec!["ListResourceRecordSets×2"]),
        (
            "Queues::queue_matches (steady resync)",
            vec!["GetQueueAttributes×1"],
        ),
        ("Checks::route_matches (steady resync)", vec!["GetMethod×1"]),
        (
            "RestApis::ensure_route (a route with a handshake)",
            vec!["GetMethod×2"],
        ),
        (
            "Checks::route_matches (a route with a handshake)",
            vec!["GetMethod×2"],
        ),
        ("Checks::stage_matches (steady resync)", vec!["GetStage×1"]),
        (
            "Checks::domain_matches (steady resync)",
            vec!["GetDomainName×1"],
        ),
    ]);
    for (name, _, repeat) in &table {
        if let Some(expected) = expected_repeats.get(name) {
            assert_eq!(
                repeat, expected,
                "{name}: a repeat must make exactly these reads\n{text}"
            );
        }
    }
    // A new route's calls set how fast many Webhooks converge (API Gateway allows
    // 10 calls per second per account in all, GetResources 5 per 2 s): the
    // resources are listed once per API, and a resource just created is not asked
    // for its method.
    let route_writes = [
        "PutIntegration×1",
        "PutIntegrationResponse×4",
        "PutMethod×1",
        "PutMethodResponse×4",
    ];
    let expected_creates: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "RestApis::ensure_route",
            [&["CreateResource×2", "GetResources×1"][..], &route_writes].concat(),
        ),
        (
            "RestApis::ensure_route (a second route on the API)",
            [&["CreateResource×1"][..], &route_writes].concat(),
        ),
        (
            // The route's writes, and the GET's: PutMethod, PutIntegration (MOCK),
            // one PutMethodResponse and one PutIntegrationResponse.
            "RestApis::ensure_route (a route with a handshake)",
            vec![
                "CreateResource×1",
                "PutIntegration×2",
                "PutIntegrationResponse×5",
                "PutMethod×2",
                "PutMethodResponse×5",
            ],
        ),
    ]);
    for (name, fresh, _) in &table {
        if let Some(expected) = expected_creates.get(name) {
            assert_eq!(
                fresh, expected,
                "{name}: a create must make exactly these calls\n{text}"
            );
        }
    }
    Ok(())
}
