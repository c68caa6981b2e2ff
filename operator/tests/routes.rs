//! Route, authorizer and policy changes on MiniStack, through the REST API adapter:
//! deleting a route keeps the routes below it and prunes empty segments; parallel
//! route changes on one API do not collide; authorizer settings are patched in place
//! and a type change replaces the authorizer only after the route moved; a policy
//! stored in AWS's rewritten form is not written again; the Lambda authorizer's
//! invoke permission is granted once and revoked.

use anyhow::{Context as _, Result};
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::functions::{
    Functions, LambdaFunctions, authorizer_source_arn, authorizer_statement_id, statement_matches,
};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::rest_apis::source_ip_policy;
use hookline_operator::aws::templates::{DedupKey, GroupKey, Handshake, RouteTemplate};
use hookline_operator::aws::{
    ApiGatewayRestApis, ApiRef, ApiSpec, AuthorizerSpec, AwsClients, IamRoles, Owner, QueuePair,
    QueuePairSpec, RateLimits, RetryPolicy, RoleSpec, RouteAuth, RouteSpec, Service, SqsQueues,
};
use hookline_tests::Bench;
use hookline_tests::util::post;
use std::collections::BTreeMap;

mod common;

const APIGW: Service = Service::ApiGateway;

fn owner(uid: &str) -> Owner {
    Owner {
        uid: uid.to_owned(),
        resource: format!("WebhookGateway {uid}"),
    }
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 1_000_000);
    format!("{tag}-{}x{nanos}", std::process::id())
}

struct Setup {
    clients: AwsClients,
    apis: ApiGatewayRestApis,
    api: ApiRef,
    pair: QueuePair,
    role: String,
}

async fn setup(tag: &str) -> Result<Setup> {
    let bench = Bench::shared().await?;
    let clients = AwsClients::new(
        &bench.aws.sdk_config().await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let id = unique(tag);
    let gateway = owner(&format!("gw-{id}"));
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let pair = queues
        .ensure_pair(&QueuePairSpec {
            name: format!("hl-{id}"),
            content_based_deduplication: true,
            deduplication_scope: DedupScope::Queue,
            throughput_limit: FifoThroughputLimit::PerQueue,
            visibility_timeout_seconds: 30,
            message_retention_seconds: 3600,
            dead_letter_retention_seconds: 7200,
            max_receive_count: 5,
            tags: BTreeMap::new(),
            owner: gateway.clone(),
        })
        .await?;
    let role = IamRoles::new(clients.iam.clone(), clients.caller.clone())
        .ensure(&RoleSpec {
            name: format!("hookline-{id}"),
            region: hookline_tests::aws::REGION.to_owned(),
            queue_prefix: "hl".to_owned(),
            owner: gateway.clone(),
        })
        .await?;
    let apis = ApiGatewayRestApis::new(clients.apigateway.clone(), clients.caller.clone());
    let api = apis
        .ensure_api(
            &ApiSpec {
                name: format!("hookline-{id}"),
                tags: BTreeMap::new(),
                owner: gateway,
            },
            None,
        )
        .await?;
    Ok(Setup {
        clients,
        apis,
        api,
        pair,
        role,
    })
}

impl Setup {
    fn route(&self, path: &str, auth: RouteAuth) -> RouteSpec {
        RouteSpec {
            path: path.to_owned(),
            queue_arn: self.pair.queue.arn.clone(),
            role_arn: self.role.clone(),
            template: RouteTemplate {
                group: GroupKey::Constant("all".to_owned()),
                dedup: DedupKey::ContentBased,
                headers: vec![],
                query: false,
            },
            auth,
            handshake: None,
        }
    }

    /// Path → id of every resource of the API.
    async fn resources(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .clients
            .apigateway
            .get_resources()
            .rest_api_id(&self.api.id)
            .limit(500)
            .send()
            .await?
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| Some((r.path?, r.id?)))
            .collect())
    }

    async fn has_post(&self, resource_id: &str) -> Result<bool> {
        self.has_method(resource_id, "POST").await
    }

    async fn has_method(&self, resource_id: &str, method: &str) -> Result<bool> {
        Ok(self
            .clients
            .apigateway
            .get_method()
            .rest_api_id(&self.api.id)
            .resource_id(resource_id)
            .http_method(method)
            .send()
            .await
            .is_ok())
    }

    async fn authorizers(&self) -> Result<Vec<aws_sdk_apigateway::types::Authorizer>> {
        Ok(self
            .clients
            .apigateway
            .get_authorizers()
            .rest_api_id(&self.api.id)
            .send()
            .await?
            .items
            .unwrap_or_default())
    }
}

