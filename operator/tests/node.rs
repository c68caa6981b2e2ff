//! The worker Deployment on a real node (`hookline_tests::node`): the operator
//! binary reconciles a Webhook whose pod template runs a handler image; the
//! controller-manager makes the pods, the scheduler binds them, the kubelet runs the
//! worker image from `make images` as a native sidecar next to the handler, each pod
//! in a network namespace of its own on the node's CNI bridge, and signed events
//! sent to the Webhook's queue reach the handler in order per group: through one
//! pod, through pods the backlog scaler adds and removes, through pods killed or
//! deleted mid-stream, and through a worker its liveness probe restarts.
//!
//! Slow and needs root, containerd and runc (tests/node/build.sh installs them):
//! `make test-node` runs these, never `make test`. Names start with `node_`.
//!
//! Order, as in `worker/tests/kills.rs`: at least once, and per group the handler is
//! never given a message after a later one of its group (a redelivery repeats only
//! what had not been deleted, and a FIFO group waits for it).

use anyhow::{Context, Result};
use aws_sdk_sqs::types::MessageAttributeValue;
use hookline_crds::Webhook;
use hookline_tests::EmulatorKind;
use hookline_tests::node::{
    Node, give_emulator_credentials, handler_container, has_emulator_credentials, pod_ready,
    pod_summary,
};
use hookline_tests::podman::{archive_reference, image_archive};
use hookline_tests::process::tail;
use hookline_tests::recorder::{Delivery, Recorder};
use hookline_tests::stack::Stack;
use hookline_tests::util::{ready, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_node";
/// The handler's port inside each pod (pods have network namespaces of their own, so
/// every replica can use the same one).
const HANDLER_PORT: u16 = 8080;

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

/// The bench with a node: the operator (scaling every second), a gateway, a
/// namespace with the Stripe signing Secret, the worker and handler images in the
/// node, and a recorder every pod reaches on its own 127.0.0.1.
struct NodeBench {
    // Dropped first: the node stops while the API server it reports to still runs.
    node: Node,
    stack: Stack,
    recorder: Recorder,
    handler_image: String,
    namespace: String,
}

/// How a test's Webhook runs its worker.
struct Worker {
    min: i32,
    max: i32,
    target_per_replica: i32,
    scale_down_delay_seconds: i32,
    concurrency: i32,
    visibility_timeout_seconds: i32,
    handler_delay_ms: u64,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            min: 1,
            max: 1,
            target_per_replica: 20,
            scale_down_delay_seconds: 300,
            concurrency: 4,
            visibility_timeout_seconds: 30,
            handler_delay_ms: 0,
        }
    }
}

