//! The pure decisions of the REST API adapter: from what API Gateway holds and what
//! the spec says, the calls or patch operations that close the gap. No SDK client
//! here, so each is table-tested on in-memory values; the SDK impls
//! ([`super::routes`], [`super::stages`], [`super::authorizers`],
//! [`super::domains`]) only read, ask these, and write.

use aws_sdk_apigateway::operation::get_method::GetMethodOutput;
use aws_sdk_apigateway::types::{
    AuthorizerType, Integration, IntegrationResponse, IntegrationType, Op, PatchOperation,
};
use std::collections::{BTreeMap, HashMap};

use super::{APIGW, AuthorizerSpec, RouteAuth, StageSpec};
use crate::aws::templates::{HANDSHAKE_HEADERS, HANDSHAKE_REQUEST_TEMPLATE, RouteResponse};
use crate::aws::{AwsError, OWNER_TAG, Owner};

/// The invocation URI of a Lambda authorizer.
fn lambda_authorizer_uri(function_arn: &str) -> String {
    let part = |n| function_arn.split(':').nth(n).unwrap_or_default();
    let (partition, region) = (part(1), part(3));
    format!(
        "arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )
}

/// What decides how an authorizer is brought to its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerShape {
    /// `COGNITO_USER_POOLS`, `TOKEN` or `REQUEST`.
    pub kind: AuthorizerType,
    /// User pool ARNs (Cognito), sorted.
    pub providers: Vec<String>,
    /// Invocation URI (Lambda).
    pub uri: Option<String>,
    /// Identity source.
    pub identity: String,
    /// Result cache TTL (Lambda; `None`: not managed).
    pub ttl: Option<i32>,
}

impl AuthorizerShape {
    pub(crate) fn of(spec: &AuthorizerSpec) -> Self {
        match spec {
            AuthorizerSpec::Cognito { user_pool_arns, .. } => {
                let mut providers = user_pool_arns.clone();
                providers.sort();
                Self {
                    kind: AuthorizerType::CognitoUserPools,
                    providers,
                    uri: None,
                    identity: "method.request.header.Authorization".to_owned(),
                    ttl: None,
                }
            }
            AuthorizerSpec::Lambda {
                function_arn,
                request,
                identity_source,
                ttl_seconds,
                ..
            } => Self {
                kind: if *request {
                    AuthorizerType::Request
                } else {
                    AuthorizerType::Token
                },
                providers: Vec::new(),
                uri: Some(lambda_authorizer_uri(function_arn)),
                identity: identity_source.clone(),
                ttl: Some(*ttl_seconds),
            },
        }
    }

    pub(super) fn from_aws(current: &aws_sdk_apigateway::types::Authorizer) -> Self {
        let mut providers = current.provider_arns.clone().unwrap_or_default();
        providers.sort();
        Self {
            kind: current.r#type.clone().unwrap_or(AuthorizerType::Token),
            providers,
            uri: current.authorizer_uri.clone().filter(|u| !u.is_empty()),
            identity: current.identity_source.clone().unwrap_or_default(),
            ttl: current.authorizer_result_ttl_in_seconds,
        }
    }
}

/// How to bring an authorizer from `current` to `desired`.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerChange {
    /// It is as it should be.
    None,
    /// `UpdateAuthorizer` with these operations.
    Patch(Vec<PatchOperation>),
    /// A new authorizer: its type, or its user pools, differ. API Gateway patches
    /// neither (`/providerARNs` is not a replaceable path), and the old one cannot
    /// be deleted while a method references it.
    Replace,
}

/// The change from `current` to `desired` (see [`AuthorizerChange`]).
pub fn authorizer_change(current: &AuthorizerShape, desired: &AuthorizerShape) -> AuthorizerChange {
    if current.kind != desired.kind || current.providers != desired.providers {
        return AuthorizerChange::Replace;
    }
    let mut ops = Vec::new();
    if current.uri != desired.uri
        && let Some(uri) = &desired.uri
    {
        ops.push(replace("/authorizerUri".into(), uri.clone()));
    }
    if current.identity != desired.identity {
        ops.push(replace("/identitySource".into(), desired.identity.clone()));
    }
    if let Some(ttl) = desired.ttl
        && current.ttl != Some(ttl)
    {
        ops.push(replace(
            "/authorizerResultTtlInSeconds".into(),
            ttl.to_string(),
        ));
    }
    if ops.is_empty() {
        AuthorizerChange::None
    } else {
        AuthorizerChange::Patch(ops)
    }
}

/// The `UpdateMethod` operations that turn a method's OAuth scopes into `desired`:
/// API Gateway adds and removes scopes one at a time (`add`/`remove` on
/// `/authorizationScopes`; there is no `replace`).
pub fn scope_ops(current: &[String], desired: &[String]) -> Vec<PatchOperation> {
    let op = |op: Op, scope: &String| {
        PatchOperation::builder()
            .op(op)
            .path("/authorizationScopes")
            .value(scope.clone())
            .build()
    };
    let mut ops: Vec<PatchOperation> = current
        .iter()
        .filter(|s| !desired.contains(s))
        .map(|s| op(Op::Remove, s))
        .collect();
    ops.extend(
        desired
            .iter()
            .filter(|s| !current.contains(s))
            .map(|s| op(Op::Add, s)),
    );
    ops
}

/// An API's resources: path → (id, has any method).
pub type ResourceTree = BTreeMap<String, (String, bool)>;

