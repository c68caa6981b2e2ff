//! The worker Deployment on a real node (`hookline_tests::node`): the operator
//! binary reconciles a Webhook whose pod template runs a handler image; the
//! controller-manager makes the pod, the scheduler binds it, the kubelet runs the
//! worker image from `make images` as a native sidecar next to the handler, and
//! signed events sent to the Webhook's queue reach the handler in order per group.
//!
//! Slow and needs root, containerd and runc (tests/node/build.sh installs them):
//! `make test-node` runs these, never `make test`. Names start with `node_`.

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::MessageAttributeValue;
use hookline_crds::Webhook;
use hookline_tests::EmulatorKind;
use hookline_tests::node::Node;
use hookline_tests::podman::{archive_references, image_archive};
use hookline_tests::process::free_port;
use hookline_tests::stack::Stack;
use hookline_tests::util::wait_for;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_node";

/// Hex HMAC-SHA256 of `message` with `secret`.
fn hmac_hex(secret: &str, message: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(aws_lc_rs::hmac::sign(&key, message.as_bytes()).as_ref())
}

/// A `Stripe-Signature` for `body`, signed now.
fn stripe_signature(body: &str) -> Result<String> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    Ok(format!(
        "t={t},v1={}",
        hmac_hex(SECRET, &format!("{t}.{body}"))
    ))
}

/// The test's recorder on 127.0.0.1: the handler container forwards every delivery
/// here (tests/node/helper), and it answers 200 once the body is recorded.
async fn recorder() -> Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break body.to_owned();
                    }
                };
                if let Ok(mut seen) = record.lock() {
                    seen.push(body);
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((port, seen))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the pod's containers report, for failure messages.
fn pod_summary(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.container_statuses.unwrap_or_default())
        .map(|c| format!("{}: ready={} state={:?}", c.name, c.ready, c.state))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "phase {:?}, conditions {:?}, containers [{containers}]",
        status.phase, status.conditions
    )
}

#[test]
#[ignore = "node test: make test-node"]
fn node_starts_ready_and_cleans_up() -> Result<()> {
    hookline_tests::block_on_large_stack(node_starts_and_cleans_up)
}

/// The node alone: Ready, then dropped, leaving no mount under its directory and no
/// containerd serving its socket.
async fn node_starts_and_cleans_up() -> Result<()> {
    let cluster = hookline_tests::shared_cluster().await?;
    let workdir = hookline_tests::Workdir::create()?;
    let node = Node::start(cluster, workdir.path()).await?;
    eprintln!(
        "node: Ready {:.1}s after Node::start",
        node.started_in().as_secs_f64()
    );
    let dir = node.dir().to_owned();
    drop(node);
    let prefix = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let left: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(&prefix)))
        .collect();
    assert!(left.is_empty(), "mounts left under {prefix}: {left:#?}");
    assert!(
        std::os::unix::net::UnixStream::connect(dir.join("containerd.sock")).is_err(),
        "containerd still serves its socket"
    );
    Ok(())
}

#[test]
#[ignore = "node test: make test-node"]
fn node_worker_pod_delivers_signed_events_in_order() -> Result<()> {
    hookline_tests::block_on_large_stack(worker_pod_delivers_in_order)
}

