//! Step 3 of a Webhook reconcile (pure): what each part should be, from the valid
//! spec and what was observed, built by [`crate::desired`]: the queue pair, the route
//! (its REST API, auth and template), the KEDA objects. Values that depend on what
//! AWS returns (the queue ARN in the route, the queue URL in the Deployment) are
//! filled in by [`Plan::route_spec`] and [`worker_deployment`], pure as well.

use hookline_crds::conditions::ROUTE_READY;
use hookline_crds::reasons::{GATEWAY_NOT_READY, INVALID_SPEC, SECRET_NOT_FOUND};
use hookline_crds::{
    AuthMode, HandshakeType, LambdaAuthorizerType, ScalingEngine, Webhook, WebhookGateway,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::super::index::authorizer_name;
use super::observe::Observed;
use super::validate::Valid;
use crate::aws::templates::{Handshake, RouteTemplate};
use crate::aws::{ApiRef, AuthorizerSpec, QueuePair, QueuePairSpec, RouteAuth, RouteSpec};
use crate::conditions::Report;
use crate::desired::{self, Settings};
use crate::names;

/// What the pass makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The queue and its dead-letter queue.
    pub queues: QueuePairSpec,
    /// The route, or why it cannot be built yet (the worker is built regardless).
    pub route: Result<RoutePlan, Report>,
    /// What to do about KEDA's objects.
    pub keda: KedaPlan,
    /// The name of the worker Deployment (and of the KEDA objects).
    pub worker_name: String,
}

/// The route in the gateway's REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    /// The gateway's name (it deploys the route and enforces the policy).
    pub gateway: String,
    /// The gateway's REST API.
    pub api: ApiRef,
    /// Its stage.
    pub stage: String,
    /// The role API Gateway assumes to send to SQS.
    pub role_arn: String,
    /// `POST` on this path.
    pub path: String,
    /// Group, dedup and forwarded headers.
    pub template: RouteTemplate,
    /// Caller authentication.
    pub auth: AuthPlan,
    /// The `GET` handshake the route answers, with its verify token.
    pub handshake: Option<Handshake>,
    /// The name the Webhook's authorizers carry (all but the one in use are deleted).
    pub authorizer_name: String,
    /// The source-IP allow list the gateway's resource policy must enforce.
    pub allow_list: Vec<String>,
    /// The public URL once the route is live.
    pub url: String,
}

/// How callers authenticate, and what that needs in AWS.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthPlan {
    /// Anyone.
    None,
    /// An API key in the REST API with the value of a Secret.
    ApiKey {
        /// The key's name in API Gateway.
        key_name: String,
        /// The value the Secret holds; `None` when the Secret (or its key) does not
        /// exist and a generated value is stored in a new one.
        value: Option<String>,
        /// The Secret and the key in it.
        secret: (String, String),
    },
    /// A Cognito authorizer.
    Cognito {
        /// The authorizer.
        authorizer: AuthorizerSpec,
        /// Required OAuth scopes.
        scopes: Vec<String>,
    },
    /// A Lambda authorizer, and a grant on the function for API Gateway.
    Lambda {
        /// The authorizer.
        authorizer: AuthorizerSpec,
        /// The function the grant is on.
        function_arn: String,
    },
}

/// KEDA's ScaledObject and TriggerAuthentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KedaPlan {
    /// KEDA is not installed and not asked for: nothing to do.
    Absent,
    /// Asked for, but not installed: the worker cannot be ready.
    Missing(Report),
    /// Asked for: apply both.
    Apply,
    /// Installed but not asked for (the built-in engine): KEDA must let go.
    Remove,
}

/// The plan for a valid `webhook`.
pub fn plan(webhook: &Webhook, valid: &Valid, observed: &Observed, settings: &Settings) -> Plan {
    let gateway = &valid.gateway;
    Plan {
        queues: desired::queue_pair(webhook, gateway, settings),
        route: route(webhook, gateway, observed, settings),
        keda: keda(webhook, observed.keda_installed),
        worker_name: desired::worker_name(webhook),
    }
}

