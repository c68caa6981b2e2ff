//! `helm uninstall` with Webhooks still present: the chart's pre-delete hook runs
//! `hookline-operator uninstall-check`, which refuses while a Webhook or a
//! WebhookGateway carries the operator's finalizer (nobody would remove it, and
//! their namespace would hang in Terminating) and says how to resolve it.
//!
//! The bench has no kubelet, so the hook's Job never runs here: the test checks that
//! helm creates it (as the operator's ServiceAccount, with the subcommand) and waits
//! on it instead of deleting anything, and runs the subcommand itself, with the
//! ServiceAccount's own token, against the same API server.
//!
//! Needs `target/debug/hookline-operator` (`cargo test --workspace` builds it).

use anyhow::{Context, Result, bail};
use hookline_tests::{KubeCluster, Workdir, helm_binary, kube_binaries, repo_root};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output};

const FINALIZER: &str = "hookline.dev/aws-cleanup";

fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", program.display()))
}

fn succeeded(what: &str, output: &Output) -> Result<String> {
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The operator's ServiceAccount's own credentials, as its pods have them.
fn service_account_kubeconfig(cluster: &KubeCluster, dir: &Path) -> Result<std::path::PathBuf> {
    let output = run(
        Path::new("kubectl"),
        &[
            "--kubeconfig",
            cluster.kubeconfig_path().to_str().context("path")?,
            "-n",
            "hookline-system",
            "create",
            "token",
            "hookline",
            "--duration=1h",
        ],
        &[],
    )?;
    let token = succeeded("kubectl create token", &output)?;
    let mut config = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    for user in &mut config.auth_infos {
        user.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.trim().to_owned().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    let path = dir.join("operator.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&config)?)?;
    Ok(path)
}

#[tokio::test]
async fn uninstall_refuses_while_webhooks_hold_the_finalizer() -> Result<()> {
    let operator = repo_root().join("target/debug/hookline-operator");
    if !operator.is_file() {
        bail!(
            "{} is not built; `cargo test --workspace` builds it (or `cargo build --workspace --bins`)",
            operator.display()
        );
    }
    let workdir = Workdir::create()?;
    let cluster = KubeCluster::start_bare(&kube_binaries()?, workdir.path()).await?;
    let client = cluster.client().await?;
    let kubeconfig = cluster
        .kubeconfig_path()
        .to_str()
        .context("kubeconfig path")?
        .to_owned();
    let helm = helm_binary()?;
    let chart = repo_root().join("charts/hookline");
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "payments"}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let installed = run(
        &helm,
        &[
            "install",
            "hookline",
            chart.to_str().context("chart path")?,
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            "hookline-system",
            "--create-namespace",
            "--set",
            "aws.region=eu-west-1",
        ],
        &[],
    )?;
    let notes = succeeded("helm install", &installed)?;
    assert!(
        notes.contains("helm uninstall"),
        "NOTES lack the uninstall step: {notes}"
    );

    for resource in hookline_tests::kube::hookline_resources() {
        hookline_tests::kube::wait_until_served(&client, &resource).await?;
    }

    // What a running operator leaves: a gateway and a Webhook with its finalizer.
    let gateways: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<hookline_crds::WebhookGateway>(&()),
    );
    let webhooks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "payments",
        &ApiResource::erase::<hookline_crds::Webhook>(&()),
    );
    let apply = PatchParams::apply("uninstall-test");
    let gateway = json!({
        "apiVersion": "hookline.dev/v1alpha1", "kind": "WebhookGateway",
        "metadata": {"name": "public", "finalizers": [FINALIZER]},
        "spec": {"hostname": "hooks.example.com", "hostedZone": {"name": "example.com"}}
    });
    gateways
        .patch("public", &apply, &Patch::Apply(&gateway))
        .await?;
    let webhook = json!({
        "apiVersion": "hookline.dev/v1alpha1", "kind": "Webhook",
        "metadata": {"name": "stripe", "namespace": "payments", "finalizers": [FINALIZER]},
        "spec": {
            "path": "/payments/stripe",
            "worker": {"template": {"spec": {"containers": [{"name": "handler", "image": "handler:1"}]}}}
        }
    });
    webhooks
        .patch("stripe", &apply, &Patch::Apply(&webhook))
        .await?;

    // The check, as the hook's Job runs it: the operator's identity, no AWS.
    let sa_kubeconfig = service_account_kubeconfig(&cluster, workdir.path())?;
    let sa_env = [
        ("KUBECONFIG", sa_kubeconfig.to_str().context("path")?),
        ("HOOKLINE_LOG_FORMAT", "text"),
    ];
    let refused = run(&operator, &["uninstall-check"], &sa_env)?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the check passed: {said}");
    for expected in [
        "Webhook payments/stripe",
        "WebhookGateway public",
        "kubectl delete webhooks --all -A",
        "helm uninstall --no-hooks",
        "docs/operations.md#uninstall",
    ] {
        assert!(
            said.contains(expected),
            "the refusal lacks {expected:?}: {said}"
        );
    }
    // Scoped to other namespaces, only the gateway is left to name.
    let scoped = run(
        &operator,
        &["--namespaces", "shipping", "uninstall-check"],
        &sa_env,
    )?;
    let said = String::from_utf8_lossy(&scoped.stderr);
    assert!(!scoped.status.success(), "{said}");
    assert!(!said.contains("payments/stripe"), "{said}");

    // helm runs the check before it deletes anything; with no kubelet the Job never
    // finishes, so the uninstall fails and the release's objects stay.
    let uninstall = run(
        &helm,
        &[
            "uninstall",
            "hookline",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            "hookline-system",
            "--timeout",
            "5s",
        ],
        &[],
    )?;
    assert!(
        !uninstall.status.success(),
        "helm uninstall ran no pre-delete check: {}",
        String::from_utf8_lossy(&uninstall.stdout)
    );
    let job = Api::<Job>::namespaced(client.clone(), "hookline-system")
        .get("hookline-uninstall-check")
        .await
        .context("the pre-delete hook's Job")?;
    let pod = job
        .spec
        .and_then(|s| s.template.spec)
        .context("the Job's pod spec")?;
    assert_eq!(pod.service_account_name.as_deref(), Some("hookline"));
    assert_eq!(
        pod.containers.first().and_then(|c| c.args.clone()),
        Some(vec!["uninstall-check".to_owned()])
    );
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "hookline-system");
    assert!(
        deployments.get_opt("hookline").await?.is_some(),
        "the operator was removed before the check passed"
    );

    // Once the operator has released them, the check passes.
    let released = json!({"metadata": {"finalizers": null}});
    webhooks
        .patch("stripe", &PatchParams::default(), &Patch::Merge(&released))
        .await?;
    gateways
        .patch("public", &PatchParams::default(), &Patch::Merge(&released))
        .await?;
    let passed = run(&operator, &["uninstall-check"], &sa_env)?;
    succeeded("uninstall-check with nothing left", &passed)?;

    // The documented way past the check (here: past the Job no kubelet runs).
    let forced = run(
        &helm,
        &[
            "uninstall",
            "hookline",
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            "hookline-system",
            "--no-hooks",
        ],
        &[],
    )?;
    succeeded("helm uninstall --no-hooks", &forced)?;
    assert!(deployments.get_opt("hookline").await?.is_none());
    Ok(())
}
