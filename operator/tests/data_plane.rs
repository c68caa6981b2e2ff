//! What a provider can send, end to end through the gateway into the queue, on
//! both data planes: header names in any case, `charset` parameters, hostile query
//! strings, group keys SQS would refuse raw, bodies over SQS's size limit, and SQS
//! refusals that must make the provider retry. Each case is one a real provider
//! sends (Stripe: `Stripe-Signature` over HTTP/1.1 with `application/json;
//! charset=utf-8`; GitHub: `X-GitHub-Delivery`; Go clients: `X-Github-Delivery`;
//! HTTP/2 senders: lowercase).
//!
//! Where MiniStack cannot run what AWS needs (no `$input.params().header` map, no
//! Java string methods, no `#if`), the assertion is made on LocalStack only and
//! docs/emulators.md says so.

use anyhow::{Context, Result};
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::templates::{DedupKey, GroupKey, Handshake, RouteTemplate};
use hookline_operator::aws::{
    ApiGatewayRestApis, ApiSpec, AwsClients, IamRoles, Owner, QueuePair, QueuePairSpec, RateLimits,
    RetryPolicy, RoleSpec, RouteAuth, RouteSpec, SqsQueues,
};
use hookline_tests::util::{AfterReceive, get, post, receive_all};
use hookline_tests::{Bench, EmulatorKind, data_plane_test};
use hookline_worker::Delivery;
use std::collections::BTreeMap;

/// One route on its own REST API and queue pair, deployed to stage `live`.
struct Route {
    clients: AwsClients,
    queue: QueuePair,
    port: u16,
    invoke: String,
    apis: ApiGatewayRestApis,
    api: hookline_operator::aws::ApiRef,
    spec: RouteSpec,
}

impl Route {
    async fn new(kind: EmulatorKind, name: &str, template: RouteTemplate) -> Result<Self> {
        Self::with_handshake(kind, name, template, None).await
    }

    async fn with_handshake(
        kind: EmulatorKind,
        name: &str,
        template: RouteTemplate,
        handshake: Option<Handshake>,
    ) -> Result<Self> {
        let aws = Bench::shared().await?.data_plane(kind).await?;
        let clients = AwsClients::new(
            &aws.sdk_config().await,
            &RateLimits::unlimited(),
            RetryPolicy::default(),
        );
        let id = format!("{name}-{}x{}", std::process::id(), suffix());
        let owner = Owner {
            uid: format!("uid-{id}"),
            resource: format!("Webhook test/{name}"),
        };
        let content_based = matches!(template.dedup, DedupKey::ContentBased);
        let queue = SqsQueues::new(clients.sqs.clone(), clients.caller.clone())
            .ensure_pair(&QueuePairSpec {
                name: format!("hl-dp-{id}"),
                content_based_deduplication: content_based,
                deduplication_scope: DedupScope::Queue,
                throughput_limit: FifoThroughputLimit::PerQueue,
                visibility_timeout_seconds: 30,
                message_retention_seconds: 3600,
                dead_letter_retention_seconds: 7200,
                max_receive_count: 5,
                tags: BTreeMap::new(),
                owner: owner.clone(),
            })
            .await?;
        let role = IamRoles::new(clients.iam.clone(), clients.caller.clone())
            .ensure(&RoleSpec {
                name: format!("hookline-dp-{id}"),
                region: hookline_tests::aws::REGION.to_owned(),
                queue_prefix: "hl".to_owned(),
                owner: owner.clone(),
            })
            .await?;
        let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
        let api = apis
            .ensure_api(
                &ApiSpec {
                    name: format!("hookline-dp-{id}"),
                    tags: BTreeMap::new(),
                    owner,
                },
                None,
            )
            .await?;
        let spec = RouteSpec {
            path: "/hook".to_owned(),
            queue_arn: queue.queue.arn.clone(),
            role_arn: role,
            template,
            auth: RouteAuth::None,
            handshake,
        };
        apis.ensure_route(&api, &spec).await?;
        apis.deploy(&api.id, "live").await?;
        Ok(Self {
            clients,
            queue,
            port: aws.port(),
            invoke: format!("/restapis/{}/live/_user_request_/hook", api.id),
            apis,
            api,
            spec,
        })
    }

