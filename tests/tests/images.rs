//! The container images `make images` builds (`target/images/*.tar`), run with podman
//! as the chart runs them: host network, read-only root filesystem, every capability
//! dropped, user 65532. Not the host binaries: what a cluster would pull.
//!
//! - the worker image drains a FIFO queue on MiniStack into a handler, in order per
//!   group, and exits 0 on SIGTERM; it reaches SQS and the handler by host names only
//!   the container's /etc/hosts knows, so the static glibc resolver is exercised;
//! - the operator image reconciles the sample gateway and Webhook to Ready against the
//!   bench's API server (kubeconfig mounted), and the worker Deployment it writes names
//!   the worker image `make images` built;
//! - both images have exactly the layout the Dockerfile promises (no shell), their OCI
//!   labels, and stay under 30 MiB;
//! - the chart's default image references are the ones `make images` tags.
//!
//! Needs podman (`apt-get install -y podman buildah runc`) and `make images`, which
//! `make test` runs first; without either every test here fails and says which.

use anyhow::{Context, Result, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use hookline_tests::podman::{Podman, archive_reference, archive_references, image_archive};
use hookline_tests::process::free_port;
use hookline_tests::recorder::Recorder;
use hookline_tests::stack::{Stack, sample};
use hookline_tests::util::wait_for;
use hookline_tests::{Emulator, EmulatorKind, Workdir, emulator_venv, helm_binary, repo_root};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// The pod security context of the chart, as podman flags (host network: the bench
/// listens on 127.0.0.1 only).
const RESTRICTED: [&str; 10] = [
    "--network",
    "host",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--user",
    "65532:65532",
    "--security-opt",
    "no-new-privileges",
    "--pull=never",
];

async fn create_fifo(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String> {
    sqs.create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "true")
        .send()
        .await
        .with_context(|| format!("creating {name}"))?
        .queue_url
        .context("CreateQueue returned no URL")
}

/// Visible plus in-flight messages of `url`.
async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .with_context(|| format!("reading the depth of {url}"))?
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| {
        attributes
            .get(&name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}

/// Sends SIGTERM to container `name` and returns its exit code and how long it took
/// to stop (bounded: the chart's terminationGracePeriodSeconds is 30).
async fn terminate(podman: &Podman, name: &str) -> Result<(i32, Duration)> {
    let asked = Instant::now();
    podman.run(&["kill", "--signal", "TERM", name])?;
    wait_for(
        &format!("{name} to exit after SIGTERM"),
        Duration::from_secs(30),
        || async {
            let state = podman.run(&["inspect", "--format", "{{.State.Status}}", name])?;
            Ok(state == "exited" || state == "stopped")
        },
    )
    .await?;
    let stopped_in = asked.elapsed();
    Ok((podman.wait(name)?, stopped_in))
}

fn env_args(env: &[(&str, &str)]) -> Vec<String> {
    env.iter()
        .flat_map(|(k, v)| ["--env".to_owned(), format!("{k}={v}")])
        .collect()
}

#[tokio::test]
async fn the_worker_image_drains_a_queue_and_stops_on_sigterm() -> Result<()> {
    let workdir = Workdir::create()?;
    let podman = Podman::new(&workdir.path().join("podman"))?;
    let image = podman.load("hookline-worker")?;
    podman.check_revision(&image)?;
    let aws = Emulator::start(EmulatorKind::MiniStack, &emulator_venv()?, workdir.path()).await?;
    let sqs = aws_sdk_sqs::Client::new(&aws.sdk_config().await);
    let id = std::process::id();
    let queue = create_fifo(&sqs, &format!("hl-images-w{id}.fifo")).await?;
    let dlq = create_fifo(&sqs, &format!("hl-images-w{id}-dlq.fifo")).await?;
    let groups = ["a", "b", "c"];
    let per_group = 5;
    for i in 0..per_group {
        for group in groups {
            sqs.send_message()
                .queue_url(&queue)
                .message_group_id(group)
                .message_body(format!("{group}-{i}"))
                .send()
                .await
                .context("sending")?;
        }
    }
    let handler = Recorder::start().await?;
    let handler_port = handler.port();
    let metrics_port = free_port()?;

    // Both names exist only in the container's /etc/hosts (--add-host), as a
    // kubelet writes it: a worker that could not resolve names in a scratch image
    // delivers nothing.
    let endpoint = format!("http://sqs.hookline.test:{}", aws.port());
    let handler_url = format!("http://handler.hookline.test:{handler_port}/");
    let metrics = format!("127.0.0.1:{metrics_port}");
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", hookline_tests::aws::REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("HOOKLINE_QUEUE_URL", queue.as_str()),
        ("HOOKLINE_DEAD_LETTER_QUEUE_URL", dlq.as_str()),
        ("HOOKLINE_HANDLER_URL", handler_url.as_str()),
        ("HOOKLINE_METRICS_ADDR", metrics.as_str()),
        ("HOOKLINE_LOG_FORMAT", "text"),
    ];
    let name = format!("hl-worker-{id}");
    let mut args: Vec<String> = RESTRICTED.iter().map(|a| (*a).to_owned()).collect();
    args.extend(
        [
            "--add-host",
            "sqs.hookline.test:127.0.0.1",
            "--add-host",
            "handler.hookline.test:127.0.0.1",
        ]
        .map(str::to_owned),
    );
    args.extend(env_args(&env));
    args.extend([image.clone(), "run".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut worker = podman.spawn(&name, &args, workdir.path().join("worker.log"))?;

    let total = groups.len() * per_group;
    let delivered = wait_for(
        "the worker image to deliver every message",
        Duration::from_secs(60),
        || {
            let running = worker.check_running();
            let count = handler.len();
            async move {
                running?;
                Ok(count >= total)
            }
        },
    )
    .await;
    delivered.with_context(|| format!("worker log:\n{}", worker.log_tail(30)))?;
    let drained_in = started.elapsed();
    wait_for("the queue to be empty", Duration::from_secs(30), || async {
        Ok(depth(&sqs, &queue).await? == 0)
    })
    .await
    .with_context(|| format!("worker log:\n{}", worker.log_tail(30)))?;

    let bodies = handler.bodies();
    let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for body in &bodies {
        let group = body.split('-').next().unwrap_or_default();
        by_group.entry(group).or_default().push(body);
    }
    for group in groups {
        let expected: Vec<String> = (0..per_group).map(|i| format!("{group}-{i}")).collect();
        assert_eq!(
            by_group.get(group).cloned().unwrap_or_default(),
            expected,
            "group {group} out of order or incomplete; all: {bodies:?}"
        );
    }
    assert_eq!(depth(&sqs, &dlq).await?, 0, "dead letters on a 200 handler");

    // An idle worker finishes the long poll under way (20 s at most) before it exits:
    // a receive is never abandoned (worker/src/consumer.rs), within the pod's 30 s.
    let (code, stopped_in) = terminate(&podman, &name).await?;
    let log = worker.log_tail(40);
    assert_eq!(code, 0, "exit code after SIGTERM; log:\n{log}");
    assert!(log.contains("shutting down"), "log:\n{log}");
    eprintln!(
        "worker image {image}: {total} messages delivered {:.1}s after podman run; \
         exited 0 {:.2}s after SIGTERM",
        drained_in.as_secs_f64(),
        stopped_in.as_secs_f64()
    );
    Ok(())
}

#[test]
fn the_operator_image_reconciles_a_gateway_and_a_webhook_to_ready() -> Result<()> {
    // The bench's processes die with the thread that started them: a thread of the
    // test's own, with a stack large enough for the whole stack's futures.
    hookline_tests::block_on_large_stack(operator_image_test)
}

async fn operator_image_test() -> Result<()> {
    let workdir = Workdir::create()?;
    let podman = Podman::new(&workdir.path().join("podman"))?;
    let image = podman.load("hookline-operator")?;
    podman.check_revision(&image)?;
    let worker_image = archive_reference(&image_archive("hookline-worker")?)?;
    let name = format!("hl-operator-{}", std::process::id());
    let started = Instant::now();
    let mut stack = Stack::start_with_operator(EmulatorKind::MiniStack, |bench, env| {
        let kubeconfig = "/var/run/hookline/kubeconfig";
        let env: Vec<(&str, &str)> = env
            .iter()
            .map(|&(k, v)| {
                if k == "KUBECONFIG" {
                    (k, kubeconfig)
                } else {
                    (k, v)
                }
            })
            .collect();
        let mount = format!("{}:{kubeconfig}:ro", bench.kube.kubeconfig_path().display());
        let mut args: Vec<String> = RESTRICTED.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--volume".to_owned(), mount]);
        args.extend(env_args(&env));
        args.push(image.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman.spawn(&name, &args, bench.workdir().join("operator.log"))
    })
    .await?;

    let gateway = stack.gateway().await?;
    let gateway_ready = started.elapsed();
    let webhook = stack
        .webhook(
            sample("webhook.yaml")?,
            ("stripe-webhook", "signing-secret", "whsec_images"),
        )
        .await?;
    let webhook_ready = started.elapsed();
    assert!(
        gateway.status.and_then(|s| s.rest_api_id).is_some(),
        "the gateway has no REST API"
    );
    let namespace = webhook.metadata.namespace.clone().unwrap_or_default();
    let deployment = Api::<Deployment>::namespaced(stack.client.clone(), &namespace)
        .get("stripe-worker")
        .await?;
    let images: Vec<String> = deployment
        .spec
        .template
        .spec
        // The worker is a native sidecar (an init container that keeps running).
        .map(|s| {
            s.containers
                .into_iter()
                .chain(s.init_containers.unwrap_or_default())
                .filter_map(|c| c.image)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        images.contains(&worker_image),
        "the worker Deployment's images {images:?} lack {worker_image}, which `make images` builds"
    );

    let (code, stopped_in) = terminate(&podman, &name).await?;
    let log = stack.operator().log_tail(40);
    assert_eq!(code, 0, "exit code after SIGTERM; log:\n{log}");
    eprintln!(
        "operator image {image}: gateway Ready {:.1}s and Webhook Ready {:.1}s after the \
         bench started; exited 0 {:.2}s after SIGTERM",
        gateway_ready.as_secs_f64(),
        webhook_ready.as_secs_f64(),
        stopped_in.as_secs_f64()
    );
    Ok(())
}

#[test]
fn the_images_hold_only_their_binary_certificates_and_users() -> Result<()> {
    let workdir = Workdir::create()?;
    let podman = Podman::new(&workdir.path().join("podman"))?;
    for (name, port) in [
        ("hookline-operator", "8080/tcp"),
        ("hookline-worker", "9095/tcp"),
    ] {
        let image = podman.load(name)?;
        let config = podman.run(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.ExposedPorts}} {{.Size}}",
            &image,
        ])?;
        let mut fields = config.split(' ');
        let (user, entrypoint, ports, size) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        assert_eq!(user, "65532:65532", "{image}");
        assert_eq!(
            entrypoint,
            format!("[\"/usr/local/bin/{name}\"]"),
            "{image}"
        );
        assert!(ports.contains(port), "{image} exposes {ports}");
        let size: u64 = size.parse().with_context(|| format!("size {size:?}"))?;
        eprintln!("{image}: {:.1} MiB", size as f64 / MIB as f64);
        assert!(size < 30 * MIB, "{image} is {size} bytes, over 30 MiB");
        let version = podman.label(&image, "org.opencontainers.image.version")?;
        assert_eq!(version, env!("CARGO_PKG_VERSION"), "{image} version label");
        assert_eq!(
            podman.label(&image, "org.opencontainers.image.source")?,
            "https://github.com/hookline/hookline",
            "{image} source label"
        );
        podman.check_revision(&image)?;

        // Every file of the image, from its exported filesystem.
        let container = format!("hl-layout-{name}-{}", std::process::id());
        podman.run(&["create", "--name", &container, &image])?;
        let export = workdir.path().join(format!("{name}.tar"));
        let exported = podman.run(&[
            "export",
            "--output",
            &export.display().to_string(),
            &container,
        ]);
        podman.run(&["rm", &container])?;
        exported?;
        let listing = Command::new("tar")
            .arg("-tvf")
            .arg(&export)
            .output()
            .context("listing the exported filesystem")?;
        if !listing.status.success() {
            bail!(
                "tar -tvf {}: {}",
                export.display(),
                String::from_utf8_lossy(&listing.stderr)
            );
        }
        let listing = String::from_utf8_lossy(&listing.stdout);
        let files: Vec<&str> = listing
            .lines()
            .filter(|l| !l.starts_with('d'))
            .filter_map(|l| l.split_whitespace().last())
            .collect();
        // podman adds the mount points of a container's runtime files, empty.
        let runtime = [
            "etc/hosts",
            "etc/resolv.conf",
            "etc/hostname",
            "run/.containerenv",
        ];
        let mut files: Vec<&str> = files
            .into_iter()
            .map(|f| f.trim_start_matches("./"))
            .filter(|f| !runtime.contains(f))
            .collect();
        files.sort_unstable();
        let binary = format!("usr/local/bin/{name}");
        let mut expected = vec![
            "etc/group",
            "etc/nsswitch.conf",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            binary.as_str(),
        ];
        expected.sort_unstable();
        assert_eq!(files, expected, "files of {image}:\n{listing}");
    }
    Ok(())
}

#[test]
fn the_charts_default_images_are_the_ones_make_images_builds() -> Result<()> {
    let chart = repo_root().join("charts/hookline");
    let output = Command::new(helm_binary()?)
        .args(["template", "hookline"])
        .arg(&chart)
        .args(["--namespace", "hookline-system", "--kube-version", "1.37.2"])
        .output()
        .context("running helm template")?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut operator_images = Vec::new();
    let mut worker_images = Vec::new();
    for document in text.split("\n---") {
        let object: serde_json::Value =
            serde_saphyr::from_str(document).with_context(|| format!("parsing:\n{document}"))?;
        if object["kind"] != "Deployment" {
            continue;
        }
        for container in object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
        {
            operator_images.extend(container["image"].as_str().map(str::to_owned));
            for env in container["env"].as_array().into_iter().flatten() {
                if env["name"] == "HOOKLINE_WORKER_IMAGE" {
                    worker_images.extend(env["value"].as_str().map(str::to_owned));
                }
            }
        }
    }
    for (name, rendered) in [
        ("hookline-operator", operator_images),
        ("hookline-worker", worker_images),
    ] {
        let built = archive_references(&image_archive(name)?)?;
        assert!(!rendered.is_empty(), "the chart renders no {name} image");
        for reference in &rendered {
            assert!(
                built.contains(reference),
                "the chart's default {reference} is not what `make images` tagged ({built:?}); \
                 IMAGE_REGISTRY/IMAGE_TAG differ from the chart's image values or appVersion"
            );
        }
    }
    Ok(())
}