/// AWS's DeleteResource deletes the resource's children with it (LocalStack's
/// provider models that; MiniStack does not, see docs/emulators.md), so deleting the
/// route at `/a` must not delete `/a`'s resource while `/a/b` is a route. What the
/// operator asks for is checked on MiniStack: `/a` keeps its resource without a POST,
/// `/a/b` still serves, and segments left empty are pruned. `/a`'s handshake `GET`
/// goes with its POST (the POST's marker, read through `GetResources`, says it is ours).
/// A route's creation, its deployment and its deletion each show in the log at
/// `info` with the API Gateway object and the route's path; a repeat that changes
/// nothing adds no line.
#[tokio::test]
async fn route_changes_are_logged_with_the_route() -> Result<()> {
    let s = setup("log").await?;
    let log = common::LogBuffer::capture()?;
    let api = format!("/restapis/{}", s.api.id);
    let lines = || log.lines_about(&api);
    let route = s.route("/logged/x", RouteAuth::None);

    s.apis.ensure_route(&s.api, &route).await?;
    for (operation, object) in [
        // The quote ends the object: the segment, not the path below it.
        ("CreateResource", format!("{api}/resources /logged\"")),
        ("CreateResource", format!("{api}/resources /logged/x")),
        ("PutMethod", "(/logged/x)".to_owned()),
        ("PutIntegration", "(/logged/x)".to_owned()),
    ] {
        assert_eq!(
            log.changes(operation, &object).len(),
            1,
            "{operation} {object}: {:#?}",
            lines()
        );
    }
    assert!(
        lines().iter().all(|l| !l.contains("GetResources")),
        "reads stay at debug: {:#?}",
        lines()
    );
    let created = lines();
    s.apis.ensure_route(&s.api, &route).await?;
    assert_eq!(
        lines(),
        created,
        "a repeat that changes nothing logs nothing"
    );

    s.apis.deploy(&s.api.id, "live").await?;
    assert_eq!(
        log.changes(
            "CreateDeployment",
            &format!("{api}/deployments to stage live")
        )
        .len(),
        1,
        "{:#?}",
        lines()
    );
    s.apis.delete_route(&s.api, "/logged/x").await?;
    assert_eq!(
        log.changes("DeleteResource", &format!("{api}/resources/"))
            .len(),
        2,
        "the route's resource and its emptied parent: {:#?}",
        lines()
    );
    Ok(())
}

/// The adapter lists an API's resources once and then remembers them (GetResources
/// has the tightest quota a new route meets). What another tool changes behind its
/// back shows as NotFound (a remembered resource deleted) or Conflict (a segment
/// created); either way the route is made on a fresh listing, in the same call.
#[tokio::test]
async fn resources_changed_behind_the_operators_back_are_listed_again() -> Result<()> {
    let s = setup("stale").await?;
    let route = s.route("/stale/x", RouteAuth::None);
    s.apis.ensure_route(&s.api, &route).await?;

    let by_hand = s.resources().await?;
    s.clients
        .apigateway
        .delete_resource()
        .rest_api_id(&s.api.id)
        .resource_id(&by_hand["/stale/x"])
        .send()
        .await?;
    let (id, changed) = s.apis.ensure_route(&s.api, &route).await?;
    assert!(changed, "the route was made again");
    let now = s.resources().await?;
    assert_eq!(now.get("/stale/x"), Some(&id), "{now:?}");
    assert_ne!(id, by_hand["/stale/x"]);
    assert!(s.has_post(&id).await?, "the new resource has its POST");

    s.clients
        .apigateway
        .create_resource()
        .rest_api_id(&s.api.id)
        .parent_id(&now["/stale"])
        .path_part("y")
        .send()
        .await?;
    let (id, changed) = s
        .apis
        .ensure_route(&s.api, &s.route("/stale/y/z", RouteAuth::None))
        .await?;
    assert!(changed);
    let now = s.resources().await?;
    assert_eq!(now.get("/stale/y/z"), Some(&id), "{now:?}");
    assert!(s.has_post(&id).await?);
    let (_, changed) = s.apis.ensure_route(&s.api, &route).await?;
    assert!(!changed, "the first route is still as it should be");
    Ok(())
}

