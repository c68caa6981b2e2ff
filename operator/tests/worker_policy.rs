//! The chart's worker policy evaluated by MiniStack's IAM engine (`AUTH=true`): a
//! namespace's workers reach their own queues and not those of a namespace whose name
//! starts with theirs (`team` vs `team-a`), which a `PREFIX-NAMESPACE-*` name pattern
//! allowed. The grant rests on the `hookline.dev/resource` tag the operator puts on
//! every queue (`Webhook <namespace>/<name>`), checked with `aws:ResourceTag`.
//!
//! One role for every namespace under EKS Pod Identity (ABAC on the
//! `kubernetes-namespace` session tag) and the IRSA role the operator makes per
//! namespace are checked the same way.
//!
//! MiniStack is started here with AUTH=true rather than through the bench, whose
//! MiniStack enforces no IAM; the `test`/`test` keys act as the account's root.

use anyhow::{Context as _, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::prelude::*;
use hookline_operator::aws::{
    AwsClients, Owner, QueuePairSpec, RateLimits, RetryPolicy, SqsQueues,
};
use hookline_operator::names;
use hookline_tests::process::{Supervised, free_port};
use hookline_tests::util::wait_for;
use std::collections::BTreeMap;
use std::time::Duration;

const ACCOUNT: &str = "000000000000";
const REGION: &str = hookline_tests::aws::REGION;
const PREFIX: &str = "hl";

async fn config(endpoint: &str, key: &str, secret: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "hookline-test"))
        .load()
        .await
}

fn pair(namespace: &str, name: &str) -> QueuePairSpec {
    QueuePairSpec {
        name: names::queue_base(PREFIX, namespace, name),
        content_based_deduplication: true,
        deduplication_scope: DedupScope::Queue,
        throughput_limit: FifoThroughputLimit::PerQueue,
        visibility_timeout_seconds: 60,
        message_retention_seconds: 345_600,
        dead_letter_retention_seconds: 1_209_600,
        max_receive_count: 5,
        tags: BTreeMap::new(),
        owner: Owner {
            uid: format!("uid-{namespace}-{name}"),
            resource: format!("Webhook {namespace}/{name}"),
        },
    }
}

/// The chart's worker policy for `namespace`, placeholders filled in.
fn worker_policy(namespace: &str) -> Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/hookline/files/worker-iam-policy.json"
    );
    Ok(std::fs::read_to_string(path)?
        .replace("PARTITION", "aws")
        .replace("REGION", REGION)
        .replace("ACCOUNT", ACCOUNT)
        .replace("PREFIX", PREFIX)
        .replace("NAMESPACE", namespace))
}

/// MiniStack with AUTH=true, alive as long as the value is.
struct Enforced {
    _ministack: Supervised,
    _dir: hookline_tests::Workdir,
    endpoint: String,
    root: SdkConfig,
}

async fn enforced() -> Result<Enforced> {
    let venv = hookline_tests::emulator_venv()?;
    let dir = hookline_tests::Workdir::create()?;
    let port = free_port()?.to_string();
    let scratch = dir.path().display().to_string();
    let s3 = dir.path().join("s3").display().to_string();
    let ministack = Supervised::spawn(
        "ministack-auth",
        &venv.join("ministack"),
        std::iter::empty::<&str>(),
        &[
            ("GATEWAY_PORT", &port),
            ("BIND_HOST", "127.0.0.1"),
            ("MINISTACK_HOST", "127.0.0.1"),
            ("MINISTACK_REGION", REGION),
            ("IOT_MTLS_ENABLED", "0"),
            ("SFTP_ENABLED", "0"),
            ("S3_DATA_DIR", &s3),
            ("TMPDIR", &scratch),
            ("AUTH", "true"),
        ],
        dir.path().join("ministack-auth.log"),
    )?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let root = config(&endpoint, "test", "test").await;
    let sqs = aws_sdk_sqs::Client::new(&root);
    wait_for(
        "MiniStack with AUTH=true",
        Duration::from_secs(60),
        || async { Ok(sqs.list_queues().send().await.is_ok()) },
    )
    .await?;
    Ok(Enforced {
        _ministack: ministack,
        _dir: dir,
        endpoint,
        root,
    })
}