impl NodeBench {
    async fn start() -> Result<Self> {
        let worker_archive = image_archive("hookline-worker")?;
        let worker_image = archive_reference(&worker_archive)?;
        let mut stack = Stack::start_with(
            EmulatorKind::MiniStack,
            &[
                ("HOOKLINE_WORKER_IMAGE", worker_image.as_str()),
                ("HOOKLINE_SCALER_INTERVAL_SECONDS", "1"),
            ],
        )
        .await?;
        let node = Node::start(&stack.bench.kube, stack.bench.workdir()).await?;
        eprintln!(
            "node: Ready {:.1}s after Node::start (forwarder, containerd, kubelet, controller-manager, scheduler)",
            node.started_in().as_secs_f64()
        );
        node.import(&worker_archive)?;
        let handler_image = node.import_handler()?;
        // The operator hands the worker its own AWS endpoint (the emulator on the
        // machine's 127.0.0.1); the node makes that address the same in every pod.
        node.expose(stack.bench.aws.port())?;
        let recorder = Recorder::start().await?;
        node.expose(recorder.port())?;
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
        Ok(Self {
            node,
            stack,
            recorder,
            handler_image,
            namespace,
        })
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.stack.client.clone(), &self.namespace)
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.stack.client.clone(), &self.namespace)
    }

    /// Applies the Webhook `name` (Stripe-signed, ordered by `$.customer`) with a
    /// worker as `worker` says, gives its sidecar the emulator's credentials, and
    /// returns its queue's URL once it is Ready.
    async fn webhook(&self, name: &str, worker: &Worker) -> Result<String> {
        let handler = handler_container(
            &self.handler_image,
            HANDLER_PORT,
            &self.recorder.url(),
            worker.handler_delay_ms,
        );
        let webhook: Webhook = serde_json::from_value(json!({
            "apiVersion": "hookline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "gatewayRef": {"name": "public"},
                "path": format!("/{}/{name}", self.namespace),
                "ordering": {"type": "BodyField", "bodyField": "$.customer"},
                "signature": {"preset": "Stripe", "secretRef": {"name": "stripe-webhook", "keys": ["signing-secret"]}},
                "delivery": {"visibilityTimeoutSeconds": worker.visibility_timeout_seconds},
                "worker": {
                    "template": {"spec": {"containers": [handler]}},
                    "handler": {"port": HANDLER_PORT, "path": "/orders"},
                    "concurrency": worker.concurrency,
                    "scaling": {
                        "minReplicas": worker.min,
                        "maxReplicas": worker.max,
                        "targetBacklogPerReplica": worker.target_per_replica,
                        "scaleDownDelaySeconds": worker.scale_down_delay_seconds,
                    },
                },
            },
        }))?;
        let webhooks: Api<Webhook> = Api::namespaced(self.stack.client.clone(), &self.namespace);
        webhooks
            .patch(
                name,
                &PatchParams::apply("hookline-node-test"),
                &Patch::Apply(&webhook),
            )
            .await?;
        give_emulator_credentials(
            &self.stack.client,
            &self.namespace,
            &format!("{name}-worker"),
        )
        .await
        .with_context(|| format!("operator log:\n{}", self.stack.operator().log_tail(30)))?;
        wait_for(
            &format!("the Webhook {name} to be Ready"),
            Duration::from_secs(120),
            || async {
                Ok(ready(
                    webhooks.get(name).await?.status.map(|s| s.conditions),
                ))
            },
        )
        .await
        .with_context(|| format!("operator log:\n{}", self.stack.operator().log_tail(30)))?;
        webhooks
            .get(name)
            .await?
            .status
            .and_then(|s| s.queue)
            .map(|q| q.url)
            .context("the Webhook's queue")
    }

    /// The pods of Webhook `name` with the emulator's credentials, Ready or not.
    async fn worker_pods(&self, name: &str) -> Result<Vec<Pod>> {
        let selector = ListParams::default().labels(&format!("hookline.dev/webhook={name}"));
        Ok(self
            .pods()
            .list(&selector)
            .await?
            .items
            .into_iter()
            .filter(|p| has_emulator_credentials(p) && p.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Waits until exactly `count` pods of Webhook `name` are Ready; on timeout the error shows the pods, the workers' logs and the kubelet's.
    async fn wait_ready_pods(
        &self,
        name: &str,
        count: usize,
        within: Duration,
    ) -> Result<Vec<Pod>> {
        let waited = wait_for(&format!("{count} Ready pods of {name}"), within, || async {
            let pods = self.worker_pods(name).await?;
            Ok(pods.iter().filter(|p| pod_ready(p)).count() == count)
        })
        .await;
        if let Err(error) = waited {
            return Err(self.explain(name, error).await);
        }
        Ok(self
            .worker_pods(name)
            .await?
            .into_iter()
            .filter(pod_ready)
            .collect())
    }

    /// `error` with what the node and the pods of `name` say.
    async fn explain(&self, name: &str, error: anyhow::Error) -> anyhow::Error {
        let selector = ListParams::default().labels(&format!("hookline.dev/webhook={name}"));
        let pods: Vec<String> = self
            .pods()
            .list(&selector)
            .await
            .map(|l| l.items.iter().map(pod_summary).collect())
            .unwrap_or_default();
        anyhow::anyhow!(
            "{error:#}\npods: {pods:#?}\nworker logs:\n{}\nforwarder log:\n{}\nkubelet log:\n{}\noperator log:\n{}",
            self.node
                .container_logs(&self.namespace, "hookline-worker", 15),
            tail(&self.node.dir().join("forwarder.log"), 20),
            self.node.kubelet_log_tail(20),
            self.stack.operator().log_tail(15)
        )
    }

    /// Sends `per_group` Stripe-signed events to each of `groups` on `queue`, the
    /// groups interleaved, each event's body `{"customer": group, "seq": i}`.
    async fn send(&self, queue: &str, groups: &[String], per_group: usize) -> Result<()> {
        let sqs = aws_sdk_sqs::Client::new(&self.stack.sdk);
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
                    .queue_url(queue)
                    .message_group_id(group)
                    .message_body(&body)
                    .set_message_attributes(Some(attributes))
                    .send()
                    .await
                    .with_context(|| format!("sending {body}"))?;
            }
        }
        Ok(())
    }

    /// Waits until every one of `groups × per_group` events was recorded at least once.
    async fn wait_delivered(
        &self,
        name: &str,
        groups: &[String],
        per_group: usize,
        within: Duration,
    ) -> Result<()> {
        let waited = wait_for("every event at the handler", within, || {
            let report = Order::of(&self.recorder.deliveries(), groups, per_group);
            async move { Ok(report.lost == 0) }
        })
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(error) => {
                let report = Order::of(&self.recorder.deliveries(), groups, per_group);
                Err(self
                    .explain(
                        name,
                        error.context(format!("{} events lost so far", report.lost)),
                    )
                    .await)
            }
        }
    }

    /// The Deployment's `spec.replicas`, which the scaler writes.
    async fn replicas(&self, name: &str) -> Result<i32> {
        Ok(self
            .deployments()
            .get(&format!("{name}-worker"))
            .await?
            .spec
            .replicas
            .unwrap_or(1))
    }
}

