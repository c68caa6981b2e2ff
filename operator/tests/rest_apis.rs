//! The REST API end to end on both data planes (MiniStack and LocalStack): after
//! ensuring the queue pair, the role, the API, the routes, the stage and the custom
//! domain, a POST to the invoke URL (execute-api form, and custom-domain `Host` form
//! where the emulator serves it) lands in the FIFO queue with the right group, dedup
//! and header attributes; duplicates are dropped; a burst over the route's limit gets
//! 429 (where the emulator throttles); a missing API key gets 403. The control-plane
//! calls run on all three emulators.

use anyhow::{Result, bail};
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::limits::CallCounts;
use hookline_operator::aws::logs::ACCESS_LOG_FORMAT;
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::rest_apis::source_ip_policy;
use hookline_operator::aws::templates::{DedupKey, GroupKey, RouteTemplate};
use hookline_operator::aws::{
    AcmCertificates, ApiGatewayRestApis, ApiSpec, AwsClients, CertificateSpec, DomainSpec,
    IamRoles, Owner, QueuePair, QueuePairSpec, RateLimits, RetryPolicy, RoleSpec, RouteAuth,
    RouteSpec, SqsQueues, StageSpec,
};
use hookline_operator::aws::{AuthorizerSpec, CloudWatchLogGroups, LogGroups};
use hookline_tests::util::post;
use hookline_tests::{Bench, Emulator, EmulatorKind, data_plane_test};
use hookline_worker::Delivery;
use std::collections::BTreeMap;

fn owner(uid: &str, resource: &str) -> Owner {
    Owner {
        uid: uid.to_owned(),
        resource: resource.to_owned(),
    }
}

async fn queue_pair(queues: &SqsQueues, name: &str, content_based: bool) -> Result<QueuePair> {
    Ok(queues
        .ensure_pair(&QueuePairSpec {
            name: name.to_owned(),
            content_based_deduplication: content_based,
            deduplication_scope: DedupScope::Queue,
            throughput_limit: FifoThroughputLimit::PerQueue,
            visibility_timeout_seconds: 30,
            message_retention_seconds: 3600,
            dead_letter_retention_seconds: 7200,
            max_receive_count: 5,
            tags: BTreeMap::new(),
            owner: owner(&format!("{name}-uid"), "Webhook test/route"),
        })
        .await?)
}