    /// The route again with another handshake, deployed; whether it changed.
    async fn set_handshake(&mut self, handshake: Option<Handshake>) -> Result<bool> {
        self.spec.handshake = handshake;
        let (_, changed) = self.apis.ensure_route(&self.api, &self.spec).await?;
        self.apis.deploy(&self.api.id, "live").await?;
        Ok(changed)
    }

    async fn get(&self, query: &str) -> Result<(u16, Vec<(String, String)>, String)> {
        get(self.port, "127.0.0.1", &format!("{}{query}", self.invoke)).await
    }

    async fn post(
        &self,
        query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<(u16, String)> {
        post(
            self.port,
            "127.0.0.1",
            &format!("{}{query}", self.invoke),
            headers,
            body,
        )
        .await
    }

    /// Everything queued, deleted as it is read so each group's next message comes.
    async fn drain(&self) -> Result<Vec<Delivery>> {
        receive_all(
            &self.clients.sqs,
            &self.queue.queue.url,
            8,
            AfterReceive::Delete,
        )
        .await?
        .into_iter()
        .map(|m| Delivery::from_sqs(m).context("reading a queued message"))
        .collect()
    }
}

fn suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 100_000)
}

/// SQS's rule for group and dedup ids: 1–128 ASCII letters, digits and punctuation.
fn valid_sqs_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn body_of(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.body).into_owned()
}

fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a str> {
    d.headers.get(name).and_then(|v| v.to_str().ok())
}

data_plane_test!(headers_are_found_in_any_case);

/// The same delivery sent with Title-Case (HTTP/1.1 as Stripe and GitHub send it),
/// Go's canonical case and lowercase (HTTP/2) names lands with the same group, the
/// same dedup id and the same forwarded signature, never doubled.
async fn headers_are_found_in_any_case(kind: EmulatorKind) -> Result<()> {
    let route = Route::new(
        kind,
        "case",
        RouteTemplate {
            group: GroupKey::Header("X-GitHub-Repo".to_owned()),
            dedup: DedupKey::Header("X-GitHub-Delivery".to_owned()),
            headers: vec![
                "X-Hub-Signature-256".to_owned(),
                "Stripe-Signature".to_owned(),
            ],
            query: false,
        },
    )
    .await?;
    let spellings: [[&str; 4]; 3] = [
        [
            "X-GitHub-Repo",
            "X-GitHub-Delivery",
            "X-Hub-Signature-256",
            "Stripe-Signature",
        ],
        [
            "X-Github-Repo",
            "X-Github-Delivery",
            "X-Hub-Signature-256",
            "Stripe-Signature",
        ],
        [
            "x-github-repo",
            "x-github-delivery",
            "x-hub-signature-256",
            "stripe-signature",
        ],
    ];
    for (n, [repo, delivery, hub, stripe]) in spellings.iter().enumerate() {
        let id = format!("d-{n}");
        let (status, body) = route
            .post(
                "",
                &[
                    ("Content-Type", "application/json"),
                    (repo, "acme/shop"),
                    (delivery, &id),
                    (hub, "sha256=00ff"),
                    (stripe, "t=1,v1=ab"),
                ],
                &format!("{{\"n\":{n}}}"),
            )
            .await?;
        assert_eq!(status, 200, "{kind:?} spelling {n}: {body}");
    }
    let got = route.drain().await?;
    assert_eq!(
        got.len(),
        3,
        "{kind:?}: {:?}",
        got.iter().map(body_of).collect::<Vec<_>>()
    );
    for d in &got {
        assert_eq!(d.group_id, "h:acme%2Fshop", "{kind:?}: {}", body_of(d));
        assert_eq!(
            header(d, "x-hub-signature-256"),
            Some("sha256=00ff"),
            "{kind:?}"
        );
        assert_eq!(header(d, "stripe-signature"), Some("t=1,v1=ab"), "{kind:?}");
    }
    // One delivery id three times: SQS keeps the first only, whatever the case.
    let (status, _) = route
        .post(
            "",
            &[
                ("content-type", "application/json"),
                ("x-github-repo", "acme/shop"),
                ("X-GitHub-Delivery", "d-0"),
            ],
            r#"{"n":"again"}"#,
        )
        .await?;
    assert_eq!(status, 200);
    assert!(
        route.drain().await?.is_empty(),
        "{kind:?}: a redelivery with the same id was queued again"
    );
    Ok(())
}