#[tokio::test]
async fn deleting_a_route_keeps_the_routes_below_it() -> Result<()> {
    let s = setup("del").await?;
    let port = Bench::shared().await?.aws.port();
    let with_handshake = RouteSpec {
        handshake: Some(Handshake::Dropbox),
        ..s.route("/a", RouteAuth::None)
    };
    s.apis.ensure_route(&s.api, &with_handshake).await?;
    s.apis
        .ensure_route(&s.api, &s.route("/a/b", RouteAuth::None))
        .await?;
    s.apis
        .ensure_route(&s.api, &s.route("/crash-a/x/y", RouteAuth::None))
        .await?;
    s.apis.deploy(&s.api.id, "live").await?;

    s.apis.delete_route(&s.api, "/a").await?;
    let resources = s.resources().await?;
    let a = resources
        .get("/a")
        .context("the resource of /a, parent of the route /a/b, was deleted")?;
    assert!(!s.has_post(a).await?, "the route /a is gone");
    assert!(!s.has_method(a, "GET").await?, "its handshake too");
    assert!(
        s.has_post(&resources["/a/b"]).await?,
        "the route /a/b stays"
    );
    s.apis.deploy(&s.api.id, "live").await?;
    let invoke = |path: &str| format!("/restapis/{}/live/_user_request_{path}", s.api.id);
    let json = [("Content-Type", "application/json")];
    let (status, _) = post(port, "127.0.0.1", &invoke("/a/b"), &json, r#"{"n":1}"#).await?;
    assert_eq!(status, 200, "/a/b still serves after /a was deleted");
    let (status, _) = post(port, "127.0.0.1", &invoke("/a"), &json, r#"{"n":2}"#).await?;
    assert_ne!(status, 200, "/a no longer serves");

    // A leaf route goes with the segments that only led to it.
    s.apis.delete_route(&s.api, "/crash-a/x/y").await?;
    s.apis.delete_route(&s.api, "/a/b").await?;
    let left: Vec<String> = s.resources().await?.into_keys().collect();
    assert_eq!(left, ["/"], "empty segments are pruned");
    s.apis.delete_route(&s.api, "/a/b").await?;
    Ok(())
}

/// Webhooks reconciled at once on one gateway change one REST API in parallel. AWS
/// answers overlapping changes with "ConflictException: … concurrent modification";
/// the adapter runs one change at a time per API, so reconciles creating the same
/// shared segment never even collide (MiniStack reports such a collision as a
/// Conflict on CreateResource).
#[tokio::test]
async fn parallel_route_changes_on_one_api_run_one_at_a_time() -> Result<()> {
    let s = setup("par").await?;
    let routes: Vec<RouteSpec> = (0..6)
        .map(|n| s.route(&format!("/shared/deep/r{n}"), RouteAuth::None))
        .collect();
    let results =
        futures::future::join_all(routes.iter().map(|r| s.apis.ensure_route(&s.api, r))).await;
    for result in results {
        result?;
    }
    let conflicts = s.clients.caller.count(APIGW, "CreateResource", "conflict");
    assert_eq!(conflicts, 0, "parallel changes of one API collided");
    let resources = s.resources().await?;
    assert_eq!(
        resources.len(),
        1 + 2 + 6,
        "/, /shared, /shared/deep and six routes: {resources:?}"
    );
    Ok(())
}

/// AWS stores a resource policy rewritten (the `execute-api:/` shorthand expanded
/// to this API's ARN, one-element arrays as single values). A policy stored that way
/// is the one Hookline wants: no UpdateRestApi, hence no redeploy, every resync.
#[tokio::test]
async fn a_policy_in_the_form_aws_stores_is_not_written_again() -> Result<()> {
    let s = setup("pol").await?;
    let desired = source_ip_policy(&[("/stripe".to_owned(), vec!["3.18.12.63/32".to_owned()])])
        .context("a policy")?;
    assert!(s.apis.ensure_policy(&s.api.id, Some(&desired)).await?);
    let arn = format!("arn:aws:execute-api:us-east-1:000000000000:{}", s.api.id);
    let stored = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "execute-api:Invoke",
             "Resource": format!("{arn}/*")},
            {"Effect": "Deny", "Principal": "*", "Action": "execute-api:Invoke",
             "Resource": format!("{arn}/*/POST/stripe"),
             "Condition": {"NotIpAddress": {"aws:SourceIp": "3.18.12.63/32"}}}
        ]
    });
    s.clients
        .apigateway
        .update_rest_api()
        .rest_api_id(&s.api.id)
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/policy")
                .value(stored.to_string())
                .build(),
        )
        .send()
        .await?;
    let before = s.clients.caller.count(APIGW, "UpdateRestApi", "ok");
    assert!(
        !s.apis.ensure_policy(&s.api.id, Some(&desired)).await?,
        "the policy as AWS stores it was taken for a change"
    );
    assert_eq!(s.clients.caller.count(APIGW, "UpdateRestApi", "ok"), before);
    Ok(())
}