fn route(
    webhook: &Webhook,
    gateway: &WebhookGateway,
    observed: &Observed,
    settings: &Settings,
) -> Result<RoutePlan, Report> {
    let gateway_status = gateway.status.clone().unwrap_or_default();
    let (Some(id), Some(root_resource_id), Some(role_arn), Some(stage)) = (
        gateway_status.rest_api_id,
        gateway_status.root_resource_id,
        gateway_status.role_arn,
        gateway_status.stage_name,
    ) else {
        return Err(Report::failed(
            ROUTE_READY,
            GATEWAY_NOT_READY,
            format!("WebhookGateway {} has no REST API yet", gateway.name_any()),
        ));
    };
    let base = gateway_status
        .url
        .unwrap_or_else(|| format!("https://{}", gateway.spec.hostname));
    Ok(RoutePlan {
        gateway: gateway.name_any(),
        api: ApiRef {
            id,
            root_resource_id,
        },
        stage,
        role_arn,
        path: webhook.spec.path.clone(),
        template: desired::route_template(webhook),
        auth: auth(webhook, observed, settings)?,
        handshake: handshake(webhook, observed)?,
        authorizer_name: authorizer_name(
            &webhook.namespace().unwrap_or_default(),
            &webhook.name_any(),
        ),
        allow_list: webhook.spec.auth.source_ip_allow_list.clone(),
        url: format!("{base}{}", webhook.spec.path),
    })
}

fn auth(webhook: &Webhook, observed: &Observed, settings: &Settings) -> Result<AuthPlan, Report> {
    let namespace = webhook.namespace().unwrap_or_default();
    let name = authorizer_name(&namespace, &webhook.name_any());
    let auth = &webhook.spec.auth;
    Ok(match auth.mode {
        AuthMode::None => AuthPlan::None,
        AuthMode::ApiKey => {
            let Some(api_key) = &auth.api_key else {
                return Err(Report::failed(
                    ROUTE_READY,
                    INVALID_SPEC,
                    "auth.apiKey is missing",
                ));
            };
            let reference = &api_key.secret_ref;
            let value = observed
                .api_key_secret
                .as_ref()
                .and_then(|read| read.data()?.get(&reference.key))
                .map(|value| String::from_utf8_lossy(&value.0).trim().to_owned());
            AuthPlan::ApiKey {
                key_name: names::webhook_api_key(
                    &settings.name_prefix,
                    &namespace,
                    &webhook.name_any(),
                ),
                value,
                secret: (reference.name.clone(), reference.key.clone()),
            }
        }
        AuthMode::Cognito => {
            let Some(cognito) = &auth.cognito else {
                return Err(Report::failed(
                    ROUTE_READY,
                    INVALID_SPEC,
                    "auth.cognito is missing",
                ));
            };
            AuthPlan::Cognito {
                authorizer: AuthorizerSpec::Cognito {
                    name,
                    user_pool_arns: cognito.user_pool_arns.clone(),
                },
                scopes: cognito.scopes.clone(),
            }
        }
        AuthMode::Lambda => {
            let Some(lambda) = &auth.lambda else {
                return Err(Report::failed(
                    ROUTE_READY,
                    INVALID_SPEC,
                    "auth.lambda is missing",
                ));
            };
            AuthPlan::Lambda {
                authorizer: AuthorizerSpec::Lambda {
                    name,
                    function_arn: lambda.function_arn.clone(),
                    request: lambda.kind == LambdaAuthorizerType::Request,
                    identity_source: lambda.identity_source.clone(),
                    ttl_seconds: lambda.result_ttl_seconds,
                },
                function_arn: lambda.function_arn.clone(),
            }
        }
    })
}

/// The handshake the route answers; Meta's with the token from its Secret (which
/// [`super::validate`] proved readable).
fn handshake(webhook: &Webhook, observed: &Observed) -> Result<Option<Handshake>, Report> {
    let Some(handshake) = &webhook.spec.handshake else {
        return Ok(None);
    };
    Ok(Some(match handshake.kind {
        HandshakeType::Dropbox => Handshake::Dropbox,
        HandshakeType::Meta => {
            let verify_token = handshake
                .verify_token_secret_ref
                .as_ref()
                .and_then(|reference| {
                    observed
                        .handshake_secret
                        .as_ref()?
                        .data()?
                        .get(&reference.key)
                })
                .map(desired::verify_token)
                .ok_or_else(|| {
                    Report::failed(
                        ROUTE_READY,
                        SECRET_NOT_FOUND,
                        "handshake.verifyTokenSecretRef: the verify token could not be read",
                    )
                })?;
            Handshake::Meta { verify_token }
        }
    }))
}

fn keda(webhook: &Webhook, installed: bool) -> KedaPlan {
    let wanted = webhook.spec.worker.scaling.engine == ScalingEngine::Keda;
    match (wanted, installed) {
        (true, false) => KedaPlan::Missing(Report::failed(
            hookline_crds::conditions::WORKER_READY,
            hookline_crds::reasons::KEDA_NOT_INSTALLED,
            format!(
                "scaling.engine is Keda, but the {} and {} CRDs are not both installed; install KEDA or use Builtin",
                desired::KEDA_CRD,
                desired::KEDA_TRIGGER_AUTHENTICATION_CRD
            ),
        )),
        (false, false) => KedaPlan::Absent,
        (true, true) => KedaPlan::Apply,
        (false, true) => KedaPlan::Remove,
    }
}