fn groups(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("cus_{i:02}")).collect()
}

/// What the handler was given, per group, against the events sent.
#[derive(Debug, Default)]
struct Order {
    deliveries: usize,
    duplicates: usize,
    lost: usize,
    /// Deliveries of a message after a later one of its group.
    out_of_order: Vec<String>,
}

impl Order {
    fn of(deliveries: &[Delivery], groups: &[String], per_group: usize) -> Self {
        let mut report = Self {
            deliveries: deliveries.len(),
            ..Self::default()
        };
        let mut by_group: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for delivery in deliveries {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&delivery.body) else {
                report
                    .out_of_order
                    .push(format!("unparsable body {:?}", delivery.body));
                continue;
            };
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
            let seqs = by_group.get(group).cloned().unwrap_or_default();
            let mut seen = BTreeSet::new();
            let mut highest = None;
            for seq in &seqs {
                if !seen.insert(*seq) {
                    report.duplicates += 1;
                }
                if highest.is_some_and(|h| *seq < h) {
                    report
                        .out_of_order
                        .push(format!("{group}: {seq} after {highest:?} in {seqs:?}"));
                }
                highest = highest.max(Some(*seq));
            }
            report.lost += (0..per_group).filter(|i| !seen.contains(i)).count();
        }
        report
    }
}

#[test]
#[ignore = "node test: make test-node"]
fn node_starts_ready_and_cleans_up() -> Result<()> {
    hookline_tests::block_on_large_stack(node_starts_and_cleans_up)
}

/// The node alone: Ready, then dropped, leaving no mount under its directory, no
/// containerd serving its socket, no bridge and no cgroup root.
async fn node_starts_and_cleans_up() -> Result<()> {
    let cluster = hookline_tests::shared_cluster().await?;
    let workdir = hookline_tests::Workdir::create()?;
    let node = Node::start(cluster, workdir.path()).await?;
    eprintln!(
        "node: Ready {:.1}s after Node::start",
        node.started_in().as_secs_f64()
    );
    let dir = node.dir().to_owned();
    let bridge = node.bridge().to_owned();
    let cgroup = node.cgroup_root().to_owned();
    assert!(
        std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "the node's bridge {bridge} is not there"
    );
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
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "the bridge {bridge} was left"
    );
    let memory = std::path::Path::new("/sys/fs/cgroup/memory").join(cgroup.trim_start_matches('/'));
    assert!(!memory.exists(), "the cgroup {} was left", memory.display());
    Ok(())
}

#[test]
#[ignore = "node test: make test-node"]
fn node_worker_pod_delivers_signed_events_in_order() -> Result<()> {
    hookline_tests::block_on_large_stack(worker_pod_delivers_in_order)
}