/// The function and identity source are patched (UpdateAuthorizer) on the same
/// authorizer (so is the TTL, but MiniStack stores a patched TTL as a string it then
/// cannot answer with; see docs/emulators.md and the `authorizer_change` table
/// test); a new type makes a new one, and the old one, still used by the route, is
/// deleted only after the route points at the new one.
#[tokio::test]
async fn authorizer_changes_keep_the_route_working() -> Result<()> {
    let s = setup("auth").await?;
    let lambda = |function: &str, identity: &str, request: bool| AuthorizerSpec::Lambda {
        name: "team-orders".to_owned(),
        function_arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{function}"),
        request,
        identity_source: format!("method.request.header.{identity}"),
        ttl_seconds: 300,
    };
    let first = s
        .apis
        .ensure_authorizer(&s.api.id, &lambda("auth", "Authorization", false))
        .await?;
    s.apis
        .ensure_route(
            &s.api,
            &s.route(
                "/orders",
                RouteAuth::Lambda {
                    authorizer_id: first.clone(),
                },
            ),
        )
        .await?;

    let patched = s
        .apis
        .ensure_authorizer(&s.api.id, &lambda("auth-v2", "X-Token", false))
        .await?;
    assert_eq!(patched, first, "a new function keeps the authorizer");
    assert_eq!(s.clients.caller.count(APIGW, "UpdateAuthorizer", "ok"), 1);
    assert_eq!(s.clients.caller.count(APIGW, "DeleteAuthorizer", "ok"), 0);
    let current = s
        .authorizers()
        .await?
        .into_iter()
        .find(|a| a.id.as_deref() == Some(first.as_str()))
        .context("the authorizer")?;
    assert_eq!(
        current.identity_source.as_deref(),
        Some("method.request.header.X-Token")
    );
    assert!(
        current
            .authorizer_uri
            .as_deref()
            .is_some_and(|u| u.contains("function:auth-v2/")),
        "{:?}",
        current.authorizer_uri
    );
    assert_eq!(
        s.apis
            .ensure_authorizer(&s.api.id, &lambda("auth-v2", "X-Token", false))
            .await?,
        first
    );
    assert_eq!(
        s.clients.caller.count(APIGW, "UpdateAuthorizer", "ok"),
        1,
        "a repeat patches nothing"
    );

    let replaced = s
        .apis
        .ensure_authorizer(&s.api.id, &lambda("auth-v2", "X-Token", true))
        .await?;
    assert_ne!(replaced, first, "TOKEN → REQUEST is a new authorizer");
    let ids: Vec<String> = s
        .authorizers()
        .await?
        .into_iter()
        .filter_map(|a| a.id)
        .collect();
    assert!(
        ids.contains(&first),
        "the old authorizer is deleted while the route still uses it"
    );
    let (_, changed) = s
        .apis
        .ensure_route(
            &s.api,
            &s.route(
                "/orders",
                RouteAuth::Lambda {
                    authorizer_id: replaced.clone(),
                },
            ),
        )
        .await?;
    assert!(changed, "the route is re-pointed");
    let deleted = s
        .apis
        .delete_authorizers(&s.api.id, "team-orders", Some(&replaced))
        .await?;
    assert_eq!(
        deleted.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [first.as_str()]
    );
    assert_eq!(
        deleted[0].function_arn.as_deref(),
        Some("arn:aws:lambda:us-east-1:000000000000:function:auth-v2")
    );
    let names: Vec<String> = s
        .authorizers()
        .await?
        .into_iter()
        .filter_map(|a| a.name)
        .collect();
    assert_eq!(names, ["team-orders"]);
    assert_eq!(
        s.apis
            .ensure_authorizer(&s.api.id, &lambda("auth-v2", "X-Token", true))
            .await?,
        replaced,
        "the new one is found by name"
    );
    Ok(())
}