impl RoutePlan {
    /// The route as API Gateway gets it, once the queue and the auth exist.
    pub fn route_spec(&self, queue: &QueuePair, auth: RouteAuth) -> RouteSpec {
        RouteSpec {
            path: self.path.clone(),
            queue_arn: queue.queue.arn.clone(),
            role_arn: self.role_arn.clone(),
            template: self.template.clone(),
            auth,
            handshake: self.handshake.clone(),
        }
    }
}

/// The Secret that keeps a generated API key, owned by the Webhook.
pub fn api_key_secret(webhook: &Webhook, secret: &(String, String), value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret.0.clone()),
            namespace: webhook.namespace(),
            owner_references: webhook.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some([(secret.1.clone(), ByteString(value.as_bytes().to_vec()))].into()),
        ..Secret::default()
    }
}

/// The worker Deployment, once the queue pair and the ServiceAccount exist;
/// `public_url` is the route's (the presets that sign the URL need it).
pub fn worker_deployment(
    webhook: &Webhook,
    pair: &QueuePair,
    service_account: &str,
    settings: &Settings,
    public_url: Option<&str>,
) -> Deployment {
    desired::with_service_account(
        desired::worker_deployment(webhook, pair, settings, public_url),
        service_account,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookline_crds::reasons::KEDA_NOT_INSTALLED;

    fn webhook(extra: serde_json::Value) -> Webhook {
        let mut spec = serde_json::json!({
            "path": "/pay",
            "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}}}
        });
        if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": "w", "namespace": "n", "uid": "u"},
            "spec": spec,
        }))
        .expect("a valid Webhook")
    }

    fn gateway(status: serde_json::Value) -> WebhookGateway {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "WebhookGateway",
            "metadata": {"name": "gw", "uid": "g"},
            "spec": {"hostname": "hooks.example.com", "hostedZone": {"name": "example.com"}},
            "status": status,
        }))
        .expect("a valid WebhookGateway")
    }

    fn ready_gateway() -> WebhookGateway {
        gateway(serde_json::json!({
            "restApiId": "api1", "rootResourceId": "root", "roleArn": "arn:aws:iam::1:role/r",
            "stageName": "live"
        }))
    }

    fn observed(gateway: &WebhookGateway) -> Observed {
        Observed {
            gateway: Ok(gateway.clone()),
            namespace_labels: None,
            api_key_secret: None,
            signature_secret: None,
            handshake_secret: None,
            webhooks: Vec::new(),
            keda_installed: false,
        }
    }

    fn settings() -> Settings {
        Settings::for_tests()
    }

    fn plan_of(webhook: &Webhook, gateway: &WebhookGateway, observed: &Observed) -> Plan {
        let valid = Valid {
            gateway: gateway.clone(),
        };
        plan(webhook, &valid, observed, &settings())
    }

    #[test]
    fn a_route_waits_for_the_gateways_api_and_the_worker_does_not() {
        let gw = gateway(serde_json::json!({"restApiId": "api1"}));
        let plan = plan_of(&webhook(serde_json::json!({})), &gw, &observed(&gw));
        let blocked = plan.route.expect_err("no stage yet");
        assert_eq!(
            (blocked.type_, blocked.reason.as_str()),
            (ROUTE_READY, GATEWAY_NOT_READY)
        );
        assert_eq!(plan.worker_name, "w-worker");
        assert_eq!(plan.keda, KedaPlan::Absent);
    }

    #[test]
    fn the_route_comes_from_the_gateways_status() {
        let gw = ready_gateway();
        let route = plan_of(&webhook(serde_json::json!({})), &gw, &observed(&gw))
            .route
            .expect("a route");
        assert_eq!(route.api.id, "api1");
        assert_eq!(route.stage, "live");
        assert_eq!(route.url, "https://hooks.example.com/pay");
        assert_eq!(route.auth, AuthPlan::None);
        assert_eq!(route.authorizer_name, "n-w");
    }

    #[test]
    fn the_route_has_a_handshake_only_when_asked_and_its_token_is_part_of_the_route() {
        let gw = ready_gateway();
        let meta = webhook(serde_json::json!({
            "handshake": {"type": "Meta", "verifyTokenSecretRef": {"name": "hs", "key": "t"}}
        }));
        let with_token = |token: &[u8]| {
            let mut o = observed(&gw);
            o.handshake_secret = Some(super::super::observe::SecretRead::Found(
                [("t".to_owned(), ByteString(token.to_vec()))].into(),
            ));
            o
        };
        let route = |webhook: &Webhook, observed: &Observed| {
            plan_of(webhook, &gw, observed).route.expect("a route")
        };
        let plain = route(&webhook(serde_json::json!({})), &observed(&gw));
        assert_eq!(plain.handshake, None);
        let queue = QueuePair {
            queue: crate::aws::QueueRef {
                url: "u".into(),
                arn: "arn:aws:sqs:us-east-1:1:q.fifo".into(),
            },
            dead_letter: crate::aws::QueueRef {
                url: "d".into(),
                arn: "arn:aws:sqs:us-east-1:1:d.fifo".into(),
            },
        };
        assert_eq!(
            plain.route_spec(&queue, RouteAuth::None).handshake,
            None,
            "no GET without a handshake"
        );
        let first = route(&meta, &with_token(b"tok-1\n"));
        assert_eq!(
            first.handshake,
            Some(Handshake::Meta {
                verify_token: "tok-1".into()
            }),
            "trimmed"
        );
        let second = route(&meta, &with_token(b"tok-2"));
        assert_ne!(
            first.route_spec(&queue, RouteAuth::None),
            second.route_spec(&queue, RouteAuth::None),
            "a new token is a route change"
        );
        let dropbox = route(
            &webhook(serde_json::json!({"handshake": {"type": "Dropbox"}})),
            &observed(&gw),
        );
        assert_eq!(dropbox.handshake, Some(Handshake::Dropbox));
        let unread = plan_of(&meta, &gw, &observed(&gw))
            .route
            .expect_err("no token read");
        assert_eq!(unread.reason, SECRET_NOT_FOUND);
    }

    #[test]
    fn auth_per_mode() {
        let gw = ready_gateway();
        let keyed = webhook(serde_json::json!({
            "auth": {"type": "ApiKey", "apiKey": {"secretRef": {"name": "key", "key": "k"}}}
        }));
        let mut with_secret = observed(&gw);
        with_secret.api_key_secret = Some(super::super::observe::SecretRead::Found(
            [("k".to_owned(), ByteString(b" s3cret\n".to_vec()))].into(),
        ));
        let lambda = webhook(serde_json::json!({
            "auth": {"type": "Lambda", "lambda": {"functionArn": "arn:aws:lambda:us-east-1:1:function:f"}}
        }));
        let cognito = webhook(serde_json::json!({
            "auth": {"type": "Cognito", "cognito": {"userPoolArns": ["arn:p"], "scopes": ["s"]}}
        }));
        let auth = |webhook: &Webhook, observed: &Observed| {
            plan_of(webhook, &gw, observed).route.expect("a route").auth
        };
        match auth(&keyed, &with_secret) {
            AuthPlan::ApiKey { value, secret, .. } => {
                assert_eq!(value.as_deref(), Some("s3cret"), "trimmed");
                assert_eq!(secret, ("key".to_owned(), "k".to_owned()));
            }
            other => panic!("{other:?}"),
        }
        match auth(&keyed, &observed(&gw)) {
            AuthPlan::ApiKey { value, .. } => assert_eq!(value, None, "generated later"),
            other => panic!("{other:?}"),
        }
        match auth(&lambda, &observed(&gw)) {
            AuthPlan::Lambda {
                authorizer: AuthorizerSpec::Lambda { name, .. },
                function_arn,
            } => {
                assert_eq!(name, "n-w");
                assert!(function_arn.ends_with(":function:f"));
            }
            other => panic!("{other:?}"),
        }
        match auth(&cognito, &observed(&gw)) {
            AuthPlan::Cognito { scopes, .. } => assert_eq!(scopes, ["s"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keda_objects_follow_the_engine_and_the_crds() {
        let builtin = webhook(serde_json::json!({}));
        let keda_wanted = webhook(serde_json::json!({
            "worker": {"template": {"spec": {"containers": [{"name": "h", "image": "h"}]}},
                       "scaling": {"engine": "Keda"}}
        }));
        assert_eq!(keda(&builtin, false), KedaPlan::Absent);
        assert_eq!(keda(&builtin, true), KedaPlan::Remove);
        assert_eq!(keda(&keda_wanted, true), KedaPlan::Apply);
        match keda(&keda_wanted, false) {
            KedaPlan::Missing(report) => assert_eq!(report.reason, KEDA_NOT_INSTALLED),
            other => panic!("{other:?}"),
        }
    }
}