async fn worker_pod_delivers_in_order() -> Result<()> {
    let bench = NodeBench::start().await?;
    let applied = Instant::now();
    let queue = bench.webhook("orders", &Worker::default()).await?;
    let pods = bench
        .wait_ready_pods("orders", 1, Duration::from_secs(180))
        .await?;
    eprintln!(
        "pod: {} Ready {:.1}s after the Webhook was applied, at {:?}",
        pods[0].metadata.name.as_deref().unwrap_or("?"),
        applied.elapsed().as_secs_f64(),
        pods[0].status.as_ref().and_then(|s| s.pod_ip.clone()),
    );

    let groups = groups(3);
    let per_group = 5;
    let sent = Instant::now();
    bench.send(&queue, &groups, per_group).await?;
    bench
        .wait_delivered("orders", &groups, per_group, Duration::from_secs(90))
        .await?;
    let report = Order::of(&bench.recorder.deliveries(), &groups, per_group);
    assert!(report.out_of_order.is_empty(), "order broken: {report:#?}");
    assert_eq!(
        report.duplicates, 0,
        "a steady pod delivered twice: {report:#?}"
    );
    eprintln!(
        "delivery: {} signed events in {} groups through the pod in {:.1}s",
        report.deliveries,
        groups.len(),
        sent.elapsed().as_secs_f64()
    );
    Ok(())
}

#[test]
#[ignore = "node test: make test-node"]
fn node_backlog_scales_workers_up_shares_groups_and_down_to_zero() -> Result<()> {
    hookline_tests::block_on_large_stack(backlog_scales_up_and_down)
}

/// minReplicas 0: the idle Deployment goes to zero; a backlog of 120 events in 12
/// groups (a slow handler, 2 groups at once per pod) brings it to maxReplicas 3, the
/// new pods share the groups, and once drained it goes back to zero after the delay.
async fn backlog_scales_up_and_down() -> Result<()> {
    let bench = NodeBench::start().await?;
    let worker = Worker {
        min: 0,
        max: 3,
        target_per_replica: 10,
        scale_down_delay_seconds: 10,
        concurrency: 2,
        handler_delay_ms: 300,
        ..Worker::default()
    };
    let queue = bench.webhook("orders", &worker).await?;
    let idle = Instant::now();
    wait_for(
        "the idle Deployment scaled to zero",
        Duration::from_secs(90),
        || async {
            Ok(bench.replicas("orders").await? == 0
                && bench.worker_pods("orders").await?.is_empty())
        },
    )
    .await?;
    eprintln!(
        "scaling: idle at zero {:.1}s after the Webhook was Ready (scaleDownDelaySeconds 10)",
        idle.elapsed().as_secs_f64()
    );

    let groups = groups(12);
    let per_group = 10;
    let sent = Instant::now();
    bench.send(&queue, &groups, per_group).await?;
    let sent_in = sent.elapsed();
    let pods = bench
        .wait_ready_pods("orders", 3, Duration::from_secs(120))
        .await?;
    let three_ready = sent.elapsed();
    bench
        .wait_delivered("orders", &groups, per_group, Duration::from_secs(120))
        .await?;
    let drained = sent.elapsed();
    let report = Order::of(&bench.recorder.deliveries(), &groups, per_group);
    let per_pod = bench.recorder.per_pod();
    eprintln!(
        "scaling: {} events in {} groups sent in {:.1}s; 3 pods Ready {:.1}s after the first send; drained in {:.1}s; deliveries per pod {per_pod:?}; duplicates {}",
        groups.len() * per_group,
        groups.len(),
        sent_in.as_secs_f64(),
        three_ready.as_secs_f64(),
        drained.as_secs_f64(),
        report.duplicates,
    );
    assert!(report.out_of_order.is_empty(), "order broken: {report:#?}");
    let names: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let delivering: BTreeSet<&String> = per_pod.keys().filter(|p| names.contains(*p)).collect();
    assert!(
        delivering.len() >= 2,
        "the backlog was not shared: deliveries per pod {per_pod:?}, Ready pods {names:?}"
    );

    let emptied = Instant::now();
    wait_for(
        "the drained Deployment scaled back to zero",
        Duration::from_secs(120),
        || async {
            Ok(bench.replicas("orders").await? == 0
                && bench.worker_pods("orders").await?.is_empty())
        },
    )
    .await?;
    eprintln!(
        "scaling: back at zero, every pod gone, {:.1}s after the last delivery",
        emptied.elapsed().as_secs_f64()
    );
    let late = Order::of(&bench.recorder.deliveries(), &groups, per_group);
    assert_eq!(
        late.deliveries, report.deliveries,
        "deliveries after the drain: {late:#?}"
    );
    Ok(())
}

