//! The operator binary under process faults, on a bench of its own (a real API server
//! and MiniStack): SIGKILLs at seeded moments while 50 Webhooks are created and then
//! deleted; the API server and etcd away for 30 s; two replicas and the Lease, with the
//! leader killed and then cut off from the API server. Fault tests: slow, run by
//! `make test-faults` (`cargo test -p hookline-operator --test kills -- --ignored`).
//!
//! What AWS holds is counted on the emulator: queues by the operator's owner tag
//! (`hookline.dev/owner` = the Webhook's uid; every queue carries it), routes by path
//! under the gateway's REST API (API Gateway resources and methods carry no tags;
//! the REST API does, and is counted by it too).
//!
//! Seeds: `HOOKLINE_FAULT_SEED` replays a run; otherwise the seed is the clock's, and
//! printed first.

use anyhow::{Context as _, Result, bail};
use hookline_crds::Webhook;
use hookline_operator::aws::{AwsClients, OWNER_TAG, RateLimits, RetryPolicy};
use hookline_tests::EmulatorKind;
use hookline_tests::process::Supervised;
use hookline_tests::stack::{Stack, workspace_binary};
use hookline_tests::util::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One fault test at a time in this binary: each runs a whole stack, and two at once
/// on this machine's cores would measure the machine, not the operator.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MANAGER: &str = "hookline-kills";

/// SplitMix64: enough randomness for fault moments, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Result<Self> {
        let seed = match std::env::var("HOOKLINE_FAULT_SEED") {
            Ok(seed) => seed
                .parse()
                .with_context(|| format!("HOOKLINE_FAULT_SEED={seed} is not a u64"))?,
            Err(_) => u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos()
                    % u128::from(u64::MAX),
            )?,
        };
        eprintln!("{test}: HOOKLINE_FAULT_SEED={seed}");
        Ok(Self(seed))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration uniform in [low, high).
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from((high - low).as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        low + Duration::from_millis(self.next() % span)
    }
}

fn webhook(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayRef": {"name": "public"},
            "path": format!("/{namespace}/{name}"),
            "ordering": {"type": "BodyField", "bodyField": "$.data.object.customer"},
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook", "keys": ["signing-secret"]}},
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    })
}

/// A namespace the sample gateway admits, with the Webhooks' signing Secret.
async fn namespace(stack: &Stack, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": {"hookline.dev/webhooks": "allowed"}}}),
    )?;
    Api::<Namespace>::all(stack.client.clone())
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    stack
        .put_secret(name, ("stripe-webhook", "signing-secret", "whsec_kills"))
        .await
}