/// The grant that lets API Gateway invoke a Lambda authorizer: added once, scoped
/// to the one authorizer, not added again, and removed.
#[tokio::test]
async fn the_lambda_authorizer_is_granted_invoke_once() -> Result<()> {
    let s = setup("grant").await?;
    let function = unique("auth");
    let created = s
        .clients
        .lambda
        .create_function()
        .function_name(&function)
        .runtime(aws_sdk_lambda::types::Runtime::Python312)
        .role("arn:aws:iam::000000000000:role/lambda")
        .handler("index.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(empty_zip()))
                .build(),
        )
        .send()
        .await?;
    let function_arn = created.function_arn.context("function ARN")?;
    let functions = LambdaFunctions::new(s.clients.lambda.clone(), s.clients.caller.clone());
    let source =
        authorizer_source_arn(&s.pair.queue.arn, &s.api.id, "abc123").context("source ARN")?;
    let sid = authorizer_statement_id(&s.api.id, "abc123");

    assert!(
        functions
            .ensure_invoke_permission(&function_arn, &sid, &source)
            .await?
    );
    assert!(
        !functions
            .ensure_invoke_permission(&function_arn, &sid, &source)
            .await?
    );
    assert_eq!(
        s.clients
            .caller
            .count(Service::Lambda, "AddPermission", "ok"),
        1
    );
    let policy = s
        .clients
        .lambda
        .get_policy()
        .function_name(&function_arn)
        .send()
        .await?
        .policy
        .unwrap_or_default();
    assert_eq!(
        statement_matches(&policy, &sid, &source),
        Some(true),
        "{policy}"
    );
    assert!(source.ends_with(&format!("{}/authorizers/abc123", s.api.id)));

    functions
        .remove_invoke_permission(&function_arn, &sid)
        .await?;
    functions
        .remove_invoke_permission(&function_arn, &sid)
        .await?;
    let policy = s
        .clients
        .lambda
        .get_policy()
        .function_name(&function_arn)
        .send()
        .await
        .ok()
        .and_then(|p| p.policy)
        .unwrap_or_default();
    assert_eq!(statement_matches(&policy, &sid, &source), None, "{policy}");
    Ok(())
}

/// The smallest valid zip archive (no entries): the function is never invoked here.
fn empty_zip() -> Vec<u8> {
    let mut zip = vec![0x50, 0x4b, 0x05, 0x06];
    zip.extend([0u8; 18]);
    zip
}