#[test]
#[ignore = "node test: make test-node"]
fn node_pods_killed_or_deleted_mid_stream_lose_nothing_and_keep_order() -> Result<()> {
    hookline_tests::block_on_large_stack(pods_killed_mid_stream)
}

/// Two pods drain 200 events in 8 groups. A third of the way in, one pod's worker and
/// handler are SIGKILLed (a crash: the kubelet restarts them); two thirds in, the
/// other pod is deleted (its worker gets SIGTERM, finishes what it holds, and the
/// ReplicaSet makes a new pod). Every event arrives, no group's order breaks.
async fn pods_killed_mid_stream() -> Result<()> {
    let bench = NodeBench::start().await?;
    let worker = Worker {
        min: 2,
        max: 2,
        concurrency: 2,
        visibility_timeout_seconds: 5,
        handler_delay_ms: 50,
        ..Worker::default()
    };
    let queue = bench.webhook("orders", &worker).await?;
    let pods = bench
        .wait_ready_pods("orders", 2, Duration::from_secs(180))
        .await?;
    let groups = groups(8);
    let per_group = 25;
    let total = groups.len() * per_group;
    let sent = Instant::now();
    bench.send(&queue, &groups, per_group).await?;

    let (crashed, deleted) = (&pods[0], &pods[1]);
    wait_for("a third delivered", Duration::from_secs(60), || {
        let n = bench.recorder.len();
        async move { Ok(n >= total / 3) }
    })
    .await?;
    let status = crashed.status.clone().unwrap_or_default();
    let mut killed = Vec::new();
    for container in status
        .init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(status.container_statuses.unwrap_or_default())
    {
        let id = container
            .container_id
            .with_context(|| format!("no container id for {}", container.name))?;
        bench.node.signal_container(&id, "SIGKILL")?;
        killed.push(container.name);
    }
    let killed_at = bench.recorder.len();
    wait_for("two thirds delivered", Duration::from_secs(90), || {
        let n = bench.recorder.len();
        async move { Ok(n >= 2 * total / 3) }
    })
    .await
    .map_err(|e| e.context(format!("after the SIGKILL of {killed:?}")))?;
    let deleted_name = deleted.metadata.name.clone().context("pod name")?;
    bench
        .pods()
        .delete(&deleted_name, &DeleteParams::default())
        .await?;
    let deleted_at = bench.recorder.len();
    bench
        .wait_delivered("orders", &groups, per_group, Duration::from_secs(120))
        .await?;
    let drained = sent.elapsed();
    let report = Order::of(&bench.recorder.deliveries(), &groups, per_group);
    let pods_now = bench
        .wait_ready_pods("orders", 2, Duration::from_secs(120))
        .await?;
    let restarts: Vec<String> = pods_now
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let restarts: i32 = status
                .init_container_statuses
                .unwrap_or_default()
                .iter()
                .chain(status.container_statuses.unwrap_or_default().iter())
                .map(|c| c.restart_count)
                .sum();
            format!(
                "{}: {restarts} restarts",
                p.metadata.name.as_deref().unwrap_or("?")
            )
        })
        .collect();
    eprintln!(
        "kills: {total} events in {} groups; {killed:?} of one pod SIGKILLed at {killed_at} delivered, the other pod deleted at {deleted_at}; drained in {:.1}s; deliveries {}, duplicates {}, lost {}, out of order {}; pods now {restarts:?}; per pod {:?}",
        groups.len(),
        drained.as_secs_f64(),
        report.deliveries,
        report.duplicates,
        report.lost,
        report.out_of_order.len(),
        bench.recorder.per_pod(),
    );
    assert!(report.out_of_order.is_empty(), "order broken: {report:#?}");
    assert_eq!(report.lost, 0);
    assert!(
        !pods_now
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(deleted_name.as_str())),
        "the deleted pod is still there"
    );
    Ok(())
}