/// Whether `sqs` may receive from `url`; any refusal other than for want of
/// permission fails the test.
async fn may_receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<bool> {
    match sqs.receive_message().queue_url(url).send().await {
        Ok(_) => Ok(true),
        Err(e) if format!("{e:?}").contains("AccessDenied") => Ok(false),
        Err(e) => Err(e).with_context(|| format!("receiving from {url}")),
    }
}

#[tokio::test]
async fn a_namespaces_workers_reach_only_its_queues() -> Result<()> {
    let enforced = enforced().await?;
    let (endpoint, root) = (enforced.endpoint.as_str(), enforced.root.clone());
    // The operator creates (and tags) both namespaces' queues.
    let clients = AwsClients::new(&root, &RateLimits::unlimited(), RetryPolicy::default());
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let own = queues.ensure_pair(&pair("team", "orders")).await?;
    let other = queues.ensure_pair(&pair("team-a", "orders")).await?;
    assert!(
        other.queue.arn.contains(&format!("{PREFIX}-team-a-")),
        "the other namespace's queue matches a name pattern for team: {}",
        other.queue.arn
    );

    // A worker identity of namespace `team`, with nothing but the chart's policy.
    let iam = aws_sdk_iam::Client::new(&root);
    iam.create_user().user_name("team-worker").send().await?;
    iam.put_user_policy()
        .user_name("team-worker")
        .policy_name("hookline-worker")
        .policy_document(worker_policy("team")?)
        .send()
        .await?;
    let key = iam
        .create_access_key()
        .user_name("team-worker")
        .send()
        .await?
        .access_key
        .context("access key")?;
    let worker = aws_sdk_sqs::Client::new(
        &config(endpoint, &key.access_key_id, &key.secret_access_key).await,
    );

    for url in [&own.queue.url, &own.dead_letter.url] {
        worker
            .receive_message()
            .queue_url(url)
            .send()
            .await
            .with_context(|| format!("team's worker may receive from {url}"))?;
    }
    worker
        .send_message()
        .queue_url(&own.dead_letter.url)
        .message_group_id("g")
        .message_deduplication_id("d1")
        .message_body("dead letter")
        .send()
        .await
        .context("team's worker may move a message to its dead-letter queue")?;
    for url in [&other.queue.url, &other.dead_letter.url] {
        let refused = worker.receive_message().queue_url(url).send().await;
        let error = refused.err().with_context(|| {
            format!("team's worker received from {url}, a queue of namespace team-a")
        })?;
        assert!(
            format!("{error:?}").contains("AccessDenied"),
            "refused for want of permission: {error:?}"
        );
    }
    Ok(())
}

/// The chart's Pod Identity worker policy, placeholders filled in; the policy
/// variable `${aws:PrincipalTag/kubernetes-namespace}` is left for IAM.
fn pod_identity_policy() -> Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/hookline/files/worker-iam-policy-pod-identity.json"
    );
    Ok(std::fs::read_to_string(path)?
        .replace("PARTITION", "aws")
        .replace("REGION", REGION)
        .replace("ACCOUNT", ACCOUNT)
        .replace("PREFIX", PREFIX))
}

const NAMESPACE_VARIABLE: &str = "${aws:PrincipalTag/kubernetes-namespace}";