/// Plays the kubelet for every worker Deployment in `namespace`: reports what it asks
/// for as ready. Runs until aborted; errors (the API server away) are retried.
fn play_kubelet(client: kube::Client, namespace: &str) -> tokio::task::JoinHandle<()> {
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = deployments.list(&ListParams::default()).await {
                for deployment in list {
                    let want = deployment.spec.replicas.unwrap_or(1);
                    let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas);
                    if ready == Some(want) {
                        continue;
                    }
                    let name = deployment.metadata.name.unwrap_or_default();
                    let status = json!({"status": {"replicas": want, "readyReplicas": want, "availableReplicas": want, "updatedReplicas": want}});
                    let _ = deployments
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn is_ready(webhook: &Webhook) -> bool {
    webhook.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn clients(stack: &Stack) -> AwsClients {
    AwsClients::new(&stack.sdk, &RateLimits::unlimited(), RetryPolicy::default())
}

/// Every SQS queue on the emulator, as (URL, owner tag).
async fn queues_by_owner(clients: &AwsClients) -> Result<Vec<(String, Option<String>)>> {
    let mut urls = Vec::new();
    let mut token = None;
    for _ in 0..100 {
        let page = clients
            .sqs
            .list_queues()
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .context("listing queues")?;
        urls.extend(page.queue_urls.unwrap_or_default());
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut out = Vec::new();
    for url in urls {
        let tags = clients
            .sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .with_context(|| format!("listing the tags of {url}"))?
            .tags
            .unwrap_or_default();
        out.push((url, tags.get(OWNER_TAG).cloned()));
    }
    Ok(out)
}

/// Every resource of the REST API `api_id`, as (path, has a POST method).
async fn resources(clients: &AwsClients, api_id: &str) -> Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    let mut position = None;
    for _ in 0..100 {
        let page = clients
            .apigateway
            .get_resources()
            .rest_api_id(api_id)
            .limit(500)
            .set_position(position.take())
            .send()
            .await
            .with_context(|| format!("listing the resources of {api_id}"))?;
        for resource in page.items.unwrap_or_default() {
            let post = resource
                .resource_methods
                .as_ref()
                .is_some_and(|m| m.contains_key("POST"));
            out.push((resource.path.unwrap_or_default(), post));
        }
        position = page.position;
        if position.is_none() {
            break;
        }
    }
    Ok(out)
}

/// REST APIs whose owner tag is `uid`.
async fn rest_apis_of(clients: &AwsClients, uid: &str) -> Result<usize> {
    let apis = clients
        .apigateway
        .get_rest_apis()
        .limit(500)
        .send()
        .await
        .context("listing REST APIs")?
        .items
        .unwrap_or_default();
    Ok(apis
        .iter()
        .filter(|a| {
            a.tags
                .as_ref()
                .and_then(|t| t.get(OWNER_TAG))
                .map(String::as_str)
                == Some(uid)
        })
        .count())
}

/// SIGKILLs the operator and starts it again, as a crash and the kubelet's restart.
fn crash_and_restart(operator: &mut Supervised) -> Result<()> {
    operator.kill()?;
    operator.restart()
}

/// Creates (or deletes) `names` at seeded intervals on a task of its own, so that the
/// kills land between and during the requests.
fn paced<F, Fut>(
    names: Vec<String>,
    gaps: Vec<Duration>,
    mut each: F,
) -> tokio::task::JoinHandle<Result<()>>
where
    F: FnMut(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        for (name, gap) in names.into_iter().zip(gaps) {
            tokio::time::sleep(gap).await;
            // The API server is always up in this test; a refusal is a failure.
            each(name).await?;
        }
        Ok(())
    })
}

#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn fifty_webhooks_created_and_deleted_through_twenty_five_sigkills() -> Result<()> {
    const WEBHOOKS: usize = 50;
    const CREATE_KILLS: usize = 20;
    const DELETE_KILLS: usize = 5;
    const NS: &str = "kills";
    let _serial = SERIAL.lock().await;
    let mut rng = Rng::from_env("fifty_webhooks")?;
    let mut stack = Stack::start(EmulatorKind::MiniStack).await?;
    let gateway = stack.gateway().await?;
    let api_id = gateway
        .status
        .as_ref()
        .and_then(|s| s.rest_api_id.clone())
        .context("the gateway's REST API")?;
    let gateway_uid = gateway.metadata.uid.clone().unwrap_or_default();
    namespace(&stack, NS).await?;
    let kubelet = play_kubelet(stack.client.clone(), NS);
    let webhooks: Api<Webhook> = Api::namespaced(stack.client.clone(), NS);
    let aws = clients(&stack);
    let names: Vec<String> = (0..WEBHOOKS).map(|i| format!("w{i:02}")).collect();

    // Creation: one Webhook every 0–600 ms, while the operator is killed every
    // 0.5–4 s (the first kills land while Webhooks are still being applied).
    let started = Instant::now();
    let create_gaps = (0..WEBHOOKS)
        .map(|_| rng.between(Duration::ZERO, Duration::from_millis(600)))
        .collect();
    let creator = {
        let webhooks = webhooks.clone();
        paced(names.clone(), create_gaps, move |name| {
            let webhooks = webhooks.clone();
            async move {
                webhooks
                    .patch(
                        &name,
                        &PatchParams::apply(MANAGER),
                        &Patch::Apply(&webhook(NS, &name)),
                    )
                    .await
                    .with_context(|| format!("applying Webhook {name}"))?;
                Ok(())
            }
        })
    };
    let mut kill_moments = Vec::new();
    for _ in 0..CREATE_KILLS {
        tokio::time::sleep(rng.between(Duration::from_millis(500), Duration::from_secs(4))).await;
        kill_moments.push(started.elapsed());
        crash_and_restart(stack.operator_mut())?;
    }
    creator.await.context("the creating task")??;
    let last_kill = started.elapsed();
    let ready_count = || async {
        let list = webhooks.list(&ListParams::default()).await?;
        Ok::<_, anyhow::Error>(list.items.iter().filter(|w| is_ready(w)).count())
    };
    let waited = wait_alive(
        &mut stack,
        "all 50 Webhooks Ready",
        Duration::from_secs(420),
        || async { Ok(ready_count().await? == WEBHOOKS) },
    )
    .await;
    let converged = started.elapsed();
    waited.with_context(|| {
        format!(
            "{} of {WEBHOOKS} Ready; operator log:\n{}",
            "some",
            stack.operator().log_tail(40)
        )
    })?;

    // Exactly one queue pair and one route per Webhook, and one REST API.
    let list = webhooks.list(&ListParams::default()).await?;
    let uids: HashMap<String, String> = list
        .items
        .iter()
        .map(|w| {
            (
                w.metadata.uid.clone().unwrap_or_default(),
                w.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    let queues = queues_by_owner(&aws).await?;
    let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
    for (_, owner) in &queues {
        if let Some(owner) = owner {
            *per_owner.entry(owner.clone()).or_default() += 1;
        }
    }
    let routes = resources(&aws, &api_id).await?;
    let mut duplicates = 0;
    let mut problems = Vec::new();
    for (uid, name) in &uids {
        let pairs = per_owner.get(uid).copied().unwrap_or(0);
        if pairs != 2 {
            problems.push(format!(
                "{name}: {pairs} queues tagged with its uid (want 2)"
            ));
        }
        duplicates += pairs.saturating_sub(2);
        let path = format!("/{NS}/{name}");
        let posts = routes
            .iter()
            .filter(|(p, post)| *p == path && *post)
            .count();
        if posts != 1 {
            problems.push(format!("{name}: {posts} POST routes at {path} (want 1)"));
        }
        duplicates += posts.saturating_sub(1);
    }
    let foreign: Vec<&String> = per_owner
        .keys()
        .filter(|o| !uids.contains_key(*o))
        .collect();
    let apis = rest_apis_of(&aws, &gateway_uid).await?;
    eprintln!(
        "fifty_webhooks creation: {WEBHOOKS} Webhooks Ready {converged:?} after the first apply, {:?} after the last of {CREATE_KILLS} SIGKILLs (at {kill_moments:?}); duplicates found: {duplicates}; queues tagged by no live Webhook: {}; REST APIs of the gateway: {apis}",
        converged - last_kill,
        foreign.len()
    );
    assert!(problems.is_empty(), "after creation: {problems:#?}");
    assert_eq!(duplicates, 0);
    assert!(
        foreign.is_empty(),
        "queues owned by no Webhook: {foreign:?}"
    );
    assert_eq!(apis, 1, "one REST API for the gateway");

    // Deletion: all 50 deleted 0–300 ms apart, under 5 more kills 1–4 s apart.
    let deleting = Instant::now();
    let delete_gaps = (0..WEBHOOKS)
        .map(|_| rng.between(Duration::ZERO, Duration::from_millis(300)))
        .collect();
    let deleter = {
        let webhooks = webhooks.clone();
        paced(names.clone(), delete_gaps, move |name| {
            let webhooks = webhooks.clone();
            async move {
                webhooks
                    .delete(&name, &DeleteParams::default())
                    .await
                    .with_context(|| format!("deleting Webhook {name}"))?;
                Ok(())
            }
        })
    };
    for _ in 0..DELETE_KILLS {
        tokio::time::sleep(rng.between(Duration::from_secs(1), Duration::from_secs(4))).await;
        crash_and_restart(stack.operator_mut())?;
    }
    deleter.await.context("the deleting task")??;
    // A Webhook is gone from the API server only once its finalizer is removed.
    let waited = wait_alive(
        &mut stack,
        "all Webhooks gone",
        Duration::from_secs(300),
        || async {
            Ok(webhooks
                .list(&ListParams::default())
                .await?
                .items
                .is_empty())
        },
    )
    .await;
    let gone_after = deleting.elapsed();
    waited.with_context(|| format!("operator log:\n{}", stack.operator().log_tail(40)))?;
    let left_queues: Vec<String> = queues_by_owner(&aws)
        .await?
        .into_iter()
        .filter(|(_, owner)| owner.as_ref().is_some_and(|o| uids.contains_key(o)))
        .map(|(url, _)| url)
        .collect();
    let prefix = format!("/{NS}/");
    let left_routes: Vec<String> = resources(&aws, &api_id)
        .await?
        .into_iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .map(|(path, _)| path)
        .collect();
    eprintln!(
        "fifty_webhooks deletion: all gone (finalizers removed) {gone_after:?} after the first delete, through {DELETE_KILLS} SIGKILLs; queues left: {}, routes left: {}",
        left_queues.len(),
        left_routes.len()
    );
    assert!(left_queues.is_empty(), "queues left: {left_queues:?}");
    assert!(left_routes.is_empty(), "routes left: {left_routes:?}");
    kubelet.abort();
    Ok(())
}

/// Polls `check` every 500 ms until it holds, for at most `timeout`; fails at once
/// when the operator process exits by itself (the test restarts it only after a kill
/// of its own).
async fn wait_alive<F, Fut>(
    stack: &mut Stack,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = stack.operator_mut().exited()? {
            bail!(
                "the operator exited by itself ({status}) while waiting for {what}:\n{}",
                stack.operator().log_tail(40)
            );
        }
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The body of `GET /metrics` on `addr` (HTTP/1.0, so the server closes).
async fn metrics(addr: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}"))??;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
        .await
        .with_context(|| format!("reading {addr}/metrics"))??;
    let (_, body) = response.split_once("\r\n\r\n").context("no HTTP body")?;
    Ok(body.to_owned())
}

/// When, and what each replica said ([`replica_state`] of A, then B).
type Sample = (Duration, Option<(i64, u64)>, Option<(i64, u64)>);

/// What one replica's /metrics says: (leader gauge, AWS calls made so far). `None`
/// when it does not answer (killed, or not yet serving).
async fn replica_state(addr: &str) -> Option<(i64, u64)> {
    let text = metrics(addr).await.ok()?;
    let mut leader = 0;
    let mut calls = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("hookline_operator_leader ") {
            leader = v.trim().parse().unwrap_or(0);
        } else if line.starts_with("hookline_aws_calls_total{") {
            calls += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as u64);
        }
    }
    Some((leader, calls))
}

/// A handler that records every body it is given.
async fn recording_handler() -> Result<(String, Arc<Mutex<Vec<String>>>)> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(String::from_utf8_lossy(&body).into_owned());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

/// A worker process for `webhook` (its queues from the status), with no signature
/// check: the test sends straight to the queue.
fn worker(stack: &Stack, webhook: &Webhook, handler: &str) -> Result<Supervised> {
    let status = webhook.status.clone().unwrap_or_default();
    let queue = status.queue.context("the Webhook's queue")?.url;
    let dlq = status.dead_letter_queue.context("the Webhook's DLQ")?.url;
    let mut env: Vec<(String, String)> = stack
        .env()
        .into_iter()
        .filter(|(k, _)| k != "KUBECONFIG")
        .collect();
    env.extend(
        [
            ("HOOKLINE_QUEUE_URL", queue.as_str()),
            ("HOOKLINE_DEAD_LETTER_QUEUE_URL", dlq.as_str()),
            ("HOOKLINE_HANDLER_URL", handler),
            ("HOOKLINE_METRICS_ADDR", "127.0.0.1:0"),
            ("HOOKLINE_LOG_FORMAT", "text"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Supervised::spawn(
        "hookline-worker",
        &workspace_binary("hookline-worker")?,
        ["run"],
        &env,
        stack.bench.workdir().join("worker.log"),
    )
}

/// The queue's VisibilityTimeout attribute.
async fn visibility(aws: &AwsClients, queue: &str) -> Result<Option<String>> {
    let name = aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout;
    Ok(aws
        .sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(name.clone())
        .send()
        .await
        .with_context(|| format!("reading the attributes of {queue}"))?
        .attributes
        .unwrap_or_default()
        .remove(&name))
}

const LEADER_ENV: [(&str, &str); 2] = [
    ("HOOKLINE_LEADER_ELECTION", "true"),
    ("POD_NAMESPACE", "default"),
];

#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn the_api_server_away_for_thirty_seconds() -> Result<()> {
    const NS: &str = "outage";
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start_with(
        EmulatorKind::MiniStack,
        &[LEADER_ENV[0], LEADER_ENV[1], ("POD_NAME", "operator-a")],
    )
    .await?;
    stack.gateway().await?;
    namespace(&stack, NS).await?;
    let before = stack
        .webhook(
            webhook(NS, "before"),
            ("stripe-webhook", "signing-secret", "whsec_kills"),
        )
        .await?;
    let (handler, seen) = recording_handler().await?;
    let mut worker = worker(&stack, &before, &handler)?;
    let queue = before
        .status
        .clone()
        .unwrap_or_default()
        .queue
        .context("queue")?
        .url;
    let aws = clients(&stack);

    // Messages go into the queue all along, by a client that needs no API server.
    let sent: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let sender = {
        let sqs = aws.sqs.clone();
        let sent = sent.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            for n in 0..10_000u32 {
                let body = format!(
                    "{{\"data\":{{\"object\":{{\"customer\":\"c{}\",\"n\":{n}}}}}}}",
                    n % 4
                );
                let ok = sqs
                    .send_message()
                    .queue_url(&queue)
                    .message_group_id(format!("c{}", n % 4))
                    .message_deduplication_id(format!("m{n}"))
                    .message_body(&body)
                    .send()
                    .await
                    .is_ok();
                if ok {
                    sent.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((Instant::now(), body));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A change made just before the outage: a longer visibility timeout.
    let webhooks: Api<Webhook> = Api::namespaced(stack.client.clone(), NS);
    // A merge patch (not apply) so the field is set whatever manager set the rest.
    webhooks
        .patch(
            "before",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"delivery": {"visibilityTimeoutSeconds": 45}}})),
        )
        .await
        .context("changing the visibility timeout")?;
    stack.bench.kube.stop()?;
    let outage = Instant::now();
    let applied_before = visibility(&aws, &queue).await?.as_deref() == Some("45");
    let seen_at_outage = seen.lock().unwrap_or_else(PoisonError::into_inner).len();

    // 3 s in, the leader is stopped with SIGTERM: it must exit promptly although it
    // can neither finish API requests nor release the Lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.operator().signal("TERM")?;
    let term = Instant::now();
    let exited = stack
        .operator_mut()
        .wait_exit(Duration::from_secs(60))
        .await?;
    let term_exit = term.elapsed();
    eprintln!(
        "api_server_away: SIGTERM with the API server gone: exited after {term_exit:?} ({exited:?})"
    );
    let exited = exited.with_context(|| {
        format!(
            "the operator did not exit within 60 s of SIGTERM:\n{}",
            stack.operator().log_tail(30)
        )
    })?;
    // Restarted as the kubelet would; it must wait for the API server, not exit.
    stack.operator_mut().restart()?;
    let mut exits_during_outage = Vec::new();
    while outage.elapsed() < Duration::from_secs(30) {
        if let Some(status) = stack.operator_mut().exited()? {
            exits_during_outage.push((outage.elapsed(), status));
            stack.operator_mut().restart()?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen_during = seen.lock().unwrap_or_else(PoisonError::into_inner).len() - seen_at_outage;
    let worker_ok = worker.exited()?.is_none();
    stack.bench.kube.restart().await?;
    let back = Instant::now();
    eprintln!(
        "api_server_away: {:?} away; operator exits after the SIGTERM'd one: {exits_during_outage:?}; worker handled {seen_during} messages meanwhile, still running: {worker_ok}",
        outage.elapsed()
    );
    assert!(exited.success(), "SIGTERM exit status {exited}");
    assert!(
        exits_during_outage.is_empty(),
        "the operator crash-looped while the API server was away: {exits_during_outage:?}\n{}",
        stack.operator().log_tail(30)
    );
    assert!(worker_ok, "the worker died:\n{}", worker.log_tail(30));
    assert!(
        seen_during > 0,
        "the worker delivered nothing while the API server was away"
    );

    // After the restart: leader again, the change applied, a new Webhook Ready.
    let addr = stack.metrics_addr().to_owned();
    wait_for(
        "the operator leading again",
        Duration::from_secs(60),
        || async {
            Ok(replica_state(&addr)
                .await
                .is_some_and(|(leader, _)| leader == 1))
        },
    )
    .await?;
    let leading_after = back.elapsed();
    wait_for(
        "the pre-outage change applied (VisibilityTimeout 45)",
        Duration::from_secs(120),
        || async { Ok(visibility(&aws, &queue).await?.as_deref() == Some("45")) },
    )
    .await?;
    let applied_after = back.elapsed();
    stack
        .webhook(
            webhook(NS, "after"),
            ("stripe-webhook", "signing-secret", "whsec_kills"),
        )
        .await?;
    let new_ready_after = back.elapsed();
    sender.abort();
    let all_sent: HashSet<String> = sent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    wait_for(
        "every sent message handled",
        Duration::from_secs(60),
        || async {
            let seen: HashSet<String> = seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect();
            Ok(all_sent.is_subset(&seen))
        },
    )
    .await?;
    eprintln!(
        "api_server_away: after the restart: leader after {leading_after:?}, the change (already applied when the outage began: {applied_before}) applied after {applied_after:?}, a new Webhook Ready after {new_ready_after:?}; {} messages sent, all handled",
        all_sent.len()
    );
    worker.signal("TERM")?;
    let _ = worker.wait_exit(Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "fault test: run by make test-faults"]
async fn two_replicas_one_leader_through_a_kill_and_an_outage() -> Result<()> {
    const NS: &str = "replicas";
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::start_with(
        EmulatorKind::MiniStack,
        &[LEADER_ENV[0], LEADER_ENV[1], ("POD_NAME", "operator-a")],
    )
    .await?;
    // A leads alone until the gateway is Ready; then B joins and stands by.
    stack.gateway().await?;
    namespace(&stack, NS).await?;
    let (mut b, b_addr) = stack.spawn_operator(
        "operator-b",
        &[LEADER_ENV[0], LEADER_ENV[1], ("POD_NAME", "operator-b")],
    )?;
    let a_addr = stack.metrics_addr().to_owned();
    let kubelet = play_kubelet(stack.client.clone(), NS);
    let webhooks: Api<Webhook> = Api::namespaced(stack.client.clone(), NS);

    // Samples every 200 ms of both /metrics: never two leaders, and the standby's
    // AWS call counter does not move.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let t0 = Instant::now();
    let sampler = {
        let samples = samples.clone();
        let (a_addr, b_addr) = (a_addr.clone(), b_addr.clone());
        tokio::spawn(async move {
            for _ in 0..3000 {
                let (a, b) = tokio::join!(replica_state(&a_addr), replica_state(&b_addr));
                samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((t0.elapsed(), a, b));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let apply = |name: &str| {
        let webhooks = webhooks.clone();
        let name = name.to_owned();
        async move {
            webhooks
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER),
                    &Patch::Apply(&webhook(NS, &name)),
                )
                .await
                .with_context(|| format!("applying Webhook {name}"))
        }
    };
    let ready = |name: &str| {
        let webhooks = webhooks.clone();
        let name = name.to_owned();
        async move {
            Ok(webhooks
                .get_opt(&name)
                .await?
                .as_ref()
                .is_some_and(is_ready))
        }
    };

    apply("one").await?;
    wait_for(
        "Webhook one Ready (A leads)",
        Duration::from_secs(120),
        || ready("one"),
    )
    .await?;
    let b_state = replica_state(&b_addr).await.context("B's /metrics")?;
    assert_eq!(b_state.0, 0, "B stands by");

    // SIGKILL the leader: B takes over once the lease expires, and reconciles.
    stack.operator_mut().kill()?;
    let killed = Instant::now();
    wait_for("B leading", Duration::from_secs(60), || async {
        Ok(replica_state(&b_addr).await.is_some_and(|(l, _)| l == 1))
    })
    .await?;
    let takeover = killed.elapsed();
    apply("two").await?;
    wait_for(
        "Webhook two Ready (B leads)",
        Duration::from_secs(120),
        || ready("two"),
    )
    .await?;
    stack.operator_mut().restart()?;
    eprintln!(
        "two_replicas: the leader SIGKILLed; B took over after {takeover:?} (lease 15 s) and reconciled"
    );

    // The API server away (SIGSTOP: requests hang, as in a partition) for 30 s: B
    // must stop leading before its lease could expire for A.
    wait_for(
        "A serving /metrics as a standby",
        Duration::from_secs(30),
        || async { Ok(replica_state(&a_addr).await.is_some_and(|(l, _)| l == 0)) },
    )
    .await?;
    stack.bench.kube.apiserver().signal("STOP")?;
    let frozen = Instant::now();
    let b_exit = b.wait_exit(Duration::from_secs(30)).await?;
    let b_stopped = frozen.elapsed();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(frozen.elapsed())).await;
    stack.bench.kube.apiserver().signal("CONT")?;
    eprintln!(
        "two_replicas: API server frozen; the leader B exited after {b_stopped:?} ({b_exit:?}); renew deadline 10 s, lease 15 s"
    );
    let b_exit = b_exit
        .with_context(|| format!("B still runs 30 s into the freeze:\n{}", b.log_tail(30)))?;
    assert!(
        !b_exit.success(),
        "B exits with an error when it loses leadership"
    );
    assert!(
        b_stopped < Duration::from_secs(13),
        "B led {b_stopped:?} into the freeze (the lease's 15 s minus one renew period is the bound)"
    );
    b.restart()?;
    apply("three").await?;
    wait_for(
        "Webhook three Ready after the freeze",
        Duration::from_secs(180),
        || ready("three"),
    )
    .await?;
    let recovered = frozen.elapsed();
    sampler.abort();
    kubelet.abort();

    let samples = samples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let both: Vec<_> = samples
        .iter()
        .filter(|(_, a, b)| a.is_some_and(|(l, _)| l == 1) && b.is_some_and(|(l, _)| l == 1))
        .collect();
    // A standby's AWS calls: a replica's counter may only grow while it leads.
    let mut standby_calls = Vec::new();
    for pair in samples.windows(2) {
        let (at, a0, b0) = &pair[0];
        let (_, a1, b1) = &pair[1];
        for (who, before, after) in [("A", a0, a1), ("B", b0, b1)] {
            if let (Some((0, c0)), Some((0, c1))) = (before, after)
                && c1 > c0
            {
                standby_calls.push(format!("{who} at {at:?}: {c0} -> {c1} while standing by"));
            }
        }
    }
    eprintln!(
        "two_replicas: {} samples, {} with both leading; standby AWS calls: {}; Webhook three Ready {recovered:?} after the freeze began",
        samples.len(),
        both.len(),
        standby_calls.len()
    );
    assert!(both.is_empty(), "two leaders at once: {both:?}");
    assert!(standby_calls.is_empty(), "{standby_calls:#?}");
    b.signal("TERM")?;
    let _ = b.wait_exit(Duration::from_secs(30)).await?;
    Ok(())
}