async fn received(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Vec<Delivery>> {
    hookline_tests::util::receive_all(sqs, url, 5, hookline_tests::util::AfterReceive::Keep)
        .await?
        .into_iter()
        .map(|message| Ok(Delivery::from_sqs(message)?))
        .collect()
}

data_plane_test!(requests_land_in_the_fifo_queue_through_the_gateway);

async fn requests_land_in_the_fifo_queue_through_the_gateway(kind: EmulatorKind) -> Result<()> {
    let aws = Bench::shared().await?.data_plane(kind).await?;
    let clients = AwsClients::new(
        &aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
    let port = aws.port();
    let id = format!("{}x{}", std::process::id(), fastrand_suffix());
    let gateway = owner(&format!("gw-{id}"), "WebhookGateway public");

    let stripe = queue_pair(&queues, &format!("hl-e2e-stripe-{id}"), true).await?;
    let github = queue_pair(&queues, &format!("hl-e2e-github-{id}"), false).await?;
    let keyed = queue_pair(&queues, &format!("hl-e2e-keyed-{id}"), true).await?;
    let role = IamRoles::new(clients.iam.clone(), clients.caller.clone())
        .ensure(&RoleSpec {
            name: format!("hookline-e2e-{id}"),
            region: "us-east-1".to_owned(),
            queue_prefix: "hl".to_owned(),
            owner: gateway.clone(),
        })
        .await?;

    let api = apis
        .ensure_api(
            &ApiSpec {
                name: format!("hookline-e2e-{id}"),
                tags: BTreeMap::new(),
                owner: gateway.clone(),
            },
            None,
        )
        .await?;
    let stripe_route = RouteSpec {
        path: "/payments/stripe".to_owned(),
        queue_arn: stripe.queue.arn.clone(),
        role_arn: role.clone(),
        template: RouteTemplate {
            group: GroupKey::BodyField("$.data.object.customer".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec!["Stripe-Signature".to_owned(), "Content-Type".to_owned()],
            query: false,
        },
        auth: RouteAuth::None,
        handshake: None,
    };
    let (_, changed) = apis.ensure_route(&api, &stripe_route).await?;
    assert!(changed);
    apis.ensure_route(
        &api,
        &RouteSpec {
            path: "/github".to_owned(),
            queue_arn: github.queue.arn.clone(),
            role_arn: role.clone(),
            template: RouteTemplate {
                group: GroupKey::Header("X-GitHub-Repo".to_owned()),
                dedup: DedupKey::Header("X-GitHub-Delivery".to_owned()),
                headers: vec!["X-Hub-Signature-256".to_owned()],
                query: false,
            },
            auth: RouteAuth::None,
            handshake: None,
        },
    )
    .await?;
    apis.ensure_route(
        &api,
        &RouteSpec {
            path: "/partner/keyed".to_owned(),
            queue_arn: keyed.queue.arn.clone(),
            role_arn: role.clone(),
            template: RouteTemplate {
                group: GroupKey::Constant("all".to_owned()),
                dedup: DedupKey::ContentBased,
                headers: vec![],
                query: false,
            },
            auth: RouteAuth::ApiKey,
            handshake: None,
        },
    )
    .await?;
    apis.deploy(&api.id, "live").await?;
    let stage = StageSpec {
        name: "live".to_owned(),
        rate_limit: 100.0,
        burst_limit: 200,
        route_throttling: vec![("/partner/keyed".to_owned(), 1.0, 1)],
        access_log: None,
    };
    assert!(
        apis.ensure_stage(&api.id, &stage).await?,
        "first stage settings are a change"
    );
    let key = format!("hookline-e2e-key-{id}-0123456789");
    apis.ensure_api_key(
        &format!("hookline-e2e-{id}"),
        &key,
        &api.id,
        "live",
        &gateway,
    )
    .await?;

    let host = format!("hooks-{id}.example.com");
    // The platform team's zone. AWS answers a domain's regionalHostedZoneId with API
    // Gateway's own zone for the region whatever zones exist; LocalStack answers
    // with a Route 53 zone the name falls in, and with none when there is none
    // (docs/emulators.md).
    clients
        .route53
        .create_hosted_zone()
        .name(format!("hooks-{id}.example.com"))
        .caller_reference(format!("hooks-{id}"))
        .send()
        .await?;
    let certificate = AcmCertificates::new(clients.acm.clone(), clients.caller.clone())
        .ensure(&CertificateSpec {
            domain: host.clone(),
            owner: gateway.clone(),
            tags: vec![],
        })
        .await?;
    let domain = DomainSpec {
        domain: host.clone(),
        certificate_arn: certificate.arn.clone(),
        api_id: api.id.clone(),
        stage: "live".to_owned(),
        owner: gateway.clone(),
        created: None,
    };
    let target = apis.ensure_domain(&domain).await?;
    apis.ensure_base_path_mapping(&domain).await?;
    assert!(!target.regional_domain_name.is_empty());

    // Nothing changed: a repeat only reads.
    let before = clients.caller.snapshot();
    let (_, changed) = apis.ensure_route(&api, &stripe_route).await?;
    assert!(
        !changed,
        "a repeat changes nothing, but wrote {:?}",
        writes(&clients.caller.snapshot(), &before)
    );
    assert!(!apis.ensure_stage(&api.id, &stage).await?);
    assert_eq!(
        writes(&clients.caller.snapshot(), &before),
        Vec::<String>::new()
    );

    // The execute-api form.
    let event = r#"{"id":"evt_1","data":{"object":{"customer":"cus_42"}}}"#;
    let invoke = format!("/restapis/{}/live/_user_request_/payments/stripe", api.id);
    let signature = [
        ("Stripe-Signature", "t=1,v1=abc"),
        ("Content-Type", "application/json"),
    ];
    let (status, body) = post(port, "127.0.0.1", &invoke, &signature, event).await?;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"accepted"}"#));
    // The same event again inside the dedup window is dropped by SQS.
    assert_eq!(
        post(port, "127.0.0.1", &invoke, &signature, event).await?.0,
        200
    );
    // The custom-domain form: the Host header picks the domain (where the emulator
    // serves custom domains; elsewhere the same event takes the execute-api form).
    let other = r#"{"id":"evt_2","data":{"object":{"customer":"cus_7"}}}"#;
    let (other_host, other_path) = if aws.kind().serves_custom_domains() {
        (host.as_str(), "/payments/stripe")
    } else {
        ("127.0.0.1", invoke.as_str())
    };
    assert_eq!(
        post(port, other_host, other_path, &signature, other)
            .await?
            .0,
        200
    );

    let messages = received(&clients.sqs, &stripe.queue.url).await?;
    let seen: Vec<(&str, &str)> = messages
        .iter()
        .map(|d| {
            (
                d.group_id.as_str(),
                std::str::from_utf8(&d.body).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(seen.len(), 2, "duplicate dropped: {seen:?}");
    assert!(seen.contains(&("b:cus_42", event)), "{seen:?}");
    assert!(seen.contains(&("b:cus_7", other)), "{seen:?}");
    let first = &messages[0];
    assert_eq!(
        first.headers.get("stripe-signature").map(|v| v.as_bytes()),
        Some(&b"t=1,v1=abc"[..])
    );
    assert_eq!(
        first.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );

    // Dedup by a delivery-id header; grouping by a header.
    let github_path = format!("/restapis/{}/live/_user_request_/github", api.id);
    let delivery = |id: &'static str| {
        [
            ("X-GitHub-Delivery", id),
            ("X-GitHub-Repo", "acme/shop"),
            ("Content-Type", "application/json"),
        ]
    };
    assert_eq!(
        post(
            port,
            "127.0.0.1",
            &github_path,
            &delivery("d-1"),
            r#"{"n":1}"#
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        post(
            port,
            "127.0.0.1",
            &github_path,
            &delivery("d-1"),
            r#"{"n":1,"retry":true}"#
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        post(
            port,
            "127.0.0.1",
            &github_path,
            &delivery("d-2"),
            r#"{"n":2}"#
        )
        .await?
        .0,
        200
    );
    let (status, _) = post(
        port,
        "127.0.0.1",
        &github_path,
        &[("Content-Type", "application/json")],
        r#"{"n":3}"#,
    )
    .await?;
    assert_eq!(
        status, 400,
        "no delivery id: refused, not silently deduplicated"
    );
    let messages = received(&clients.sqs, &github.queue.url).await?;
    let bodies: Vec<String> = messages
        .iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect();
    assert_eq!(bodies, [r#"{"n":1}"#, r#"{"n":2}"#]);
    assert!(
        messages.iter().all(|d| d.group_id == "h:acme%2Fshop"),
        "{:?}",
        messages.iter().map(|d| &d.group_id).collect::<Vec<_>>()
    );
    assert!(
        messages[0].headers.get("x-hub-signature-256").is_none(),
        "an absent header stays absent"
    );

    // API key: missing → 403; with it → 200. Then a burst over 1/s → 429.
    let keyed_path = format!("/restapis/{}/live/_user_request_/partner/keyed", api.id);
    let json = [("Content-Type", "application/json")];
    assert_eq!(
        post(port, "127.0.0.1", &keyed_path, &json, "{}").await?.0,
        403
    );
    let with_key = [
        ("Content-Type", "application/json"),
        ("x-api-key", key.as_str()),
    ];
    let mut statuses = Vec::new();
    for n in 0..6 {
        statuses.push(
            post(
                port,
                "127.0.0.1",
                &keyed_path,
                &with_key,
                &format!("{{\"n\":{n}}}"),
            )
            .await?
            .0,
        );
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    if aws.kind().enforces_throttling() && !statuses.contains(&429) {
        bail!("a burst over the route's 1 request/s limit was never throttled: {statuses:?}");
    }

    // Deleting the key (and its plan) makes the route refuse it again.
    apis.delete_api_key(&format!("hookline-e2e-{id}"), &gateway)
        .await?;
    apis.delete_api_key(&format!("hookline-e2e-{id}"), &gateway)
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        post(port, "127.0.0.1", &keyed_path, &with_key, "{}")
            .await?
            .0,
        403,
        "deleted key still accepted"
    );

    // A content type the route does not map is refused, not queued raw.
    let (status, _) = post(
        port,
        "127.0.0.1",
        &invoke,
        &[("Content-Type", "application/octet-stream")],
        "\u{1}\u{2}",
    )
    .await?;
    assert!(status >= 400, "binary body accepted with {status}");
    Ok(())
}

fn writes(after: &CallCounts, before: &CallCounts) -> Vec<String> {
    after
        .iter()
        .filter(|((_, op, _), _)| {
            !["Get", "List", "Describe"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .filter(|(key, n)| before.get(key).is_none_or(|b| *n > b))
        .map(|((_, op, outcome), _)| format!("{op}:{outcome}"))
        .collect()
}

fn fastrand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 100_000)
}

/// The control-plane calls that need no data plane, on any emulator: a second API,
/// its route with a Cognito and a Lambda authorizer, the resource policy, access
/// logs, repeat-is-no-op, and deletes.
async fn control_plane(emulator: &Emulator) -> Result<()> {
    let moto = emulator.kind() == EmulatorKind::Moto;
    // moto answers what it does not model with 500: retrying only hides that.
    let retry = if moto {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    } else {
        RetryPolicy::default()
    };
    let clients = AwsClients::new(
        &emulator.sdk_config().await,
        &RateLimits::unlimited(),
        retry,
    );
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
    let logs = CloudWatchLogGroups::new(clients.logs.clone(), clients.caller.clone());
    let id = format!("{}x{}", std::process::id(), fastrand_suffix());
    let gateway = owner(&format!("gw-cp-{id}"), "WebhookGateway control-plane");
    let pair = queue_pair(&queues, &format!("hl-cp-{id}"), true).await?;

    let spec = ApiSpec {
        name: format!("hookline-cp-{id}"),
        tags: BTreeMap::new(),
        owner: gateway.clone(),
    };
    let api = apis.ensure_api(&spec, None).await?;
    assert_eq!(
        apis.ensure_api(&spec, Some(&api.id)).await?,
        api,
        "found by id"
    );
    assert_eq!(
        apis.ensure_api(&spec, None).await?,
        api,
        "found by owner tag"
    );

    let cognito = AuthorizerSpec::Cognito {
        name: "cognito".to_owned(),
        user_pool_arns: vec![
            "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_abc".to_owned(),
        ],
    };
    let lambda = AuthorizerSpec::Lambda {
        name: "lambda".to_owned(),
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:auth".to_owned(),
        request: false,
        identity_source: "method.request.header.Authorization".to_owned(),
        ttl_seconds: 300,
    };
    let cognito_id = apis.ensure_authorizer(&api.id, &cognito).await?;
    let lambda_id = apis.ensure_authorizer(&api.id, &lambda).await?;
    assert_eq!(
        apis.ensure_authorizer(&api.id, &cognito).await?,
        cognito_id,
        "repeat keeps the authorizer"
    );
    assert_eq!(apis.ensure_authorizer(&api.id, &lambda).await?, lambda_id);

    let route = RouteSpec {
        path: "/partner/orders".to_owned(),
        queue_arn: pair.queue.arn.clone(),
        // In the emulator's account: a role of another account cannot be passed
        // (AWS refuses it, and so does LocalStack).
        role_arn: format!("arn:aws:iam::{}:role/hookline/gw", emulator.account_id()),
        template: RouteTemplate {
            group: GroupKey::Constant("all".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec![],
            query: false,
        },
        auth: RouteAuth::Cognito {
            authorizer_id: cognito_id,
            scopes: vec![],
        },
        handshake: None,
    };
    let (resource, changed) = apis.ensure_route(&api, &route).await?;
    assert!(changed);
    let before = clients.caller.snapshot();
    assert_eq!(
        apis.ensure_route(&api, &route).await?,
        (resource.clone(), false)
    );
    assert_eq!(
        writes(&clients.caller.snapshot(), &before),
        Vec::<String>::new()
    );
    // Switching auth mode is an in-place method update (moto 5.2 answers UpdateMethod
    // on /authorizerId with a 500; see docs/emulators.md).
    if !moto {
        let lambda_route = RouteSpec {
            auth: RouteAuth::Lambda {
                authorizer_id: lambda_id,
            },
            ..route.clone()
        };
        let before = clients.caller.snapshot();
        assert_eq!(
            apis.ensure_route(&api, &lambda_route).await?,
            (resource, true)
        );
        assert_eq!(
            writes(&clients.caller.snapshot(), &before),
            ["UpdateMethod:ok"]
        );
    }

    let policy = source_ip_policy(&[(
        "/partner/orders".to_owned(),
        vec!["192.0.2.0/24".to_owned()],
    )]);
    assert!(apis.ensure_policy(&api.id, policy.as_ref()).await?);
    assert!(
        !apis.ensure_policy(&api.id, policy.as_ref()).await?,
        "policy read back equal"
    );

    let log_arn = logs
        .ensure(&format!("/hookline/cp-{id}"), 30, &gateway)
        .await?;
    assert!(
        log_arn.starts_with("arn:aws:logs:") && !log_arn.ends_with(":*"),
        "{log_arn}"
    );
    let before = clients.caller.snapshot();
    assert_eq!(
        logs.ensure(&format!("/hookline/cp-{id}"), 30, &gateway)
            .await?,
        log_arn
    );
    assert_eq!(
        writes(&clients.caller.snapshot(), &before),
        Vec::<String>::new()
    );
    logs.ensure(&format!("/hookline/cp-{id}"), 90, &gateway)
        .await?;

    apis.deploy(&api.id, "live").await?;
    let stage = StageSpec {
        name: "live".to_owned(),
        rate_limit: 50.0,
        burst_limit: 100,
        route_throttling: vec![],
        access_log: Some((log_arn, ACCESS_LOG_FORMAT.to_owned())),
    };
    assert!(apis.ensure_stage(&api.id, &stage).await?);
    assert!(
        !apis.ensure_stage(&api.id, &stage).await?,
        "stage read back equal"
    );

    apis.delete_route(&api, "/partner/orders").await?;
    apis.delete_route(&api, "/partner/orders").await?;
    let other = owner("someone-else", "WebhookGateway other");
    assert!(
        apis.delete_api(&api.id, &other).await.is_err(),
        "not ours to delete"
    );
    logs.delete(&format!("/hookline/cp-{id}"), &gateway).await?;
    apis.delete_api(&api.id, &gateway).await?;
    apis.delete_api(&api.id, &gateway).await?;
    Ok(())
}

#[tokio::test]
async fn ministack_rest_api_control_plane() -> Result<()> {
    control_plane(&Bench::shared().await?.aws).await
}

#[tokio::test]
async fn localstack_rest_api_control_plane() -> Result<()> {
    let bench = Bench::shared().await?;
    control_plane(bench.data_plane(EmulatorKind::LocalStack).await?).await
}

#[tokio::test]
async fn moto_rest_api_control_plane() -> Result<()> {
    let bench = Bench::shared().await?;
    let moto = bench.start_emulator(EmulatorKind::Moto).await?;
    control_plane(&moto).await
}