/// `policy` with its one statement repeated per namespace in `namespaces`, the
/// policy variable replaced by the namespace and the statement conditioned on the
/// session tag having that value: what IAM's substitution amounts to for sessions of
/// those namespaces, in terms MiniStack evaluates (it does not substitute policy
/// variables; docs/emulators.md).
fn expanded_over(policy: &str, namespaces: &[&str]) -> Result<serde_json::Value> {
    let template: serde_json::Value = serde_json::from_str(policy)?;
    let statement = &template["Statement"][0];
    let mut statements = Vec::new();
    for namespace in namespaces {
        let mut one: serde_json::Value =
            serde_json::from_str(&statement.to_string().replace(NAMESPACE_VARIABLE, namespace))?;
        one["Sid"] = serde_json::json!(format!(
            "{}{}",
            statement["Sid"].as_str().unwrap_or_default(),
            namespace.replace('-', "")
        ));
        one["Condition"]["StringEquals"] =
            serde_json::json!({"aws:PrincipalTag/kubernetes-namespace": namespace});
        statements.push(one);
    }
    Ok(serde_json::json!({"Version": "2012-10-17", "Statement": statements}))
}

/// A session of `role` with the session tags EKS Pod Identity sets for a pod of
/// `namespace` (EKS user guide, "Grant Pods access to AWS resources based on tags":
/// eks-cluster-arn, eks-cluster-name, kubernetes-namespace, kubernetes-service-account,
/// kubernetes-pod-name, kubernetes-pod-uid), or none.
async fn pod_identity_session(
    endpoint: &str,
    root: &SdkConfig,
    role: &str,
    namespace: Option<&str>,
) -> Result<aws_sdk_sqs::Client> {
    use aws_sdk_sts::types::Tag;
    let mut tags = Vec::new();
    if let Some(namespace) = namespace {
        for (key, value) in [
            (
                "eks-cluster-arn",
                format!("arn:aws:eks:{REGION}:{ACCOUNT}:cluster/bench"),
            ),
            ("eks-cluster-name", "bench".to_owned()),
            ("kubernetes-namespace", namespace.to_owned()),
            ("kubernetes-service-account", "hookline-worker".to_owned()),
            ("kubernetes-pod-name", "orders-worker-0".to_owned()),
            (
                "kubernetes-pod-uid",
                "00000000-0000-0000-0000-000000000000".to_owned(),
            ),
        ] {
            tags.push(Tag::builder().key(key).value(value).build()?);
        }
    }
    let credentials = aws_sdk_sts::Client::new(root)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{role}"))
        .role_session_name("eks-bench-pod")
        .set_tags(Some(tags))
        .send()
        .await
        .context("AssumeRole with session tags")?
        .credentials
        .context("AssumeRole returned no credentials")?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            credentials.access_key_id,
            credentials.secret_access_key,
            Some(credentials.session_token),
            None,
            "hookline-test-session",
        ))
        .load()
        .await;
    Ok(aws_sdk_sqs::Client::new(&config))
}

/// One role for every team under EKS Pod Identity: a session reaches the queues of
/// the namespace in its `kubernetes-namespace` tag only, and a session without the
/// tag reaches none.
#[tokio::test]
async fn one_pod_identity_role_gives_each_namespace_only_its_queues() -> Result<()> {
    let enforced = enforced().await?;
    let (endpoint, root) = (enforced.endpoint.as_str(), &enforced.root);
    let clients = AwsClients::new(root, &RateLimits::unlimited(), RetryPolicy::default());
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let team = queues.ensure_pair(&pair("team", "orders")).await?;
    let team_a = queues.ensure_pair(&pair("team-a", "orders")).await?;

    // The role EKS Pod Identity assumes (here the account's root stands in for
    // pods.eks.amazonaws.com, which tags the session the same way).
    let iam = aws_sdk_iam::Client::new(root);
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]
    });
    iam.create_role()
        .role_name("hl-workers")
        .assume_role_policy_document(trust.to_string())
        .send()
        .await?;
    let put = |policy: String| {
        iam.put_role_policy()
            .role_name("hl-workers")
            .policy_name("hookline-worker")
            .policy_document(policy)
            .send()
    };

    // The chart's policy as IAM gets it: MiniStack leaves the variable unexpanded,
    // so no tag value matches and even the namespace's own queue is refused. When a
    // MiniStack release expands it, this fails: drop the expansion below.
    let policy = pod_identity_policy()?;
    assert!(policy.contains(NAMESPACE_VARIABLE));
    put(policy.clone()).await?;
    let session = pod_identity_session(endpoint, root, "hl-workers", Some("team")).await?;
    assert!(
        !may_receive(&session, &team.queue.url).await?,
        "MiniStack now expands policy variables; evaluate the chart's policy as it is"
    );

    put(expanded_over(&policy, &["team", "team-a"])?.to_string()).await?;
    for (namespace, own, other) in [("team", &team, &team_a), ("team-a", &team_a, &team)] {
        let session = pod_identity_session(endpoint, root, "hl-workers", Some(namespace)).await?;
        for url in [&own.queue.url, &own.dead_letter.url] {
            assert!(
                may_receive(&session, url).await?,
                "{namespace} may drain {url}"
            );
        }
        for url in [&other.queue.url, &other.dead_letter.url] {
            assert!(
                !may_receive(&session, url).await?,
                "{namespace} may not drain {url}"
            );
        }
    }
    let untagged = pod_identity_session(endpoint, root, "hl-workers", None).await?;
    for url in [&team.queue.url, &team_a.queue.url] {
        assert!(
            !may_receive(&untagged, url).await?,
            "a session without the tag reaches {url}"
        );
    }
    Ok(())
}