data_plane_test!(the_query_string_sets_nothing on localstack);

/// `$input.params('x')` prefers the query string over the header, so anyone could
/// set the dedup id (and suppress a genuine delivery), the group, or a forwarded
/// signature with `?x-github-delivery=…`. Values come from the header map only.
/// MiniStack has no header map (its `$input.params()` is one flat map in which the
/// query string wins), so this runs on LocalStack.
async fn the_query_string_sets_nothing(kind: EmulatorKind) -> Result<()> {
    let route = Route::new(
        kind,
        "query",
        RouteTemplate {
            group: GroupKey::Header("X-GitHub-Repo".to_owned()),
            dedup: DedupKey::Header("X-GitHub-Delivery".to_owned()),
            headers: vec!["X-Hub-Signature-256".to_owned()],
            query: false,
        },
    )
    .await?;
    let headers = [
        ("Content-Type", "application/json"),
        ("X-GitHub-Repo", "acme/shop"),
        ("X-GitHub-Delivery", "genuine"),
        ("X-Hub-Signature-256", "sha256=genuine"),
    ];
    let hostile = "?x-github-delivery=evil&X-GitHub-Delivery=evil&x-github-repo=evil&x-hub-signature-256=evil";
    assert_eq!(route.post(hostile, &headers, r#"{"n":1}"#).await?.0, 200);
    // Without a delivery-id header the query string must not supply one.
    let (status, _) = route
        .post(
            hostile,
            &[("Content-Type", "application/json")],
            r#"{"n":2}"#,
        )
        .await?;
    assert_eq!(status, 400, "a dedup id taken from the query string");
    let got = route.drain().await?;
    assert_eq!(
        got.len(),
        1,
        "{:?}",
        got.iter().map(body_of).collect::<Vec<_>>()
    );
    assert_eq!(got[0].group_id, "h:acme%2Fshop");
    assert_eq!(
        header(&got[0], "x-hub-signature-256"),
        Some("sha256=genuine")
    );
    // The genuine id is the dedup id: a second genuine delivery is dropped.
    assert_eq!(route.post("", &headers, r#"{"n":3}"#).await?.0, 200);
    assert!(route.drain().await?.is_empty());
    Ok(())
}

/// A request's query string, headers and body, and the parameters the worker must read.
type QueryCase<'a> = (
    String,
    &'a [(&'a str, &'a str)],
    &'a str,
    Vec<(&'a str, &'a str)>,
);

data_plane_test!(the_query_reaches_the_worker_for_the_presets_that_sign_the_url on localstack);

/// Twilio, Square and HubSpot sign the URL they called, query included: the route
/// forwards the query (decoded by API Gateway, re-encoded pair by pair) and the
/// worker rebuilds the URL from it. A Twilio JSON request, signed over the public URL
/// and its `bodySHA256` (token `12345`, the hash of the body; computed with Python's
/// `hmac`), verifies from what the queue holds. MiniStack runs no `#foreach`, which
/// the forwarding needs (docs/emulators.md).
async fn the_query_reaches_the_worker_for_the_presets_that_sign_the_url(
    kind: EmulatorKind,
) -> Result<()> {
    let route = Route::new(
        kind,
        "urlsig",
        RouteTemplate {
            group: GroupKey::Constant("all".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec!["X-Twilio-Signature".to_owned(), "Content-Type".to_owned()],
            query: true,
        },
    )
    .await?;
    let hash = "5ccde7145dfb8f56479710896586cb9d5911809d83afbe34627818790db0aec9";
    let json = [("Content-Type", "application/json")];
    let signed = [
        ("Content-Type", "application/json"),
        ("X-Twilio-Signature", "hPXmLwIy3Fgqv1i9KPmH/HhQ6zo="),
    ];
    let cases: [QueryCase<'_>; 4] = [
        (
            format!("?bodySHA256={hash}"),
            &signed,
            r#"{"CallSid":"CA1234567890ABCDE","Caller":"+12349013030"}"#,
            vec![("bodySHA256", hash)],
        ),
        (
            "?tenant=acme&region=eu-1&a=1".to_owned(),
            &json,
            r#"{"n":2}"#,
            vec![("tenant", "acme"), ("region", "eu-1"), ("a", "1")],
        ),
        (
            "?next=https%3A%2F%2Fapp.example.com%2Fa%20b&note=caf%C3%A9+%E2%9C%93".to_owned(),
            &json,
            r#"{"n":3}"#,
            vec![
                ("next", "https://app.example.com/a b"),
                ("note", "caf\u{e9} \u{2713}"),
            ],
        ),
        (String::new(), &json, r#"{"n":4}"#, vec![]),
    ];
    for (query, headers, body, _) in &cases {
        let (status, answer) = route.post(query, headers, body).await?;
        assert_eq!(status, 200, "{kind:?} {query}: {answer}");
    }
    let got = route.drain().await?;
    assert_eq!(got.len(), cases.len(), "{kind:?}");
    for (d, (query, _, body, want)) in got.iter().zip(&cases) {
        assert_eq!(body_of(d), *body, "{kind:?} {query}");
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            d.query, want,
            "{kind:?} {query}: the order and values as sent"
        );
    }
    let verifier = hookline_worker::Verifier::new(
        hookline_worker::signature::Preset::Twilio,
        &[b"12345".to_vec()],
        std::time::Duration::from_secs(300),
    )?
    .with_public_url(Some("https://example.com/myapp".to_owned()));
    assert_eq!(
        verifier.verify_delivery(&got[0]),
        Ok(hookline_worker::signature::Verified::Current),
        "{kind:?}"
    );
    Ok(())
}

data_plane_test!(content_types_with_charset_are_accepted);

/// Stripe sends `application/json; charset=utf-8`; others `;charset=UTF-8`. The
/// body reaches the queue byte for byte, and the content type is forwarded as sent.
async fn content_types_with_charset_are_accepted(kind: EmulatorKind) -> Result<()> {
    let route = Route::new(
        kind,
        "charset",
        RouteTemplate {
            group: GroupKey::Constant("all".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec!["Content-Type".to_owned()],
            query: false,
        },
    )
    .await?;
    let mut types = vec![
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        "application/json;charset=utf-8",
        "text/plain; charset=utf-8",
    ];
    // AWS hands the template the raw payload as `$input.body` (mapping template
    // reference); LocalStack re-encodes a form body first (docs/emulators.md).
    if kind != EmulatorKind::LocalStack {
        types.push("application/x-www-form-urlencoded; charset=UTF-8");
    }
    for (n, content_type) in types.iter().enumerate() {
        let body = format!("{{\"n\":{n},\"name\":\"Zoë & \\\"co\\\" 100%+\"}}");
        let (status, answer) = route
            .post("", &[("Content-Type", content_type)], &body)
            .await?;
        assert_eq!(status, 200, "{kind:?} {content_type}: {answer}");
    }
    let got = route.drain().await?;
    assert_eq!(got.len(), types.len());
    for (n, d) in got.iter().enumerate() {
        assert_eq!(
            body_of(d),
            format!("{{\"n\":{n},\"name\":\"Zoë & \\\"co\\\" 100%+\"}}")
        );
        assert_eq!(header(d, "content-type"), Some(types[n]));
    }
    Ok(())
}

data_plane_test!(group_keys_sqs_refuses_raw_still_land);

/// A group id may hold only ASCII letters, digits and punctuation, at most 128
/// characters. Keys with a space, non-ASCII text or a JSON object land, in a
/// group that is a function of the key.
async fn group_keys_sqs_refuses_raw_still_land(kind: EmulatorKind) -> Result<()> {
    let by_body = Route::new(
        kind,
        "bodygroup",
        RouteTemplate {
            group: GroupKey::BodyField("$.data.customer".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec![],
            query: false,
        },
    )
    .await?;
    let keys = [
        r#""cus 9/é""#,
        r#"{"id":"c 1","n":2}"#,
        r#""cus 9/é""#,
        r#""plain_42""#,
        "7",
    ];
    for (n, key) in keys.iter().enumerate() {
        let body = format!("{{\"n\":{n},\"data\":{{\"customer\":{key}}}}}");
        let (status, answer) = by_body
            .post("", &[("Content-Type", "application/json")], &body)
            .await?;
        assert_eq!(status, 200, "{kind:?} key {key}: {answer}");
    }
    let got = by_body.drain().await?;
    assert_eq!(got.len(), keys.len(), "{kind:?}");
    let group_of = |n: usize| {
        got.iter()
            .find(|d| body_of(d).starts_with(&format!("{{\"n\":{n},")))
            .map(|d| d.group_id.clone())
    };
    for d in &got {
        assert!(valid_sqs_id(&d.group_id), "{kind:?}: {:?}", d.group_id);
    }
    assert_eq!(group_of(0), group_of(2), "the same key, the same group");
    assert_eq!(group_of(3).as_deref(), Some("b:plain_42"));
    assert_ne!(group_of(0), group_of(1));

    let by_header = Route::new(
        kind,
        "headergroup",
        RouteTemplate {
            group: GroupKey::Header("X-Tenant".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec![],
            query: false,
        },
    )
    .await?;
    let (status, answer) = by_header
        .post(
            "",
            &[
                ("Content-Type", "application/json"),
                ("X-Tenant", "Acme Corp, EU"),
            ],
            "{}",
        )
        .await?;
    assert_eq!(status, 200, "{kind:?}: {answer}");
    let got = by_header.drain().await?;
    assert_eq!(
        got.iter().map(|d| d.group_id.as_str()).collect::<Vec<_>>(),
        ["h:Acme+Corp%2C+EU"]
    );
    Ok(())
}

data_plane_test!(a_long_group_key_is_cut_not_refused on localstack);

/// A 300-character key would make SQS refuse every try of that event. The group is
/// the key's first characters (keys sharing them share a group: order kept, only
/// parallelism lost). MiniStack has no Java string methods to cut with.
async fn a_long_group_key_is_cut_not_refused(kind: EmulatorKind) -> Result<()> {
    let route = Route::new(
        kind,
        "longgroup",
        RouteTemplate {
            group: GroupKey::BodyField("$.customer".to_owned()),
            dedup: DedupKey::ContentBased,
            headers: vec![],
            query: false,
        },
    )
    .await?;
    let long = "k".repeat(300);
    for n in 0..2 {
        let body = format!("{{\"n\":{n},\"customer\":\"{long}\"}}");
        let (status, answer) = route
            .post("", &[("Content-Type", "application/json")], &body)
            .await?;
        assert_eq!(status, 200, "{answer}");
    }
    let got = route.drain().await?;
    assert_eq!(got.len(), 2);
    let expected = format!("b:{}", "k".repeat(120));
    assert!(
        got.iter().all(|d| d.group_id == expected),
        "{:?}",
        got.iter().map(|d| &d.group_id).collect::<Vec<_>>()
    );
    assert!(valid_sqs_id(&expected));
    Ok(())
}

data_plane_test!(refusals_tell_the_provider_whether_to_retry on localstack);

/// Only what SQS refuses for its content is final: a body over SQS's 1 MiB gets
/// 413, a missing dedup header 400. A queue SQS cannot find (being repaired by the
/// operator) gets 503, so the provider retries. MiniStack has no `#if` in response
/// templates: there every SQS 400 is a 400.
async fn refusals_tell_the_provider_whether_to_retry(kind: EmulatorKind) -> Result<()> {
    let route = Route::new(
        kind,
        "refusals",
        RouteTemplate {
            group: GroupKey::Constant("all".to_owned()),
            dedup: DedupKey::Header("Webhook-Id".to_owned()),
            headers: vec![],
            query: false,
        },
    )
    .await?;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1_100 * 1024));
    let (status, answer) = route
        .post(
            "",
            &[
                ("Content-Type", "application/json"),
                ("Webhook-Id", "msg_big"),
            ],
            &big,
        )
        .await?;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("1 MiB"), "{answer}");
    let (status, answer) = route
        .post("", &[("Content-Type", "application/json")], "{}")
        .await?;
    assert_eq!(status, 400, "no dedup id: {answer}");

    route
        .clients
        .sqs
        .delete_queue()
        .queue_url(&route.queue.queue.url)
        .send()
        .await?;
    let (status, answer) = route
        .post(
            "",
            &[
                ("Content-Type", "application/json"),
                ("Webhook-Id", "msg_1"),
            ],
            "{}",
        )
        .await?;
    assert_eq!(
        status, 503,
        "a missing queue must make the provider retry: {answer}"
    );
    Ok(())
}

data_plane_test!(the_route_answers_the_get_handshakes on localstack);

/// Meta's and Dropbox's `GET` verifications are answered by the route itself (a
/// `MOCK` `GET`): the challenge comes back as `text/plain` with `nosniff` for the
/// right token only; a new token is a route change; removing the handshake removes
/// the `GET`, and the `POST` queues as before throughout. LocalStack only: MiniStack
/// runs no `#if` (docs/emulators.md).
async fn the_route_answers_the_get_handshakes(kind: EmulatorKind) -> Result<()> {
    let template = RouteTemplate {
        group: GroupKey::Constant("all".into()),
        dedup: DedupKey::ContentBased,
        headers: vec![],
        query: false,
    };
    // A quote and a `$` in the token: it is a Velocity string literal in the template.
    let token = "it's-$ecret";
    let meta = |verify_token: &str| Handshake::Meta {
        verify_token: verify_token.to_owned(),
    };
    let mut route = Route::with_handshake(kind, "handshake", template, Some(meta(token))).await?;
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let verify = |token: &str| {
        format!(
            "?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={}",
            urlencoding(token)
        )
    };
    let (status, headers, body) = route.get(&verify(token)).await?;
    assert_eq!((status, body.as_str()), (200, "1158201444"), "{headers:?}");
    assert!(
        header(&headers, "content-type").is_some_and(|v| v.starts_with("text/plain")),
        "{headers:?}"
    );
    assert_eq!(
        header(&headers, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let (status, _, body) = route.get(&verify("wrong")).await?;
    assert_eq!(status, 403, "a wrong token: {body}");
    assert!(!body.contains("1158201444"), "{body}");

    assert!(
        route.set_handshake(Some(meta("rotated"))).await?,
        "a new token is a change"
    );
    assert_eq!(route.get(&verify(token)).await?.0, 403, "the old token");
    assert_eq!(route.get(&verify("rotated")).await?.0, 200, "the new token");
    assert!(
        !route.set_handshake(Some(meta("rotated"))).await?,
        "nothing changed"
    );

    assert!(route.set_handshake(Some(Handshake::Dropbox)).await?);
    let (status, headers, body) = route.get("?challenge=Zfsd8R0mQ").await?;
    assert_eq!((status, body.as_str()), (200, "Zfsd8R0mQ"), "{headers:?}");
    assert_eq!(
        header(&headers, "x-content-type-options").as_deref(),
        Some("nosniff")
    );

    let (status, answer) = route
        .post("", &[("Content-Type", "application/json")], r#"{"a":1}"#)
        .await?;
    assert_eq!(status, 200, "the POST queues beside the GET: {answer}");
    assert_eq!(route.drain().await?.len(), 1);

    assert!(route.set_handshake(None).await?, "removing it is a change");
    let (status, _, body) = route.get("?challenge=Zfsd8R0mQ").await?;
    assert_ne!(status, 200, "no GET any more: {body}");
    let (status, answer) = route
        .post("", &[("Content-Type", "application/json")], r#"{"a":2}"#)
        .await?;
    assert_eq!(status, 200, "{answer}");
    Ok(())
}

/// Percent-encodes a query value (everything but unreserved characters).
fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
