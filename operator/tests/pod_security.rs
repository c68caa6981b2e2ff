//! The restricted Pod Security Standard, judged by the real API server's PodSecurity
//! admission (built into kube-apiserver): the chart's operator Deployment and the
//! worker Deployment the operator writes for a Webhook.
//!
//! The bench has no controller-manager, so a Deployment never makes a Pod. Both
//! halves of the admission are checked instead: workload-level warnings (a namespace
//! labelled `warn: restricted` answers a Deployment write with a `Warning` header,
//! which helm and kubectl print) and Pod admission proper (a Pod made of each pod
//! template, created with server-side dry-run in an `enforce: restricted`
//! namespace). Negative controls prove each check can fail.

use anyhow::{Context as _, Result, bail};
use hookline_crds::Webhook;
use hookline_operator::aws::{QueuePair, QueueRef};
use hookline_operator::controller::webhook::plan;
use hookline_operator::desired::Settings;
use hookline_tests::{KubeCluster, Workdir, helm_binary, kube_binaries, repo_root};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, PodTemplateSpec, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

const WARN: &str = "pss-warn";
const ENFORCE: &str = "pss-enforce";

/// What the API server says of a workload that would break the profile.
const VIOLATION: &str = "would violate PodSecurity";

async fn namespace(client: &kube::Client, name: &str, mode: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            format!("pod-security.kubernetes.io/{mode}"): "restricted",
            format!("pod-security.kubernetes.io/{mode}-version"): "latest",
        }}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// Runs `program` with `stdin`; (success, stdout, stderr).
fn run(program: &Path, args: &[&str], stdin: &str) -> Result<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", program.display()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `kubectl apply --server-side --dry-run=server` of `object`: the warnings the
/// API server answered with (kubectl prints them on stderr).
fn apply_warnings(kubeconfig: &Path, object: &Value) -> Result<String> {
    let kubeconfig = kubeconfig.to_str().context("kubeconfig path")?;
    let (ok, _, stderr) = run(
        Path::new("kubectl"),
        &[
            "--kubeconfig",
            kubeconfig,
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=hookline-operator",
            "-f",
            "-",
        ],
        &serde_json::to_string(object)?,
    )?;
    if !ok {
        bail!("kubectl apply failed: {stderr}");
    }
    Ok(stderr)
}

/// A Pod of `template` in the enforcing namespace, created with dry-run: admission
/// runs, nothing is stored.
async fn admit_pod(
    client: &kube::Client,
    name: &str,
    template: &PodTemplateSpec,
) -> Result<(), kube::Error> {
    let pod = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ENFORCE.to_owned()),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            ..Default::default()
        },
        spec: template.spec.clone(),
        ..Default::default()
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    Api::<Pod>::namespaced(client.clone(), ENFORCE)
        .create(&params, &pod)
        .await
        .map(|_| ())
}

fn assert_refused(what: &str, result: Result<(), kube::Error>) -> Result<()> {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("violates PodSecurity") => {
            eprintln!("{what}: refused as expected: {}", e.message);
            Ok(())
        }
        other => bail!("{what}: expected a PodSecurity refusal, got {other:?}"),
    }
}

/// The sample Webhook in `namespace`, its handler container given the container
/// settings the restricted profile asks of every container (the team's part).
fn webhook(namespace: &str, handler_secured: bool) -> Result<Webhook> {
    let path = repo_root().join("crds/samples/webhook.yaml");
    let mut value: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
    value["metadata"]["namespace"] = json!(namespace);
    value["metadata"]["uid"] = json!("uid-pss");
    if handler_secured {
        value["spec"]["worker"]["template"]["spec"]["containers"][0]["securityContext"] = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        });
    }
    Ok(serde_json::from_value(value)?)
}

/// The worker Deployment as the operator writes it for `webhook`.
fn worker_deployment(webhook: &Webhook) -> Deployment {
    let queue = |name: &str| QueueRef {
        url: format!("https://sqs.eu-west-1.amazonaws.com/123456789012/{name}"),
        arn: format!("arn:aws:sqs:eu-west-1:123456789012:{name}"),
    };
    let pair = QueuePair {
        queue: queue("hl-q.fifo"),
        dead_letter: queue("hl-q-dlq.fifo"),
    };
    let settings = Settings {
        name_prefix: "hl".to_owned(),
        region: "eu-west-1".to_owned(),
        worker_image: "ghcr.io/hookline/hookline-worker:0.1.0".to_owned(),
        aws_endpoint_url: None,
        irsa_oidc_provider_arn: None,
    };
    plan::worker_deployment(
        webhook,
        &pair,
        "stripe-worker",
        &settings,
        Some("https://hooks.example.com/payments/stripe"),
    )
}

fn deployment_json(deployment: &Deployment) -> Result<Value> {
    let mut value = serde_json::to_value(deployment)?;
    value["apiVersion"] = json!("apps/v1");
    value["kind"] = json!("Deployment");
    // Owned by a Webhook that does not exist on this cluster: not needed here.
    if let Some(meta) = value["metadata"].as_object_mut() {
        meta.remove("ownerReferences");
    }
    Ok(value)
}