/// An unsigned JWT as a projected ServiceAccount token carries it (MiniStack reads
/// the claims without checking a signature, as the test needs).
fn service_account_token(issuer: &str, namespace: &str, account: &str) -> String {
    use base64::Engine as _;
    let encode = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2lnbmF0dXJl",
        encode(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        encode(serde_json::json!({
            "iss": format!("https://{issuer}"),
            // A string, not the one-element list Kubernetes writes: MiniStack
            // compares a list claim as its Python text (docs/emulators.md).
            "aud": "sts.amazonaws.com",
            "sub": format!("system:serviceaccount:{namespace}:{account}"),
        }))
    )
}

/// `AssumeRoleWithWebIdentity`, which AWS (and MiniStack) serve unsigned; the HTTP
/// status and body.
async fn assume_with_token(port: u16, role_arn: &str, token: &str) -> Result<(u16, String)> {
    let body = format!(
        "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=worker&RoleArn={}&WebIdentityToken={}",
        percent_encoding::utf8_percent_encode(role_arn, percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC),
    );
    hookline_tests::util::post(
        port,
        "127.0.0.1",
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &body,
    )
    .await
}

/// The IRSA role the operator makes for a namespace, with nothing but the chart's
/// operator policy: only that namespace's worker ServiceAccount may assume it, and
/// its sessions reach that namespace's queues only.
#[tokio::test]
async fn an_operator_made_irsa_role_serves_one_namespaces_service_account() -> Result<()> {
    let enforced = enforced().await?;
    let (endpoint, root) = (enforced.endpoint.as_str(), &enforced.root);
    let port: u16 = endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("port")?;
    let clients = AwsClients::new(root, &RateLimits::unlimited(), RetryPolicy::default());
    let queues = SqsQueues::new(clients.sqs.clone(), clients.caller.clone());
    let team = queues.ensure_pair(&pair("team", "orders")).await?;
    let team_a = queues.ensure_pair(&pair("team-a", "orders")).await?;
    let issuer = "oidc.eks.us-east-1.amazonaws.com/id/BENCH";
    let iam = aws_sdk_iam::Client::new(root);
    let provider = iam
        .create_open_id_connect_provider()
        .url(format!("https://{issuer}"))
        .client_id_list("sts.amazonaws.com")
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await?
        .open_id_connect_provider_arn
        .context("no provider ARN")?;

    // The operator, as an IAM user with the chart's policy (the IAM statements
    // widened path-less as MiniStack evaluates roles; tests/src/iam.rs).
    let operator_policy = hookline_tests::iam::chart_policy(
        "operator-iam-policy.json",
        &hookline_tests::iam::PolicyValues {
            region: REGION.to_owned(),
            account: ACCOUNT.to_owned(),
            prefix: PREFIX.to_owned(),
            zone_id: "Z0".to_owned(),
            namespace: String::new(),
        },
    )?;
    iam.create_user().user_name("operator").send().await?;
    iam.put_user_policy()
        .user_name("operator")
        .policy_name("only")
        .policy_document(
            hookline_tests::iam::as_evaluated_by(
                hookline_tests::EmulatorKind::MiniStack,
                &operator_policy,
            )
            .to_string(),
        )
        .send()
        .await?;
    let key = iam
        .create_access_key()
        .user_name("operator")
        .send()
        .await?
        .access_key
        .context("access key")?;
    let operator = AwsClients::new(
        &config(endpoint, &key.access_key_id, &key.secret_access_key).await,
        &RateLimits::unlimited(),
        RetryPolicy::default(),
    );
    let roles =
        hookline_operator::aws::IamRoles::new(operator.iam.clone(), operator.caller.clone());
    let spec = hookline_operator::aws::NamespaceRoleSpec {
        name: names::namespace_role(PREFIX, "team"),
        namespace: "team".to_owned(),
        service_account: "hookline-worker".to_owned(),
        oidc_provider_arn: provider.clone(),
        region: REGION.to_owned(),
        queue_prefix: PREFIX.to_owned(),
        owner: Owner {
            uid: "uid-namespace-team".to_owned(),
            resource: "Namespace team".to_owned(),
        },
    };
    let arn = roles.ensure_namespace_role(&spec).await?;
    // Every Webhook of the namespace ensures the role; a recent check is not repeated.
    let reads = |caller: &hookline_operator::aws::Caller| {
        caller.count(hookline_operator::aws::Service::Iam, "GetRole", "ok")
            + caller.count(hookline_operator::aws::Service::Iam, "GetRolePolicy", "ok")
    };
    let before = reads(&operator.caller);
    assert_eq!(arn, roles.ensure_namespace_role(&spec).await?, "idempotent");
    assert_eq!(
        reads(&operator.caller),
        before,
        "no IAM read for a role just checked"
    );
    let mut other = spec.clone();
    other.service_account = "other".to_owned();
    roles.ensure_namespace_role(&other).await?;
    assert!(
        reads(&operator.caller) > before,
        "a changed spec is checked again"
    );
    roles.ensure_namespace_role(&spec).await?;

    let (status, body) = assume_with_token(
        port,
        &arn,
        &service_account_token(issuer, "team", "hookline-worker"),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let field = |name: &str| -> Result<String> {
        let start = body
            .find(&format!("<{name}>"))
            .with_context(|| format!("no {name} in {body}"))?
            + name.len()
            + 2;
        let end = body[start..]
            .find(&format!("</{name}>"))
            .with_context(|| format!("no end of {name}"))?;
        Ok(body[start..start + end].to_owned())
    };
    let session = aws_sdk_sqs::Client::new(
        &aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                field("AccessKeyId")?,
                field("SecretAccessKey")?,
                Some(field("SessionToken")?),
                None,
                "hookline-test-irsa",
            ))
            .load()
            .await,
    );
    assert!(may_receive(&session, &team.queue.url).await?);
    assert!(may_receive(&session, &team.dead_letter.url).await?);
    assert!(!may_receive(&session, &team_a.queue.url).await?);

    for (namespace, account) in [("team-a", "hookline-worker"), ("team", "default")] {
        let (status, body) = assume_with_token(
            port,
            &arn,
            &service_account_token(issuer, namespace, account),
        )
        .await?;
        assert_eq!(
            status, 403,
            "{namespace}/{account} assumed team's role: {body}"
        );
    }

    roles.delete_namespace_role(&spec.name, &spec.owner).await?;
    let gone = iam.get_role().role_name(&spec.name).send().await;
    assert!(gone.is_err(), "the role is deleted");
    roles.delete_namespace_role(&spec.name, &spec.owner).await?;
    Ok(())
}