/// One call of a route's deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// `DeleteMethod` POST (its integration goes with it) on this resource.
    Method(String),
    /// `DeleteResource` of this resource.
    Resource(String),
}

/// The calls that delete the route at `path` and nothing else. `DeleteResource`
/// deletes a resource's children too (AWS), so a route with resources under it (the
/// route of another webhook at `path/b`, or the segments leading there) loses only
/// its `POST`. Otherwise the resource goes, and then each parent segment that is
/// left with no method and no other child (it counts against the resources-per-API
/// quota), deepest first, never `/`. A route already gone still prunes the empty
/// segments a deletion cut short left behind.
pub fn route_deletion(tree: &ResourceTree, path: &str) -> Vec<Deletion> {
    let path = format!("/{}", path.trim_matches('/'));
    let under = |prefix: &str| {
        let prefix = format!("{prefix}/");
        tree.keys()
            .filter(move |p| p.starts_with(&prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut steps = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    match tree.get(&path) {
        Some((id, has_methods)) if !under(&path).is_empty() => {
            if *has_methods {
                steps.push(Deletion::Method(id.clone()));
            }
            return steps;
        }
        Some((id, _)) => {
            steps.push(Deletion::Resource(id.clone()));
            removed.push(path.clone());
        }
        None => removed.push(path.clone()),
    }
    let mut current = path;
    while let Some((parent, _)) = current.rsplit_once('/') {
        if parent.is_empty() {
            break;
        }
        let Some((id, has_methods)) = tree.get(parent) else {
            current = parent.to_owned();
            continue;
        };
        let others = under(parent).into_iter().any(|p| {
            !removed
                .iter()
                .any(|r| p == *r || p.starts_with(&format!("{r}/")))
        });
        if *has_methods || others {
            break;
        }
        steps.push(Deletion::Resource(id.clone()));
        removed.push(parent.to_owned());
        current = parent.to_owned();
    }
    steps
}

/// Whether a custom domain read back from API Gateway is the gateway's own.
///
/// The owner tag decides when it is there: ours, or another owner's and never
/// touched, whatever else is known. Without an owner tag, the domain is ours only if
/// the gateway recorded it: `created` is the regional domain name that
/// `CreateDomainName` answered, written to the gateway's status right after the call,
/// and the domain read must carry that same name. API Gateway returns the name
/// (`d-<id>.execute-api…`) when it creates the domain, so a domain we never created
/// matches nothing, and one someone else created under the hostname (say, after ours
/// was deleted by hand) would have to come back untagged with our id (AWS documents
/// no reuse of it; LocalStack derives it from the name). This keeps our domain ours
/// where its tags are not readable (AWS's tagging is eventually consistent;
/// LocalStack drops a domain's tags) and refuses everything else.
pub fn domain_owned(
    owner: &Owner,
    tags: &HashMap<String, String>,
    regional_domain_name: Option<&str>,
    created: Option<&str>,
    operation: &'static str,
    domain: &str,
) -> Result<(), AwsError> {
    if tags.contains_key(OWNER_TAG) {
        return owner.check(tags, APIGW, operation, "custom domain", domain);
    }
    match (regional_domain_name, created) {
        (Some(read), Some(recorded)) if !read.is_empty() && read == recorded => Ok(()),
        _ => owner.check(tags, APIGW, operation, "custom domain", domain),
    }
}

pub(super) fn authorization(auth: &RouteAuth) -> (&'static str, Option<&str>, bool) {
    match auth {
        RouteAuth::None => ("NONE", None, false),
        RouteAuth::ApiKey => ("NONE", None, true),
        RouteAuth::Cognito { authorizer_id, .. } => {
            ("COGNITO_USER_POOLS", Some(authorizer_id.as_str()), false)
        }
        RouteAuth::Lambda { authorizer_id } => ("CUSTOM", Some(authorizer_id.as_str()), false),
    }
}

/// A route's OAuth scopes (Cognito only).
pub(super) fn authorization_scopes(auth: &RouteAuth) -> Vec<String> {
    match auth {
        RouteAuth::Cognito { scopes, .. } => scopes.clone(),
        _ => Vec::new(),
    }
}

/// The `UpdateMethod` operations that give an existing `POST` method the route's
/// authorization (type, authorizer, API key, scopes); empty when it has it. The
/// change marker is the caller's to add.
pub fn method_patch_operations(current: &GetMethodOutput, auth: &RouteAuth) -> Vec<PatchOperation> {
    let (authorization_type, authorizer_id, api_key_required) = authorization(auth);
    let mut ops = Vec::new();
    if current.authorization_type.as_deref() != Some(authorization_type) {
        ops.push(replace(
            "/authorizationType".into(),
            authorization_type.into(),
        ));
    }
    if current.authorizer_id.as_deref() != authorizer_id {
        ops.push(replace(
            "/authorizerId".into(),
            authorizer_id.unwrap_or_default().into(),
        ));
    }
    if current.api_key_required.unwrap_or(false) != api_key_required {
        ops.push(replace(
            "/apiKeyRequired".into(),
            api_key_required.to_string(),
        ));
    }
    ops.extend(scope_ops(
        current.authorization_scopes.as_deref().unwrap_or_default(),
        &authorization_scopes(auth),
    ));
    ops
}

/// What a route's `POST` integration should be: an AWS integration posting the mapped
/// request to `sqs:SendMessage` under the gateway's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationSpec {
    /// `arn:PARTITION:apigateway:REGION:sqs:path/ACCOUNT/QUEUE`.
    pub uri: String,
    /// The role API Gateway assumes to send.
    pub role_arn: String,
    /// Request mapping templates by content type.
    pub templates: HashMap<String, String>,
}

/// The request parameter SQS's query API needs on the integration request, and its
/// value (a static value, hence the quotes).
pub const SQS_CONTENT_TYPE: (&str, &str) = (
    "integration.request.header.Content-Type",
    "'application/x-www-form-urlencoded'",
);

/// Whether the integration API Gateway holds is `desired`. `PutIntegration`
/// replaces an integration whole, so any part that differs (and no integration at
/// all) means putting it again; request parameters other than the content type are
/// not ours and do not count.
pub fn integration_matches(current: Option<&Integration>, desired: &IntegrationSpec) -> bool {
    let (parameter, value) = SQS_CONTENT_TYPE;
    current.is_some_and(|i| {
        i.r#type == Some(IntegrationType::Aws)
            && i.http_method.as_deref() == Some("POST")
            && i.uri.as_deref() == Some(desired.uri.as_str())
            && i.credentials.as_deref() == Some(desired.role_arn.as_str())
            && i.passthrough_behavior.as_deref() == Some("NEVER")
            && i.request_templates.as_ref() == Some(&desired.templates)
            && i.request_parameters
                .as_ref()
                .and_then(|p| p.get(parameter))
                .map(String::as_str)
                == Some(value)
    })
}

/// Whether an integration response API Gateway holds is `desired`: the same
/// selection pattern (a default response has none, which MiniStack spells `""`) and
/// the same `application/json` template.
pub fn integration_response_matches(
    current: Option<&IntegrationResponse>,
    desired: &RouteResponse,
) -> bool {
    current.is_some_and(|r| {
        r.selection_pattern.as_deref().filter(|p| !p.is_empty()) == desired.selection_pattern
            && r.response_templates
                .as_ref()
                .and_then(|t| t.get("application/json"))
                .map(String::as_str)
                == Some(desired.template)
    })
}

/// What a route's handshake `GET` needs to become what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeChange {
    /// It is as it should be.
    None,
    /// Only the integration response differs (a changed verify token, say):
    /// `PutIntegrationResponse`.
    Response,
    /// The method is missing, or is not an open `MOCK` with the handshake's headers:
    /// (delete it and) put it whole.
    Rebuild,
}

/// The change from the `GET` API Gateway holds (`None`: no `GET`) to the handshake
/// answered by `template` ([`crate::aws::templates::handshake_template`]): an open
/// method (providers send no credentials), a `MOCK` integration with
/// [`HANDSHAKE_REQUEST_TEMPLATE`], a 200 method response declaring
/// [`HANDSHAKE_HEADERS`], and a 200 integration response mapping them and rendering
/// `template`.
pub fn handshake_change(current: Option<&GetMethodOutput>, template: &str) -> HandshakeChange {
    let Some(method) = current else {
        return HandshakeChange::Rebuild;
    };
    let integration = method.method_integration.as_ref();
    let declared = method
        .method_responses
        .as_ref()
        .and_then(|r| r.get("200"))
        .and_then(|r| r.response_parameters.as_ref())
        .is_some_and(|p| HANDSHAKE_HEADERS.iter().all(|(h, _)| p.contains_key(*h)));
    let method_ok = method.authorization_type.as_deref() == Some("NONE")
        && !method.api_key_required.unwrap_or(false)
        && integration.is_some_and(|i| {
            i.r#type == Some(IntegrationType::Mock)
                && i.request_templates
                    .as_ref()
                    .and_then(|t| t.get("application/json"))
                    .map(String::as_str)
                    == Some(HANDSHAKE_REQUEST_TEMPLATE)
        })
        && declared;
    if !method_ok {
        return HandshakeChange::Rebuild;
    }
    let response = integration
        .and_then(|i| i.integration_responses.as_ref())
        .and_then(|r| r.get("200"));
    let response_ok = response.is_some_and(|r| {
        r.selection_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .is_none()
            && r.response_templates
                .as_ref()
                .and_then(|t| t.get("application/json"))
                .map(String::as_str)
                == Some(template)
            && r.response_parameters.as_ref().is_some_and(|p| {
                HANDSHAKE_HEADERS
                    .iter()
                    .all(|(h, v)| p.get(*h).map(String::as_str) == Some(*v))
            })
    });
    if response_ok {
        HandshakeChange::None
    } else {
        HandshakeChange::Response
    }
}

/// A stage's method-settings key for a resource path: `/` becomes `~1`.
fn settings_key(path: &str, method: &str) -> String {
    format!("{}/{method}", path.replace('/', "~1"))
}

/// The `UpdateStage` operations that make a stage's settings `spec`: the stage-wide
/// throttle (`*/*`), one override per listed route, the access log; and the removal
/// of every `POST` route override `spec` no longer lists, since the stage is the
/// gateway's and only the operator writes route settings on it (a Webhook that drops
/// its `throttling`, or is deleted, leaves none behind).
pub fn stage_patch_operations(
    settings: &HashMap<String, aws_sdk_apigateway::types::MethodSetting>,
    access_log: Option<&aws_sdk_apigateway::types::AccessLogSettings>,
    spec: &StageSpec,
) -> Vec<PatchOperation> {
    // AWS keys route settings as `~1a~1b/POST`; MiniStack decodes them to
    // `/a/b/POST`. Either spelling is the same setting.
    let current = |key: &str| {
        settings
            .get(key)
            .or_else(|| settings.get(&key.replace("~1", "/")))
    };
    let mut ops = Vec::new();
    let mut throttle = |key: String, rate: f64, burst: i32| {
        let setting = current(&key);
        if setting.is_none_or(|s| (s.throttling_rate_limit - rate).abs() > f64::EPSILON) {
            ops.push(replace(
                format!("/{key}/throttling/rateLimit"),
                rate.to_string(),
            ));
        }
        if setting.is_none_or(|s| s.throttling_burst_limit != burst) {
            ops.push(replace(
                format!("/{key}/throttling/burstLimit"),
                burst.to_string(),
            ));
        }
    };
    throttle("*/*".to_owned(), spec.rate_limit, spec.burst_limit);
    for (path, rate, burst) in &spec.route_throttling {
        throttle(settings_key(path, "POST"), *rate, *burst);
    }
    let mut stale: Vec<String> = settings
        .keys()
        .filter_map(|key| {
            let decoded = key.replace("~1", "/");
            let (path, method) = decoded.rsplit_once('/')?;
            (method == "POST" && path.starts_with('/')).then(|| path.to_owned())
        })
        .filter(|path| !spec.route_throttling.iter().any(|(p, _, _)| p == path))
        .collect();
    stale.sort_unstable();
    stale.dedup();
    for path in stale {
        // Removing `/{resourcePath}/{httpMethod}` drops the whole override, as
        // Terraform's aws_api_gateway_method_settings does on delete.
        ops.push(
            PatchOperation::builder()
                .op(Op::Remove)
                .path(format!("/{}", settings_key(&path, "POST")))
                .build(),
        );
    }
    if let Some((destination, format)) = &spec.access_log {
        if access_log.and_then(|c| c.destination_arn.as_deref()) != Some(destination.as_str()) {
            ops.push(replace(
                "/accessLogSettings/destinationArn".into(),
                destination.clone(),
            ));
        }
        if access_log.and_then(|c| c.format.as_deref()) != Some(format.as_str()) {
            ops.push(replace("/accessLogSettings/format".into(), format.clone()));
        }
    }
    ops
}

pub(super) fn replace(path: String, value: String) -> PatchOperation {
    PatchOperation::builder()
        .op(Op::Replace)
        .path(path)
        .value(value)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_apigateway::types::builders::IntegrationBuilder;

    #[test]
    fn a_domain_is_ours_by_its_tag_or_by_the_recorded_name_never_otherwise() {
        let owner = Owner {
            uid: "uid-ours".into(),
            resource: "WebhookGateway public".into(),
        };
        let tagged = |uid: &str| HashMap::from([(OWNER_TAG.to_owned(), uid.to_owned())]);
        let untagged = HashMap::new();
        let other_tags = HashMap::from([("team".to_owned(), "payments".to_owned())]);
        let ours = Some("d-ours.execute-api.us-east-1.amazonaws.com");
        let theirs = Some("d-theirs.execute-api.us-east-1.amazonaws.com");
        // (tags, regional name read, name recorded in status, ours?)
        let cases = [
            (tagged("uid-ours"), ours, None, true),
            (tagged("uid-ours"), theirs, ours, true),
            // Another owner's tag is never overridden by what status says.
            (tagged("uid-other"), ours, ours, false),
            (tagged("uid-other"), ours, None, false),
            (tagged(""), ours, ours, false),
            // No owner tag: only the domain the gateway recorded.
            (untagged.clone(), ours, ours, true),
            (other_tags.clone(), ours, ours, true),
            (untagged.clone(), theirs, ours, false),
            (untagged.clone(), ours, None, false),
            (other_tags, theirs, None, false),
            (untagged.clone(), None, ours, false),
            (untagged, Some(""), Some(""), false),
        ];
        for (tags, read, recorded, expected) in cases {
            let result = domain_owned(&owner, &tags, read, recorded, "GetDomainName", "hooks.x");
            assert_eq!(
                result.is_ok(),
                expected,
                "tags {tags:?}, read {read:?}, recorded {recorded:?}: {result:?}"
            );
            if let Err(e) = result {
                assert!(matches!(e, AwsError::NotOwned { .. }), "{e:?}");
            }
        }
    }

    #[test]
    fn route_deletion_keeps_other_routes_and_prunes_empty_segments() {
        let tree = |entries: &[(&str, bool)]| -> ResourceTree {
            entries
                .iter()
                .map(|(path, methods)| ((*path).to_owned(), (format!("id{path}"), *methods)))
                .collect()
        };
        let method = |p: &str| Deletion::Method(format!("id{p}"));
        let resource = |p: &str| Deletion::Resource(format!("id{p}"));
        let cases: Vec<(&str, ResourceTree, &str, Vec<Deletion>)> = vec![
            (
                "a parent route keeps its resource for the child route",
                tree(&[("/", true), ("/a", true), ("/a/b", true)]),
                "/a",
                vec![method("/a")],
            ),
            (
                "a leaf route goes with its now empty segments",
                tree(&[("/", true), ("/crash-a", false), ("/crash-a/x", true)]),
                "/crash-a/x",
                vec![resource("/crash-a/x"), resource("/crash-a")],
            ),
            (
                "pruning stops at a segment that is a route",
                tree(&[("/", true), ("/p", true), ("/p/q", false), ("/p/q/r", true)]),
                "/p/q/r",
                vec![resource("/p/q/r"), resource("/p/q")],
            ),
            (
                "pruning stops at a segment shared with another route",
                tree(&[
                    ("/", true),
                    ("/pay", false),
                    ("/pay/stripe", true),
                    ("/pay/adyen", true),
                ]),
                "/pay/stripe",
                vec![resource("/pay/stripe")],
            ),
            (
                "a child route: the parent route stays",
                tree(&[("/", true), ("/a", true), ("/a/b", true)]),
                "/a/b",
                vec![resource("/a/b")],
            ),
            (
                "already gone: the empty segments left behind go",
                tree(&[("/", true), ("/x", false), ("/x/y", false)]),
                "/x/y/z",
                vec![resource("/x/y"), resource("/x")],
            ),
            (
                "a parent with children and no POST left: nothing to do",
                tree(&[("/", true), ("/a", false), ("/a/b", true)]),
                "/a",
                vec![],
            ),
        ];
        for (name, tree, path, expected) in cases {
            assert_eq!(route_deletion(&tree, path), expected, "{name}");
        }
    }

    #[test]
    fn authorizer_changes_patch_what_aws_patches_and_replace_the_rest() {
        let lambda = |request: bool, function: &str, identity: &str, ttl: i32| {
            AuthorizerShape::of(&AuthorizerSpec::Lambda {
                name: "n".into(),
                function_arn: format!("arn:aws:lambda:eu-west-1:1:function:{function}"),
                request,
                identity_source: identity.into(),
                ttl_seconds: ttl,
            })
        };
        let cognito = |pools: &[&str]| {
            AuthorizerShape::of(&AuthorizerSpec::Cognito {
                name: "n".into(),
                user_pool_arns: pools.iter().map(|p| (*p).to_owned()).collect(),
            })
        };
        let patch = |ops: &[(&str, &str)]| {
            AuthorizerChange::Patch(
                ops.iter()
                    .map(|(path, value)| replace((*path).into(), (*value).into()))
                    .collect(),
            )
        };
        let header = "method.request.header.Authorization";
        let base = lambda(false, "a", header, 300);
        let cases = [
            ("same", base.clone(), AuthorizerChange::None),
            (
                "ttl",
                lambda(false, "a", header, 60),
                patch(&[("/authorizerResultTtlInSeconds", "60")]),
            ),
            (
                "identity source",
                lambda(false, "a", "method.request.header.X-Token", 300),
                patch(&[("/identitySource", "method.request.header.X-Token")]),
            ),
            (
                "function",
                lambda(false, "b", header, 300),
                patch(&[(
                    "/authorizerUri",
                    "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:b/invocations",
                )]),
            ),
            (
                "TOKEN to REQUEST",
                lambda(true, "a", header, 300),
                AuthorizerChange::Replace,
            ),
            (
                "Lambda to Cognito",
                cognito(&["p1"]),
                AuthorizerChange::Replace,
            ),
        ];
        for (name, desired, expected) in cases {
            assert_eq!(authorizer_change(&base, &desired), expected, "{name}");
        }
        assert_eq!(
            authorizer_change(&cognito(&["p1", "p2"]), &cognito(&["p2", "p1"])),
            AuthorizerChange::None,
            "user pools in another order"
        );
        assert_eq!(
            authorizer_change(&cognito(&["p1"]), &cognito(&["p1", "p2"])),
            AuthorizerChange::Replace,
            "a new user pool"
        );
    }

    #[test]
    fn scope_changes_add_and_remove_one_scope_each() {
        let scopes = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let ops = scope_ops(
            &scopes(&["orders/read", "orders/write"]),
            &scopes(&["orders/write", "admin"]),
        );
        let seen: Vec<(String, String)> = ops
            .iter()
            .map(|o| {
                (
                    format!("{:?}", o.op()),
                    format!(
                        "{}={}",
                        o.path().unwrap_or_default(),
                        o.value().unwrap_or_default()
                    ),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "Some(Remove)".to_owned(),
                    "/authorizationScopes=orders/read".to_owned()
                ),
                (
                    "Some(Add)".to_owned(),
                    "/authorizationScopes=admin".to_owned()
                ),
            ]
        );
        assert!(scope_ops(&scopes(&["a"]), &scopes(&["a"])).is_empty());
    }

    #[test]
    fn lambda_authorizer_uri_uses_the_function_region() {
        assert_eq!(
            lambda_authorizer_uri("arn:aws:lambda:eu-west-1:123456789012:function:auth"),
            "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:auth/invocations"
        );
        assert_eq!(
            lambda_authorizer_uri("arn:aws-us-gov:lambda:us-gov-west-1:1:function:auth"),
            "arn:aws-us-gov:apigateway:us-gov-west-1:lambda:path/2015-03-31/functions/arn:aws-us-gov:lambda:us-gov-west-1:1:function:auth/invocations"
        );
    }

    #[test]
    fn stage_patches_set_listed_overrides_and_remove_the_rest() {
        use aws_sdk_apigateway::types::MethodSetting;
        let setting = |rate: f64, burst: i32| {
            MethodSetting::builder()
                .throttling_rate_limit(rate)
                .throttling_burst_limit(burst)
                .build()
        };
        let spec = |routes: Vec<(&str, f64, i32)>| StageSpec {
            name: "live".to_owned(),
            rate_limit: 100.0,
            burst_limit: 200,
            route_throttling: routes
                .into_iter()
                .map(|(p, r, b)| (p.to_owned(), r, b))
                .collect(),
            access_log: None,
        };
        let ops = |current: Vec<(&str, MethodSetting)>, spec: &StageSpec| {
            let current: HashMap<String, MethodSetting> = current
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            stage_patch_operations(&current, None, spec)
                .into_iter()
                .map(|op| {
                    format!(
                        "{} {} {}",
                        op.op().map_or("?", Op::as_str),
                        op.path().unwrap_or_default(),
                        op.value().unwrap_or_default()
                    )
                    .trim_end()
                    .to_owned()
                })
                .collect::<Vec<_>>()
        };
        type Case = (
            &'static str,
            Vec<(&'static str, MethodSetting)>,
            StageSpec,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing differs",
                vec![("*/*", setting(100.0, 200)), ("~1a/POST", setting(5.0, 10))],
                spec(vec![("/a", 5.0, 10)]),
                vec![],
            ),
            (
                "a new override, and the stage-wide one set",
                vec![],
                spec(vec![("/a/b", 5.0, 10)]),
                vec![
                    "replace /*/*/throttling/rateLimit 100",
                    "replace /*/*/throttling/burstLimit 200",
                    "replace /~1a~1b/POST/throttling/rateLimit 5",
                    "replace /~1a~1b/POST/throttling/burstLimit 10",
                ],
            ),
            (
                "an override no Webhook asks for goes, in either spelling",
                vec![
                    ("*/*", setting(100.0, 200)),
                    ("~1a/POST", setting(5.0, 10)),
                    ("/b/c/POST", setting(1.0, 1)),
                ],
                spec(vec![]),
                vec!["remove /~1a/POST", "remove /~1b~1c/POST"],
            ),
            (
                "MiniStack's decoded key is the same setting",
                vec![("*/*", setting(100.0, 200)), ("/a/POST", setting(5.0, 10))],
                spec(vec![("/a", 5.0, 10)]),
                vec![],
            ),
        ];
        for (name, current, spec, expected) in cases {
            assert_eq!(ops(current, &spec), expected, "{name}");
        }
    }

    #[test]
    fn stage_setting_keys_escape_slashes() {
        assert_eq!(
            settings_key("/payments/stripe", "POST"),
            "~1payments~1stripe/POST"
        );
    }

    #[test]
    fn authorization_per_mode() {
        assert_eq!(authorization(&RouteAuth::None), ("NONE", None, false));
        assert_eq!(authorization(&RouteAuth::ApiKey), ("NONE", None, true));
        assert_eq!(
            authorization(&RouteAuth::Lambda {
                authorizer_id: "a1".into()
            }),
            ("CUSTOM", Some("a1"), false)
        );
    }

    /// A patch operation as `op path value`, for readable expectations.
    fn op_text(op: &PatchOperation) -> String {
        format!(
            "{} {} {}",
            op.op().map_or("?", Op::as_str),
            op.path().unwrap_or_default(),
            op.value().unwrap_or_default()
        )
        .trim_end()
        .to_owned()
    }

    #[test]
    fn stage_patches_follow_throttle_and_access_log_changes() {
        use aws_sdk_apigateway::types::{AccessLogSettings, MethodSetting};
        let setting = |rate: f64, burst: i32| {
            MethodSetting::builder()
                .throttling_rate_limit(rate)
                .throttling_burst_limit(burst)
                .build()
        };
        let log = |destination: &str, format: &str| {
            AccessLogSettings::builder()
                .destination_arn(destination)
                .format(format)
                .build()
        };
        let spec =
            |rate: f64, routes: &[(&str, f64, i32)], access_log: Option<(&str, &str)>| StageSpec {
                name: "live".to_owned(),
                rate_limit: rate,
                burst_limit: 200,
                route_throttling: routes
                    .iter()
                    .map(|(p, r, b)| ((*p).to_owned(), *r, *b))
                    .collect(),
                access_log: access_log.map(|(d, f)| (d.to_owned(), f.to_owned())),
            };
        let group = "arn:aws:logs:us-east-1:1:log-group:/hookline/gw";
        type Case = (
            &'static str,
            Vec<(&'static str, MethodSetting)>,
            Option<AccessLogSettings>,
            StageSpec,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "the stage-wide rate changed: only the rate is written",
                vec![("*/*", setting(100.0, 200))],
                None,
                spec(50.0, &[], None),
                vec!["replace /*/*/throttling/rateLimit 50"],
            ),
            (
                "a route's burst changed: only its burst is written",
                vec![("*/*", setting(100.0, 200)), ("~1a/POST", setting(5.0, 10))],
                None,
                spec(100.0, &[("/a", 5.0, 20)], None),
                vec!["replace /~1a/POST/throttling/burstLimit 20"],
            ),
            (
                "one route's override removed, the other kept",
                vec![
                    ("*/*", setting(100.0, 200)),
                    ("~1a/POST", setting(5.0, 10)),
                    ("~1b/POST", setting(7.0, 14)),
                ],
                None,
                spec(100.0, &[("/b", 7.0, 14)], None),
                vec!["remove /~1a/POST"],
            ),
            (
                "the last override removed; settings of other methods are not ours",
                vec![
                    ("*/*", setting(100.0, 200)),
                    ("~1a/POST", setting(5.0, 10)),
                    ("~1/GET", setting(1.0, 1)),
                ],
                None,
                spec(100.0, &[], None),
                vec!["remove /~1a/POST"],
            ),
            (
                "access logs turned on",
                vec![("*/*", setting(100.0, 200))],
                None,
                spec(100.0, &[], Some((group, "$context.requestId"))),
                vec![
                    "replace /accessLogSettings/destinationArn arn:aws:logs:us-east-1:1:log-group:/hookline/gw",
                    "replace /accessLogSettings/format $context.requestId",
                ],
            ),
            (
                "access logs unchanged",
                vec![("*/*", setting(100.0, 200))],
                Some(log(group, "$context.requestId")),
                spec(100.0, &[], Some((group, "$context.requestId"))),
                vec![],
            ),
            (
                "only the format changed",
                vec![("*/*", setting(100.0, 200))],
                Some(log(group, "$context.requestId")),
                spec(100.0, &[], Some((group, "$context.extendedRequestId"))),
                vec!["replace /accessLogSettings/format $context.extendedRequestId"],
            ),
            (
                // `None` also means "the log group or the account's CloudWatch role
                // could not be read this time": the stage's logs are left alone.
                "no access log in the spec leaves the stage's as they are",
                vec![("*/*", setting(100.0, 200))],
                Some(log(group, "$context.requestId")),
                spec(100.0, &[], None),
                vec![],
            ),
        ];
        for (name, current, access_log, spec, expected) in cases {
            let current: HashMap<String, MethodSetting> = current
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let ops: Vec<String> = stage_patch_operations(&current, access_log.as_ref(), &spec)
                .iter()
                .map(op_text)
                .collect();
            assert_eq!(ops, expected, "{name}");
        }
    }

    fn desired_integration() -> IntegrationSpec {
        IntegrationSpec {
            uri: "arn:aws:apigateway:us-east-1:sqs:path/1/hl-a.fifo".to_owned(),
            role_arn: "arn:aws:iam::1:role/hookline/hl-gw".to_owned(),
            templates: HashMap::from([
                (
                    "application/json".to_owned(),
                    "Action=SendMessage".to_owned(),
                ),
                ("text/plain".to_owned(), "Action=SendMessage".to_owned()),
            ]),
        }
    }

    /// The integration as Hookline puts it, changed by `edit`.
    fn integration(edit: impl FnOnce(IntegrationBuilder) -> IntegrationBuilder) -> Integration {
        let desired = desired_integration();
        let (parameter, value) = SQS_CONTENT_TYPE;
        edit(
            Integration::builder()
                .r#type(IntegrationType::Aws)
                .http_method("POST")
                .uri(desired.uri)
                .credentials(desired.role_arn)
                .passthrough_behavior("NEVER")
                .set_request_templates(Some(desired.templates))
                .request_parameters(parameter, value),
        )
        .build()
    }

    #[test]
    fn an_integration_matches_only_when_every_part_we_put_is_there() {
        let (parameter, _) = SQS_CONTENT_TYPE;
        let one_template = HashMap::from([(
            "application/json".to_owned(),
            "Action=SendMessage".to_owned(),
        )]);
        let cases: Vec<(&str, Option<Integration>, bool)> = vec![
            ("as put", Some(integration(|i| i)), true),
            ("no integration yet", None, false),
            (
                "another type",
                Some(integration(|i| i.r#type(IntegrationType::Http))),
                false,
            ),
            (
                "another backend method",
                Some(integration(|i| i.http_method("GET"))),
                false,
            ),
            (
                "another queue",
                Some(integration(|i| {
                    i.uri("arn:aws:apigateway:us-east-1:sqs:path/1/hl-b.fifo")
                })),
                false,
            ),
            (
                "another role",
                Some(integration(|i| i.credentials("arn:aws:iam::1:role/other"))),
                false,
            ),
            (
                "passthrough of unmapped content types",
                Some(integration(|i| i.passthrough_behavior("WHEN_NO_MATCH"))),
                false,
            ),
            (
                "a content type's template missing",
                Some(integration(|i| i.set_request_templates(Some(one_template)))),
                false,
            ),
            (
                "a template changed",
                Some(integration(|i| {
                    i.request_templates("text/plain", "Action=SendMessage&x")
                })),
                false,
            ),
            (
                "no Content-Type parameter",
                Some(integration(|i| i.set_request_parameters(None))),
                false,
            ),
            (
                "another Content-Type",
                Some(integration(|i| {
                    i.request_parameters(parameter, "'application/json'")
                })),
                false,
            ),
            (
                "another request parameter besides ours",
                Some(integration(|i| {
                    i.request_parameters("integration.request.header.X-Extra", "'1'")
                })),
                true,
            ),
        ];
        for (name, current, expected) in cases {
            assert_eq!(
                integration_matches(current.as_ref(), &desired_integration()),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn an_integration_response_matches_its_pattern_and_template() {
        use aws_sdk_apigateway::types::IntegrationResponse;
        let default = &crate::aws::templates::ROUTE_RESPONSES[0];
        let patterned = crate::aws::templates::ROUTE_RESPONSES
            .iter()
            .find(|r| r.selection_pattern.is_some())
            .expect("a response with a selection pattern");
        let response = |pattern: Option<&str>, body: &str| {
            IntegrationResponse::builder()
                .set_selection_pattern(pattern.map(str::to_owned))
                .response_templates("application/json", body)
                .build()
        };
        let cases = [
            (
                "default as put",
                default,
                Some(response(None, default.template)),
                true,
            ),
            (
                "default as MiniStack spells it",
                default,
                Some(response(Some(""), default.template)),
                true,
            ),
            ("missing", default, None, false),
            (
                "default given a pattern",
                default,
                Some(response(Some("5\\d{2}"), default.template)),
                false,
            ),
            ("another body", default, Some(response(None, "{}")), false),
            (
                "patterned as put",
                patterned,
                Some(response(patterned.selection_pattern, patterned.template)),
                true,
            ),
            (
                "pattern lost",
                patterned,
                Some(response(None, patterned.template)),
                false,
            ),
        ];
        for (name, desired, current, expected) in cases {
            assert_eq!(
                integration_response_matches(current.as_ref(), desired),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_handshake_get_is_rebuilt_unless_an_open_mock_and_its_response_is_put_alone() {
        use crate::aws::templates::{HANDSHAKE_HEADERS, HANDSHAKE_REQUEST_TEMPLATE};
        use aws_sdk_apigateway::types::{IntegrationResponse, MethodResponse};
        let get = |auth: &str, kind: IntegrationType, declared: bool, template: Option<&str>| {
            let mut response = MethodResponse::builder().status_code("200");
            if declared {
                for (header, _) in HANDSHAKE_HEADERS {
                    response = response.response_parameters(header, false);
                }
            }
            let mut integration = Integration::builder()
                .r#type(kind)
                .request_templates("application/json", HANDSHAKE_REQUEST_TEMPLATE);
            if let Some(template) = template {
                let mut answer = IntegrationResponse::builder()
                    .status_code("200")
                    .response_templates("application/json", template);
                for (header, value) in HANDSHAKE_HEADERS {
                    answer = answer.response_parameters(header, value);
                }
                integration = integration.integration_responses("200", answer.build());
            }
            GetMethodOutput::builder()
                .authorization_type(auth)
                .api_key_required(false)
                .method_responses("200", response.build())
                .method_integration(integration.build())
                .build()
        };
        let cases = [
            ("missing", None, HandshakeChange::Rebuild),
            (
                "as put",
                Some(get("NONE", IntegrationType::Mock, true, Some("t1"))),
                HandshakeChange::None,
            ),
            (
                "another token",
                Some(get("NONE", IntegrationType::Mock, true, Some("t0"))),
                HandshakeChange::Response,
            ),
            (
                "no integration response",
                Some(get("NONE", IntegrationType::Mock, true, None)),
                HandshakeChange::Response,
            ),
            (
                "headers not declared",
                Some(get("NONE", IntegrationType::Mock, false, Some("t1"))),
                HandshakeChange::Rebuild,
            ),
            (
                "not a MOCK",
                Some(get("NONE", IntegrationType::Http, true, Some("t1"))),
                HandshakeChange::Rebuild,
            ),
            (
                "behind an authorizer",
                Some(get("CUSTOM", IntegrationType::Mock, true, Some("t1"))),
                HandshakeChange::Rebuild,
            ),
        ];
        for (name, current, expected) in cases {
            assert_eq!(handshake_change(current.as_ref(), "t1"), expected, "{name}");
        }
    }

    #[test]
    fn method_patches_change_only_the_authorization_that_differs() {
        let method = |kind: &str, authorizer: Option<&str>, key: bool, scopes: &[&str]| {
            GetMethodOutput::builder()
                .authorization_type(kind)
                .set_authorizer_id(authorizer.map(str::to_owned))
                .api_key_required(key)
                .set_authorization_scopes(
                    (!scopes.is_empty()).then(|| scopes.iter().map(|s| (*s).to_owned()).collect()),
                )
                .build()
        };
        let cognito = |id: &str, scopes: &[&str]| RouteAuth::Cognito {
            authorizer_id: id.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let cases: Vec<(&str, GetMethodOutput, RouteAuth, Vec<&str>)> = vec![
            (
                "open, stays open",
                method("NONE", None, false, &[]),
                RouteAuth::None,
                vec![],
            ),
            (
                "an API key required",
                method("NONE", None, false, &[]),
                RouteAuth::ApiKey,
                vec!["replace /apiKeyRequired true"],
            ),
            (
                "API key to Lambda",
                method("NONE", None, true, &[]),
                RouteAuth::Lambda {
                    authorizer_id: "l1".into(),
                },
                vec![
                    "replace /authorizationType CUSTOM",
                    "replace /authorizerId l1",
                    "replace /apiKeyRequired false",
                ],
            ),
            (
                "a replaced authorizer: only its id",
                method("CUSTOM", Some("l1"), false, &[]),
                RouteAuth::Lambda {
                    authorizer_id: "l2".into(),
                },
                vec!["replace /authorizerId l2"],
            ),
            (
                "Cognito scopes changed",
                method("COGNITO_USER_POOLS", Some("c1"), false, &["a"]),
                cognito("c1", &["b"]),
                vec![
                    "remove /authorizationScopes a",
                    "add /authorizationScopes b",
                ],
            ),
            (
                "Cognito to open: the authorizer and its scopes go",
                method("COGNITO_USER_POOLS", Some("c1"), false, &["a"]),
                RouteAuth::None,
                vec![
                    "replace /authorizationType NONE",
                    "replace /authorizerId",
                    "remove /authorizationScopes a",
                ],
            ),
        ];
        for (name, current, auth, expected) in cases {
            let ops: Vec<String> = method_patch_operations(&current, &auth)
                .iter()
                .map(op_text)
                .collect();
            assert_eq!(ops, expected, "{name}");
        }
    }
}