#[tokio::test]
async fn the_chart_and_the_worker_deployments_pass_the_restricted_profile() -> Result<()> {
    let workdir = Workdir::create()?;
    let cluster = KubeCluster::start_bare(&kube_binaries()?, workdir.path()).await?;
    let client = cluster.client().await?;
    let kubeconfig = cluster.kubeconfig_path().to_owned();
    namespace(&client, WARN, "warn").await?;
    namespace(&client, ENFORCE, "enforce").await?;
    // The ServiceAccount admission plugin refuses a Pod whose account is missing.
    for account in ["hookline", "stripe-worker"] {
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}}))?;
        Api::<ServiceAccount>::namespaced(client.clone(), ENFORCE)
            .create(&PostParams::default(), &sa)
            .await
            .with_context(|| format!("creating the ServiceAccount {account}"))?;
    }

    // The chart: installed into a warn=restricted namespace, helm prints any
    // warning the API server answers its writes with.
    let chart = repo_root().join("charts/hookline");
    let (ok, stdout, stderr) = run(
        &helm_binary()?,
        &[
            "install",
            "hookline",
            chart.to_str().context("chart path")?,
            "--kubeconfig",
            kubeconfig.to_str().context("kubeconfig path")?,
            "--namespace",
            WARN,
            "--set",
            "aws.region=eu-west-1",
        ],
        "",
    )?;
    assert!(ok, "helm install failed: {stderr}");
    assert!(
        !stderr.contains("PodSecurity"),
        "helm install got PodSecurity warnings:\n{stderr}\n{stdout}"
    );
    let operator = Api::<Deployment>::namespaced(client.clone(), WARN)
        .get("hookline")
        .await
        .context("the chart's operator Deployment")?;
    let template = operator.spec.template;
    admit_pod(&client, "operator", &template)
        .await
        .map_err(|e| anyhow::anyhow!("the operator's pod, enforce=restricted: {e:?}"))?;

    // Negative controls: the same pod without allowPrivilegeEscalation=false is
    // refused, and kubectl does show the warning for such a Deployment.
    let mut loose = template.clone();
    for c in loose.spec.iter_mut().flat_map(|s| s.containers.iter_mut()) {
        if let Some(sc) = c.security_context.as_mut() {
            sc.allow_privilege_escalation = None;
        }
    }
    assert_refused(
        "the operator's pod with allowPrivilegeEscalation unset",
        admit_pod(&client, "operator-loose", &loose).await,
    )?;
    let loose_deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "loose", "namespace": WARN},
        "spec": {
            "selector": {"matchLabels": loose.metadata.as_ref().and_then(|m| m.labels.clone())},
            "template": serde_json::to_value(&loose)?,
        },
    });
    let warned = apply_warnings(&kubeconfig, &loose_deployment)?;
    assert!(
        warned.contains(VIOLATION),
        "no warning for a loose Deployment: {warned:?}"
    );

    // The worker Deployment the operator writes, for a Webhook whose handler is set
    // up as restricted asks: no warning at write, its pod admitted.
    let secured = webhook(WARN, true)?;
    let worker = deployment_json(&worker_deployment(&secured))?;
    let warned = apply_warnings(&kubeconfig, &worker)?;
    assert!(
        !warned.contains("PodSecurity"),
        "the worker Deployment got PodSecurity warnings: {warned}"
    );
    let template = worker_deployment(&secured).spec.template;
    admit_pod(&client, "worker", &template)
        .await
        .map_err(|e| anyhow::anyhow!("the worker's pod, enforce=restricted: {e:?}"))?;
    // The sample's handler container, as the sample writes it, sets nothing: the
    // operator secures its sidecar and the pod, not the team's containers, and
    // such a pod is refused (docs/security.md tells teams what to add).
    let sample = webhook(WARN, false)?;
    assert_refused(
        "the sample Webhook's pod, handler without securityContext",
        admit_pod(
            &client,
            "worker-sample",
            &worker_deployment(&sample).spec.template,
        )
        .await,
    )?;
    // And the operator's own sidecar is judged too: with its securityContext
    // removed the pod is refused.
    let mut bare = template;
    for c in bare
        .spec
        .iter_mut()
        .flat_map(|s| s.init_containers.iter_mut().flatten())
    {
        c.security_context = None;
    }
    assert_refused(
        "the worker pod with the sidecar's securityContext removed",
        admit_pod(&client, "worker-bare", &bare).await,
    )?;

    // Last, the negative control of helm's half: an upgrade that loosens the
    // operator's container does print the API server's warning.
    let (ok, _, stderr) = run(
        &helm_binary()?,
        &[
            "upgrade",
            "hookline",
            chart.to_str().context("chart path")?,
            "--kubeconfig",
            kubeconfig.to_str().context("kubeconfig path")?,
            "--namespace",
            WARN,
            "--reuse-values",
            "--set",
            "securityContext.allowPrivilegeEscalation=true",
        ],
        "",
    )?;
    assert!(ok, "helm upgrade failed: {stderr}");
    assert!(
        stderr.contains(VIOLATION),
        "helm showed no warning for a loosened operator: {stderr}"
    );
    Ok(())
}