async fn worker_pod_delivers_in_order() -> Result<()> {
    let worker_archive = image_archive("hookline-worker")?;
    let worker_image = archive_references(&worker_archive)?
        .into_iter()
        .next()
        .context("no reference in the worker image archive")?;
    let mut stack = Stack::start_with(
        EmulatorKind::MiniStack,
        &[("HOOKLINE_WORKER_IMAGE", worker_image.as_str())],
    )
    .await?;
    // Declared after the stack, so dropped before it: the node stops while the API
    // server it reports to still runs.
    let node = Node::start(&stack.bench.kube, stack.bench.workdir()).await?;
    eprintln!(
        "node: Ready {:.1}s after Node::start (containerd, kubelet, controller-manager, scheduler)",
        node.started_in().as_secs_f64()
    );
    node.import(&worker_archive)?;
    let handler_image = node.import_handler()?;
    let (record_port, seen) = recorder().await?;
    stack.gateway().await?;

    let namespace = format!("node-{}", std::process::id());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": namespace, "labels": {"hookline.dev/webhooks": "allowed"}}
    }))?;
    Api::<Namespace>::all(stack.client.clone())
        .patch(
            &namespace,
            &PatchParams::apply("hookline-node-test"),
            &Patch::Apply(&ns),
        )
        .await?;
    stack
        .put_secret(&namespace, ("stripe-webhook", "signing-secret", SECRET))
        .await?;
    let handler_port = free_port()?;
    let webhook: Webhook = serde_json::from_value(json!({
        "apiVersion": "hookline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": "orders", "namespace": namespace},
        "spec": {
            "gatewayRef": {"name": "public"},
            "path": format!("/{namespace}/orders"),
            "ordering": {"type": "BodyField", "bodyField": "$.customer"},
            "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook", "keys": ["signing-secret"]}},
            "worker": {
                "template": {"spec": {
                    // No CNI on the bench's node: the pod shares the host's network,
                    // so the worker reaches MiniStack and the handler on 127.0.0.1.
                    "hostNetwork": true,
                    "containers": [{
                        "name": "handler",
                        "image": handler_image,
                        "imagePullPolicy": "Never",
                        "env": [
                            {"name": "PORT", "value": handler_port.to_string()},
                            {"name": "RECORD_URL", "value": format!("http://127.0.0.1:{record_port}/")},
                        ],
                        "readinessProbe": {"tcpSocket": {"port": handler_port, "host": "127.0.0.1"}, "periodSeconds": 1},
                    }],
                }},
                "handler": {"port": handler_port, "path": "/orders"},
                "scaling": {"minReplicas": 1, "maxReplicas": 1},
            },
        },
    }))?;
    let webhooks: Api<Webhook> = Api::namespaced(stack.client.clone(), &namespace);
    webhooks
        .patch(
            "orders",
            &PatchParams::apply("hookline-node-test"),
            &Patch::Apply(&webhook),
        )
        .await?;

    // The worker's AWS credentials: on EKS the pod identity webhook injects them into
    // the pod; the bench has no such webhook, so the test adds the emulator's to the
    // sidecar under a field manager of its own, which the operator's applies keep.
    // On the host network the sidecar's metrics port is a host port, so the new pod
    // cannot start beside the old one: the rollout replaces it instead of surging.
    let deployments: Api<Deployment> = Api::namespaced(stack.client.clone(), &namespace);
    wait_for(
        "the worker Deployment",
        Duration::from_secs(120),
        || async { Ok(deployments.get_opt("orders-worker").await?.is_some()) },
    )
    .await
    .with_context(|| format!("operator log:\n{}", stack.operator().log_tail(30)))?;
    let credentials = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders-worker", "namespace": namespace},
        "spec": {
            "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {"spec": {"initContainers": [{
                "name": "hookline-worker",
                "env": [
                    {"name": "AWS_ACCESS_KEY_ID", "value": "test"},
                    {"name": "AWS_SECRET_ACCESS_KEY", "value": "test"},
                ],
            }]}},
        },
    });
    let applied = Instant::now();
    deployments
        .patch(
            "orders-worker",
            &PatchParams::apply("hookline-node-credentials"),
            &Patch::Apply(&credentials),
        )
        .await
        .context("adding the emulator's credentials to the worker sidecar")?;

    let pods: Api<Pod> = Api::namespaced(stack.client.clone(), &namespace);
    let selector = ListParams::default().labels("hookline.dev/webhook=orders");
    let waited = wait_for("a worker pod to be Ready", Duration::from_secs(180), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods.list(&selector).await?;
            // The pod of the template with the credentials: an earlier ReplicaSet's
            // pod (without them) may still be there, crash-looping on no credentials.
            Ok(list.items.iter().any(|p| {
                pod_ready(p)
                    && p.spec.as_ref().is_some_and(|s| {
                        s.init_containers.iter().flatten().any(|c| {
                            c.env
                                .iter()
                                .flatten()
                                .any(|e| e.name == "AWS_ACCESS_KEY_ID")
                        })
                    })
            }))
        }
    })
    .await;
    if let Err(error) = waited {
        let list = pods.list(&selector).await?;
        let summary: Vec<String> = list.items.iter().map(pod_summary).collect();
        bail!(
            "{error:#}\npods: {summary:#?}\nworker logs:\n{}\nkubelet log:\n{}",
            node.container_logs(&namespace, "hookline-worker", 15),
            node.kubelet_log_tail(20)
        );
    }
    let ready_in = applied.elapsed();
    eprintln!(
        "pod: Ready {:.1}s after its Deployment got its final template",
        ready_in.as_secs_f64()
    );

    let status = wait_for_ready_webhook(&webhooks).await?;
    let queue = status
        .status
        .and_then(|s| s.queue)
        .context("the Webhook's queue")?
        .url;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let groups = ["cus_a", "cus_b", "cus_c"];
    let per_group = 5;
    let sent = Instant::now();
    for i in 0..per_group {
        for group in groups {
            let body = json!({"customer": group, "seq": i}).to_string();
            let signature = stripe_signature(&body)?;
            let attributes: std::collections::HashMap<String, MessageAttributeValue> =
                hookline_worker::wire::header_attributes(&[
                    ("Stripe-Signature", signature.as_str()),
                    ("Content-Type", "application/json"),
                ]);
            sqs.send_message()
                .queue_url(&queue)
                .message_group_id(group)
                .message_body(&body)
                .set_message_attributes(Some(attributes))
                .send()
                .await
                .with_context(|| format!("sending {body}"))?;
        }
    }
    let total = groups.len() * per_group;
    wait_for(
        "the pod to deliver every event",
        Duration::from_secs(90),
        || {
            let count = seen.lock().map_or(0, |s| s.len());
            async move { Ok(count >= total) }
        },
    )
    .await
    .with_context(|| {
        format!(
            "delivered {:?}; worker logs:\n{}\nkubelet log:\n{}",
            seen.lock().map(|s| s.clone()).unwrap_or_default(),
            node.container_logs(&namespace, "hookline-worker", 30),
            node.kubelet_log_tail(20)
        )
    })?;
    let delivered_in = sent.elapsed();

    let bodies = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut by_group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for body in &bodies {
        let event: serde_json::Value =
            serde_json::from_str(body).with_context(|| format!("parsing {body}"))?;
        by_group
            .entry(event["customer"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(
                event["seq"]
                    .as_u64()
                    .and_then(|s| usize::try_from(s).ok())
                    .unwrap_or(usize::MAX),
            );
    }
    for group in groups {
        let expected: Vec<usize> = (0..per_group).collect();
        assert_eq!(
            by_group.get(group).cloned().unwrap_or_default(),
            expected,
            "group {group} out of order or incomplete; all: {bodies:?}"
        );
    }
    eprintln!(
        "delivery: {total} signed events in {} groups through the pod in {:.1}s",
        groups.len(),
        delivered_in.as_secs_f64()
    );
    drop(node);
    Ok(())
}

async fn wait_for_ready_webhook(webhooks: &Api<Webhook>) -> Result<Webhook> {
    wait_for(
        "the Webhook orders to be Ready",
        Duration::from_secs(120),
        || async {
            Ok(webhooks
                .get("orders")
                .await?
                .status
                .map(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        },
    )
    .await?;
    Ok(webhooks.get("orders").await?)
}