#[test]
#[ignore = "node test: make test-node"]
fn node_probes_take_a_hung_worker_out_and_restart_it() -> Result<()> {
    hookline_tests::block_on_large_stack(probes_restart_a_hung_worker)
}

/// The worker sidecar is frozen (SIGSTOP): its readiness probe takes the pod out of
/// Ready, its liveness probe has the kubelet restart it, and the events sent while
/// it hung are delivered, in order, by the restarted worker.
async fn probes_restart_a_hung_worker() -> Result<()> {
    let bench = NodeBench::start().await?;
    let worker = Worker {
        visibility_timeout_seconds: 5,
        ..Worker::default()
    };
    let queue = bench.webhook("orders", &worker).await?;
    let pods = bench
        .wait_ready_pods("orders", 1, Duration::from_secs(180))
        .await?;
    let pod = pods[0].metadata.name.clone().context("pod name")?;
    // The kubelet's liveness kill is graceful: SIGTERM, which a frozen process never
    // acts on, then SIGKILL after the pod's grace period (the operator makes it at
    // least the handler timeout + 30 s, so in-flight calls can finish on a rollout).
    let grace = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .context("the pod's terminationGracePeriodSeconds")?;
    let sidecar = |pod: &Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == "hookline-worker").cloned())
    };
    let before = sidecar(&pods[0]).context("the worker sidecar's status")?;
    let id = before
        .container_id
        .clone()
        .context("the sidecar's container id")?;
    let groups = groups(2);
    bench.send(&queue, &groups, 3).await?;
    bench
        .wait_delivered("orders", &groups, 3, Duration::from_secs(60))
        .await?;

    bench.node.signal_container(&id, "SIGSTOP")?;
    let frozen = Instant::now();
    // Groups of their own for the events sent during the hang (a FIFO queue would
    // deduplicate a body sent again, and the order check reads them alone).
    let hung: Vec<String> = (0..2).map(|i| format!("hang_{i}")).collect();
    bench.send(&queue, &hung, 10).await?;
    let pods_api = bench.pods();
    wait_for(
        "the pod out of Ready (readiness probe)",
        Duration::from_secs(60),
        || async { Ok(!pod_ready(&pods_api.get(&pod).await?)) },
    )
    .await
    .map_err(|e| e.context("the readiness probe did not take the pod out"))?;
    let unready = frozen.elapsed();
    let delivered_while_hung = bench.recorder.len() - 6;
    let restarted = wait_for(
        "the worker restarted (liveness probe)",
        Duration::from_secs(120),
        || async {
            let now = pods_api.get(&pod).await?;
            Ok(
                sidecar(&now).is_some_and(|c| c.restart_count > before.restart_count)
                    && pod_ready(&now),
            )
        },
    )
    .await;
    if let Err(error) = restarted {
        // Thawed, so that nothing is left stopped whatever the outcome.
        let _ = bench.node.signal_container(&id, "SIGCONT");
        return Err(bench.explain("orders", error).await);
    }
    let ready_again = frozen.elapsed();
    bench
        .wait_delivered("orders", &hung, 10, Duration::from_secs(90))
        .await?;
    let report = Order::of(&bench.recorder.deliveries(), &hung, 10);
    eprintln!(
        "probes: a SIGSTOPped worker was out of Ready {:.1}s after the freeze (readiness every 5 s, 3 failures), restarted and Ready again at {:.1}s (liveness every 10 s, 3 failures, then SIGTERM and the pod's {grace} s grace before SIGKILL); {} events sent during the hang, {delivered_while_hung} delivered before the restart, all after it; duplicates {}",
        unready.as_secs_f64(),
        ready_again.as_secs_f64(),
        hung.len() * 10,
        report.duplicates,
    );
    assert!(report.out_of_order.is_empty(), "order broken: {report:#?}");
    Ok(())
}
