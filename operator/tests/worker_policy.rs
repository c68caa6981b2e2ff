//! The chart's worker policy evaluated by MiniStack's IAM engine (`AUTH=true`): a
//! namespace's workers reach their own queues and not those of a namespace whose name
//! starts with theirs (`team` vs `team-a`), which a `PREFIX-NAMESPACE-*` name pattern
//! allowed. The grant rests on the `hookline.dev/resource` tag the operator puts on
//! every queue (`Webhook <namespace>/<name>`), checked with `aws:ResourceTag`.
//!
//! MiniStack is started here with AUTH=true rather than through the bench, whose
//! MiniStack enforces no IAM; the `test`/`test` keys act as the account's root.

use anyhow::{Context as _, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use hookline_crds::{DedupScope, FifoThroughputLimit};
use hookline_operator::aws::{
    AwsClients, Owner, QueuePairSpec, Queues, RateLimits, RetryPolicy, SqsQueues,
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

#[tokio::test]
async fn a_namespaces_workers_reach_only_its_queues() -> Result<()> {
    let venv = hookline_tests::emulator_venv()?;
    let dir = hookline_tests::Workdir::create()?;
    let port = free_port()?.to_string();
    let scratch = dir.path().display().to_string();
    let s3 = dir.path().join("s3").display().to_string();
    let _ministack = Supervised::spawn(
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
        &config(&endpoint, &key.access_key_id, &key.secret_access_key).await,
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
