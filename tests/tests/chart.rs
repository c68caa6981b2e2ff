//! The Helm chart (`charts/hookline`), checked with a `helm` built from its Go
//! module: lint and render with the default and the full example values, the
//! schema's refusals, a real `helm install` on a new API server (CRDs and gateways
//! in one release), the full rendering applied with server-side dry-run, and the
//! operator's RBAC verified with SubjectAccessReviews in both modes.

use anyhow::{Context, Result, bail};
use hookline_tests::util::wait_for;
use hookline_tests::{KubeCluster, Workdir, helm_binary, kube_binaries, repo_root};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const KUBE_VERSION: &str = "1.37.2";

fn chart() -> PathBuf {
    repo_root().join("charts/hookline")
}

fn full_values() -> PathBuf {
    chart().join("ci/full-values.yaml")
}

/// The helm binary, built (or found in the cache) once per test binary.
fn helm_path() -> Result<PathBuf> {
    static HELM: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    HELM.get_or_init(|| helm_binary().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Runs helm; its stdout on success, its stderr in the error otherwise.
fn helm(args: &[&str]) -> Result<String> {
    let output = Command::new(helm_path()?)
        .args(args)
        .output()
        .context("running helm")?;
    if !output.status.success() {
        bail!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs helm expecting a refusal; its stderr.
fn helm_refuses(args: &[&str]) -> Result<String> {
    let output = Command::new(helm_path()?)
        .args(args)
        .output()
        .context("running helm")?;
    if output.status.success() {
        bail!("helm {} succeeded; a refusal was expected", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}

/// `helm template` of the chart, parsed into its objects.
fn render(extra: &[&str]) -> Result<Vec<Value>> {
    let chart = chart();
    let mut args = vec![
        "template",
        "hookline",
        chart.to_str().context("chart path")?,
        "--namespace",
        "hookline-system",
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    let text = helm(&args)?;
    let mut objects = Vec::new();
    for document in text.split("\n---") {
        let value: Value =
            serde_saphyr::from_str(document).with_context(|| format!("parsing:\n{document}"))?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name} rendered"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// Every (apiGroup, resource, verb) a role's rules grant, `name` marking rules
/// limited to resource names.
fn grants(role: &Value) -> Vec<(String, String, String, bool)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        let named = rule.get("resourceNames").is_some();
        for group in rule["apiGroups"].as_array().into_iter().flatten() {
            for resource in rule["resources"].as_array().into_iter().flatten() {
                for verb in rule["verbs"].as_array().into_iter().flatten() {
                    out.push((
                        group.as_str().unwrap_or_default().to_owned(),
                        resource.as_str().unwrap_or_default().to_owned(),
                        verb.as_str().unwrap_or_default().to_owned(),
                        named,
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_chart_lints_and_renders_with_default_and_full_values() -> Result<()> {
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;
    let full = full_values();
    let full = full.to_str().context("values path")?;
    helm(&["lint", "--strict", chart])?;
    helm(&["lint", "--strict", chart, "-f", full])?;

    // Defaults: cluster-wide, two replicas, CRDs installed and kept.
    let objects = render(&[])?;
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Job",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    // The uninstall check (tests/tests/uninstall.rs): a pre-delete hook as the operator.
    let check = find(&objects, "Job", "hookline-uninstall-check")?;
    assert_eq!(
        check["metadata"]["annotations"]["helm.sh/hook"],
        "pre-delete"
    );
    assert_eq!(
        check["spec"]["template"]["spec"]["serviceAccountName"],
        "hookline"
    );
    for crd in ["webhooks.hookline.dev", "webhookgateways.hookline.dev"] {
        let crd = find(&objects, "CustomResourceDefinition", crd)?;
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"],
            "keep"
        );
    }
    let deployment = find(&objects, "Deployment", "hookline")?;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env: Vec<&str> = container["env"]
        .as_array()
        .context("env")?
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in [
        "POD_NAME",
        "POD_NAMESPACE",
        "HOOKLINE_WORKER_IMAGE",
        "HOOKLINE_LEASE_NAME",
    ] {
        assert!(env.contains(&name), "{name} missing from {env:?}");
    }
    assert!(
        !env.contains(&"HOOKLINE_NAMESPACES"),
        "cluster-wide: no namespace list"
    );
    // The allocator settings the benchmarks measure (docs/benchmarks.md "Memory").
    let tunables = container["env"]
        .as_array()
        .context("env")?
        .iter()
        .find(|e| e["name"] == "GLIBC_TUNABLES")
        .context("GLIBC_TUNABLES missing")?;
    assert_eq!(
        tunables["value"].as_str(),
        Some(hookline_tests::chart_malloc_tunables()?.as_str())
    );
    assert!(
        hookline_tests::chart_malloc_tunables()?.contains("glibc.malloc.arena_max=1"),
        "one malloc arena by default"
    );
    let objects_default_malloc = render(&["--set", "mallocTunables="])?;
    let container = &find(&objects_default_malloc, "Deployment", "hookline")?["spec"]["template"]["spec"]
        ["containers"][0];
    assert!(
        container["env"]
            .as_array()
            .context("env")?
            .iter()
            .all(|e| e["name"] != "GLIBC_TUNABLES"),
        "an empty mallocTunables leaves glibc's defaults"
    );
    assert_eq!(
        pod["topologySpreadConstraints"].as_array().map(Vec::len),
        Some(2)
    );
    // Cluster-wide, the operator's own ClusterRole grants nothing on Secrets; the
    // Secrets ClusterRole is bound per namespace only.
    let operator = grants(find(&objects, "ClusterRole", "hookline")?);
    assert!(
        operator
            .iter()
            .all(|(_, resource, _, _)| resource != "secrets"),
        "{operator:?}"
    );
    assert!(
        operator
            .iter()
            .all(|(group, _, verb, _)| verb != "*" && (verb != "delete" || group == "keda.sh")),
        "no wildcard, and deletes only of KEDA ScaledObjects: {operator:?}"
    );
    assert_eq!(
        grants(find(&objects, "ClusterRole", "hookline-secrets")?),
        [
            (String::new(), "secrets".to_owned(), "get".to_owned(), false),
            (
                String::new(),
                "secrets".to_owned(),
                "create".to_owned(),
                false
            ),
        ],
        "the Secrets role reads and creates Secrets, nothing else"
    );
    assert!(
        objects
            .iter()
            .filter(|o| o["kind"] == "ClusterRoleBinding")
            .all(|b| b["roleRef"]["name"] != "hookline-secrets"),
        "the Secrets ClusterRole is never bound cluster-wide"
    );

    // Options off: no CRDs, nothing kept.
    let objects = render(&["--set", "crds.install=false"])?;
    assert!(!kinds(&objects).contains(&"CustomResourceDefinition".to_owned()));
    let objects = render(&["--set", "crds.keep=false"])?;
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "webhooks.hookline.dev",
    )?;
    assert!(crd["metadata"]["annotations"].is_null(), "{crd}");

    // Everything on, namespaced.
    let objects = render(&["-f", full])?;
    for kind in [
        "NetworkPolicy",
        "PodMonitor",
        "PrometheusRule",
        "Service",
        "ServiceMonitor",
        "WebhookGateway",
    ] {
        assert!(kinds(&objects).contains(&kind.to_owned()), "no {kind}");
    }
    let account = find(&objects, "ServiceAccount", "hookline-operator")?;
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/hookline-operator"
    );
    let cluster_role = grants(find(&objects, "ClusterRole", "hookline")?);
    for namespaced in ["webhooks", "deployments", "secrets", "serviceaccounts"] {
        assert!(
            cluster_role.iter().all(|(_, r, _, _)| r != namespaced),
            "namespaced mode grants {namespaced} cluster-wide: {cluster_role:?}"
        );
    }
    for namespace in ["payments", "shipping"] {
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == "Role"
                    && o["metadata"]["name"] == "hookline"
                    && o["metadata"]["namespace"] == namespace
            })
            .with_context(|| format!("no Role in {namespace}"))?;
        assert!(
            grants(role)
                .iter()
                .any(|(_, r, v, _)| r == "secrets" && v == "get")
        );
    }
    let monitor = find(&objects, "ServiceMonitor", "hookline")?;
    assert_eq!(
        monitor["spec"]["endpoints"][0]["honorLabels"], true,
        "per-Webhook series keep the team's namespace"
    );
    let workers = find(&objects, "PodMonitor", "hookline-workers")?;
    assert_eq!(workers["spec"]["namespaceSelector"]["any"], true);
    assert_eq!(
        workers["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"],
        "webhook"
    );
    let rules = find(&objects, "PrometheusRule", "hookline")?;
    let alerts: Vec<&str> = rules["spec"]["groups"][0]["rules"]
        .as_array()
        .context("rules")?
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "HooklineDeadLetters",
        "HooklineBacklogOld",
        "HooklineReconcileErrors",
    ] {
        assert!(alerts.contains(&alert), "{alert} missing from {alerts:?}");
    }
    Ok(())
}

#[test]
fn every_value_is_documented_described_in_the_schema_and_in_the_readme() -> Result<()> {
    use hookline_tests::chart_docs;
    let values = std::fs::read_to_string(chart().join("values.yaml"))?;
    // `documented` fails on any value without a `# --` comment.
    let documented = chart_docs::documented(&values)?;
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(
        chart().join("values.schema.json"),
    )?)?;
    let undescribed = chart_docs::undescribed_in_schema(&documented, &schema);
    assert!(
        undescribed.is_empty(),
        "values.schema.json lacks (a description of) {undescribed:?}"
    );
    let readme = std::fs::read_to_string(chart().join("README.md"))?;
    assert!(
        readme == chart_docs::render_readme(&readme, &values)?,
        "charts/hookline/README.md is stale; run `make generate` and commit the result"
    );
    Ok(())
}

#[test]
fn the_schema_refuses_unknown_and_malformed_values() -> Result<()> {
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;
    for (value, expected) in [
        ("replicas=2", "replicas"),
        ("logging.format=xml", "format"),
        ("aws.region=Europe", "region"),
        ("aws.namePrefix=Has-Caps", "namePrefix"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("serviceAccount.roleArn=role/hookline", "roleArn"),
        ("replicaCount=0", "replicaCount"),
    ] {
        let stderr = helm_refuses(&[
            "template",
            "x",
            chart,
            "--kube-version",
            KUBE_VERSION,
            "--set",
            value,
        ])?;
        assert!(
            stderr.contains(expected),
            "--set {value}: the refusal does not name {expected}: {stderr}"
        );
    }
    Ok(())
}

struct Subject<'a> {
    namespace: &'a str,
    name: &'a str,
}

/// Whether the ServiceAccount may `verb` `resource` (`group`) in `namespace` (cluster
/// scope when empty), as the API server's authorizer answers.
async fn may(
    client: &kube::Client,
    who: &Subject<'_>,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<bool> {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!(
                "system:serviceaccount:{}:{}",
                who.namespace, who.name
            )),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", who.namespace),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource: (!subresource.is_empty()).then(|| subresource.to_owned()),
                namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                name: (!name.is_empty()).then(|| name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("creating a SubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Checks a table of (expected, verb, group, resource, namespace, name).
async fn check_access(
    client: &kube::Client,
    who: &Subject<'_>,
    table: &[(bool, &str, &str, &str, &str, &str)],
) -> Result<()> {
    let mut wrong = Vec::new();
    for &(expected, verb, group, resource, namespace, name) in table {
        if may(client, who, verb, group, resource, namespace, name).await? != expected {
            wrong.push(format!(
                "{} {verb} {group}/{resource} in '{namespace}' name '{name}'",
                if expected { "cannot" } else { "CAN" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}:{}: {wrong:#?}",
        who.namespace,
        who.name
    );
    Ok(())
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn the_chart_installs_on_a_new_cluster_with_least_privilege() -> Result<()> {
    // A cluster of its own: a new one has no CRDs, as before a first `helm install`.
    let workdir = Workdir::create()?;
    let cluster = KubeCluster::start_bare(&kube_binaries()?, workdir.path()).await?;
    let client = cluster.client().await?;
    let kubeconfig = cluster
        .kubeconfig_path()
        .to_str()
        .context("kubeconfig path")?
        .to_owned();
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;
    for namespace in ["payments", "shipping", "team-a", "team-b"] {
        create_namespace(&client, namespace).await?;
    }

    // Cluster-wide, with a gateway from values: CRDs and their objects in one release.
    let installed = helm(&[
        "install",
        "hookline",
        chart,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
        "--create-namespace",
        "--set",
        "aws.region=eu-west-1",
        "--set",
        "rbac.secretNamespaces={team-a}",
        "--set",
        "gateways[0].name=public",
        "--set",
        "gateways[0].spec.hostname=hooks.example.com",
        "--set",
        "gateways[0].spec.hostedZone.name=example.com",
    ])?;
    // NOTES.txt tells the platform team what is left to do.
    for next in [
        "Hookline 0.1.0 is installed in namespace hookline-system, managing Webhooks in every namespace.",
        "aws eks create-pod-identity-association",
        "(created from values: public)",
        "(granted in: team-a)",
        "--clusterrole=hookline-secrets",
    ] {
        assert!(installed.contains(next), "NOTES lack {next:?}: {installed}");
    }
    let gateways = kubectl(
        Path::new(&kubeconfig),
        &["get", "webhookgateways", "-o", "name"],
    )?;
    assert_eq!(gateways.trim(), "webhookgateway.hookline.dev/public");
    // The gateway came from a post-install hook (its API did not exist before the
    // release); an upgrade with the same values adopts it as an ordinary object.
    let manifest = helm(&[
        "get",
        "manifest",
        "hookline",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
    ])?;
    assert!(
        !manifest.contains("apiVersion: hookline.dev/v1alpha1\nkind: WebhookGateway"),
        "{manifest}"
    );
    helm(&[
        "upgrade",
        "hookline",
        chart,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
        "--reuse-values",
    ])?;
    let manifest = helm(&[
        "get",
        "manifest",
        "hookline",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
    ])?;
    assert!(
        manifest.contains("kind: WebhookGateway"),
        "not adopted: {manifest}"
    );

    let operator = Subject {
        namespace: "hookline-system",
        name: "hookline",
    };
    let hl = "hookline.dev";
    check_access(
        &client,
        &operator,
        &[
            // What it needs.
            (true, "watch", hl, "webhooks", "", ""),
            (true, "patch", hl, "webhooks", "payments", "stripe"),
            (true, "patch", hl, "webhooks/status", "payments", "stripe"),
            (
                true,
                "update",
                hl,
                "webhooks/finalizers",
                "payments",
                "stripe",
            ),
            (true, "watch", hl, "webhookgateways", "", ""),
            (true, "patch", hl, "webhookgateways/status", "", "public"),
            (true, "watch", "apps", "deployments", "", ""),
            (
                true,
                "patch",
                "apps",
                "deployments",
                "payments",
                "stripe-worker",
            ),
            (
                true,
                "patch",
                "apps",
                "deployments/scale",
                "payments",
                "stripe-worker",
            ),
            (true, "create", "", "serviceaccounts", "payments", ""),
            (
                true,
                "patch",
                "",
                "serviceaccounts",
                "payments",
                "stripe-worker",
            ),
            (true, "create", "events.k8s.io", "events", "payments", ""),
            (true, "get", "", "namespaces", "", "payments"),
            (
                true,
                "get",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "scaledobjects.keda.sh",
            ),
            (
                true,
                "patch",
                "keda.sh",
                "scaledobjects",
                "payments",
                "stripe-worker",
            ),
            (
                true,
                "get",
                "coordination.k8s.io",
                "leases",
                "hookline-system",
                "hookline",
            ),
            (
                true,
                "update",
                "coordination.k8s.io",
                "leases",
                "hookline-system",
                "hookline",
            ),
            (true, "get", "", "secrets", "team-a", "stripe-webhook"),
            (true, "create", "", "secrets", "team-a", ""),
            // What it must not.
            (false, "get", "", "secrets", "team-b", "stripe-webhook"),
            (false, "get", "", "secrets", "kube-system", "anything"),
            (false, "list", "", "secrets", "", ""),
            (false, "list", "", "secrets", "team-a", ""),
            (false, "watch", "", "secrets", "team-a", ""),
            (false, "update", "", "secrets", "team-a", "stripe-webhook"),
            (false, "delete", "", "secrets", "team-a", "stripe-webhook"),
            (
                false,
                "delete",
                "apps",
                "deployments",
                "payments",
                "stripe-worker",
            ),
            (false, "create", hl, "webhooks", "payments", ""),
            (false, "delete", hl, "webhooks", "payments", "stripe"),
            (false, "get", "", "configmaps", "payments", "anything"),
            (false, "create", "", "pods", "payments", ""),
            (false, "list", "", "namespaces", "", ""),
            (
                false,
                "get",
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "",
                "webhooks.hookline.dev",
            ),
            (
                false,
                "update",
                "coordination.k8s.io",
                "leases",
                "hookline-system",
                "another",
            ),
            (
                false,
                "update",
                "coordination.k8s.io",
                "leases",
                "kube-system",
                "hookline",
            ),
            (
                false,
                "escalate",
                "rbac.authorization.k8s.io",
                "clusterroles",
                "",
                "",
            ),
        ],
    )
    .await?;

    // Namespaced: a second installation managing `payments` only.
    helm(&[
        "install",
        "scoped",
        chart,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "scoped-system",
        "--create-namespace",
        "--set",
        "crds.install=false",
        "--set",
        "watchNamespaces={payments}",
    ])?;
    let scoped = Subject {
        namespace: "scoped-system",
        name: "scoped-hookline",
    };
    check_access(
        &client,
        &scoped,
        &[
            (true, "watch", hl, "webhooks", "payments", ""),
            (true, "patch", hl, "webhooks/status", "payments", "stripe"),
            (
                true,
                "patch",
                "apps",
                "deployments",
                "payments",
                "stripe-worker",
            ),
            (true, "get", "", "secrets", "payments", "stripe-webhook"),
            (true, "create", "", "secrets", "payments", ""),
            (true, "watch", hl, "webhookgateways", "", ""),
            (true, "create", "events.k8s.io", "events", "default", ""),
            (
                true,
                "update",
                "coordination.k8s.io",
                "leases",
                "scoped-system",
                "scoped-hookline",
            ),
            (false, "watch", hl, "webhooks", "", ""),
            (false, "watch", hl, "webhooks", "shipping", ""),
            (false, "get", "", "secrets", "shipping", "stripe-webhook"),
            (false, "list", "", "secrets", "payments", ""),
            (false, "patch", "apps", "deployments", "shipping", "x"),
            (false, "watch", "apps", "deployments", "", ""),
            (false, "create", "events.k8s.io", "events", "shipping", ""),
        ],
    )
    .await?;

    // Everything on: accepted by the API server as rendered (server-side dry-run),
    // ServiceMonitor and PrometheusRule included; in a namespace of its own, as a
    // new installation would be.
    create_namespace(&client, "full-system").await?;
    for crd in hookline_tests::monitoring_crds()? {
        Api::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>::all(client.clone())
            .create(&PostParams::default(), &crd)
            .await
            .context("installing a Prometheus Operator CRD")?;
    }
    let full = full_values();
    let rendered = helm(&[
        "template",
        "hookline",
        chart,
        "--namespace",
        "full-system",
        "--kube-version",
        KUBE_VERSION,
        "-f",
        full.to_str().context("values path")?,
    ])?;
    let manifest = workdir.path().join("full.yaml");
    std::fs::write(&manifest, rendered)?;
    // Monitoring CRDs may take a moment to be served.
    let mut last = String::new();
    for _ in 0..20 {
        match kubectl(
            Path::new(&kubeconfig),
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--dry-run=server",
                "-f",
                manifest.to_str().context("manifest path")?,
            ],
        ) {
            Ok(out) => {
                last.clear();
                assert!(out.contains("servicemonitor.monitoring.coreos.com/hookline serverside-applied (server dry run)"), "{out}");
                break;
            }
            Err(e) => {
                last = format!("{e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    assert!(last.is_empty(), "server-side dry-run failed: {last}");

    // Uninstall keeps the CRDs (and so every Webhook) and the gateways. No kubelet
    // runs the pre-delete check's Job here (tests/tests/uninstall.rs tests it).
    helm(&[
        "uninstall",
        "hookline",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
        "--no-hooks",
    ])?;
    let left = kubectl(
        Path::new(&kubeconfig),
        &["get", "crd,webhookgateways", "-o", "name"],
    )?;
    for kept in [
        "customresourcedefinition.apiextensions.k8s.io/webhooks.hookline.dev",
        "customresourcedefinition.apiextensions.k8s.io/webhookgateways.hookline.dev",
        "webhookgateway.hookline.dev/public",
    ] {
        assert!(left.contains(kept), "{kept} was removed: {left}");
    }
    Ok(())
}

/// Whether `conditions` has `type_` with `status` (and `reason`, when given).
fn has_condition(
    conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
}

/// The strongest check of "what it needs": the operator binary, authenticated as the
/// chart's ServiceAccount with nothing but the chart's RBAC, leads, reconciles a
/// gateway and a Webhook to Ready, says SecretForbidden where a namespace did not
/// grant Secrets, and hands its Lease back on SIGTERM.
#[tokio::test]
async fn the_operator_works_with_exactly_the_charts_rbac() -> Result<()> {
    use hookline_crds::{Webhook, WebhookGateway};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    use std::time::Duration;

    let operator_binary = repo_root().join("target/debug/hookline-operator");
    if !operator_binary.is_file() {
        bail!(
            "{} is not built; `cargo test --workspace` builds it (or `cargo build --workspace --bins`)",
            operator_binary.display()
        );
    }
    let workdir = Workdir::create()?;
    let (kube_bin, venv_bin) = (kube_binaries()?, hookline_tests::emulator_venv()?);
    let (cluster, aws) = tokio::try_join!(
        KubeCluster::start_bare(&kube_bin, workdir.path()),
        // IAM enforced: the operator runs as a user holding only the chart's policy.
        hookline_tests::Emulator::start_with(
            hookline_tests::EmulatorKind::MiniStack,
            &venv_bin,
            workdir.path(),
            hookline_tests::aws::Options { enforce_iam: true },
        ),
    )?;
    let admin = cluster.client().await?;
    let kubeconfig = cluster
        .kubeconfig_path()
        .to_str()
        .context("kubeconfig path")?
        .to_owned();
    let chart = chart();
    let chart = chart.to_str().context("chart path")?;
    // Namespaces first: the chart binds the Secrets role in `payments`.
    for team in ["payments", "shipping"] {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": team, "labels": {"hookline.dev/webhooks": "allowed"}}
        }))?;
        Api::<Namespace>::all(admin.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
    }
    helm(&[
        "install",
        "hookline",
        chart,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        "hookline-system",
        "--create-namespace",
        "--set",
        "aws.region=us-east-1",
        "--set",
        "rbac.secretNamespaces={payments}",
    ])?;

    // The ServiceAccount's own credentials, as the pod would have them.
    let token = kubectl(
        Path::new(&kubeconfig),
        &[
            "-n",
            "hookline-system",
            "create",
            "token",
            "hookline",
            "--duration=1h",
        ],
    )?;
    let mut config = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path())?;
    for user in &mut config.auth_infos {
        user.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.trim().to_owned().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    let sa_kubeconfig = workdir.path().join("operator.kubeconfig");
    std::fs::write(&sa_kubeconfig, serde_json::to_string(&config)?)?;

    let sdk = aws.sdk_config().await;
    let zone_id = aws_sdk_route53::Client::new(&sdk)
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("hookline-chart-test")
        .send()
        .await?
        .hosted_zone
        .context("CreateHostedZone returned no zone")?
        .id;
    let policy = hookline_tests::iam::chart_policy(
        "operator-iam-policy.json",
        &hookline_tests::iam::PolicyValues {
            region: hookline_tests::aws::REGION.to_owned(),
            account: aws.account_id().to_owned(),
            // The chart's default aws.namePrefix.
            prefix: "hl".to_owned(),
            zone_id: zone_id.trim_start_matches("/hostedzone/").to_owned(),
            namespace: String::new(),
        },
    )?;
    let operator_keys = hookline_tests::iam::user_with_policy(
        &aws,
        "hookline-operator",
        &hookline_tests::iam::as_evaluated_by(aws.kind(), &policy),
    )
    .await?;
    let metrics_port = hookline_tests::process::free_port()?.to_string();
    let operator = hookline_tests::process::Supervised::spawn(
        "hookline-operator",
        &operator_binary,
        std::iter::empty::<&str>(),
        &[
            ("KUBECONFIG", sa_kubeconfig.to_str().context("path")?),
            ("AWS_ENDPOINT_URL", aws.endpoint()),
            ("AWS_REGION", hookline_tests::aws::REGION),
            ("AWS_ACCESS_KEY_ID", operator_keys.access_key_id()),
            ("AWS_SECRET_ACCESS_KEY", operator_keys.secret_access_key()),
            ("POD_NAMESPACE", "hookline-system"),
            ("POD_NAME", "hookline-0"),
            ("HOOKLINE_LEASE_NAME", "hookline"),
            (
                "HOOKLINE_METRICS_ADDR",
                &format!("127.0.0.1:{metrics_port}"),
            ),
            ("HOOKLINE_LOG_FORMAT", "text"),
            ("RUST_LOG", "info"),
        ],
        workdir.path().join("operator.log"),
    )?;

    // The platform team's gateway; two teams' namespaces, one granting Secrets.
    let gateway: Value = serde_saphyr::from_str(&std::fs::read_to_string(
        repo_root().join("crds/samples/webhookgateway.yaml"),
    )?)?;
    let apply = PatchParams::apply("chart-test");
    Api::<WebhookGateway>::all(admin.clone())
        .patch("public", &apply, &Patch::Apply(&gateway))
        .await?;
    let mut webhook: Value = serde_saphyr::from_str(&std::fs::read_to_string(
        repo_root().join("crds/samples/webhook.yaml"),
    )?)?;
    for team in ["payments", "shipping"] {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "stripe-webhook", "namespace": team},
            "stringData": {"signing-secret": "whsec_test"},
        }))?;
        Api::<Secret>::namespaced(admin.clone(), team)
            .create(&PostParams::default(), &secret)
            .await?;
        webhook["metadata"]["namespace"] = team.into();
        webhook["spec"]["path"] = format!("/{team}/stripe").into();
        Api::<Webhook>::namespaced(admin.clone(), team)
            .patch("stripe", &apply, &Patch::Apply(&webhook))
            .await?;
    }

    let leases: Api<Lease> = Api::namespaced(admin.clone(), "hookline-system");
    let holder = || async {
        Ok::<_, anyhow::Error>(
            leases
                .get_opt("hookline")
                .await?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity),
        )
    };
    wait_for("the operator to lead", Duration::from_secs(30), || async {
        Ok(holder().await?.as_deref() == Some("hookline-0"))
    })
    .await?;
    let gateways: Api<WebhookGateway> = Api::all(admin.clone());
    wait_for(
        "the gateway to be Ready",
        Duration::from_secs(120),
        || async {
            let gateway = gateways.get("public").await?;
            let conditions = gateway.status.as_ref().map(|s| &s.conditions);
            Ok(has_condition(conditions, "Ready", "True", None))
        },
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "payments");
    wait_for(
        "the worker Deployment",
        Duration::from_secs(120),
        || async { Ok(deployments.get_opt("stripe-worker").await?.is_some()) },
    )
    .await?;
    // No kubelet on the bench: report the worker ready as one would.
    deployments
        .patch_status(
            "stripe-worker",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}})),
        )
        .await?;
    let payments: Api<Webhook> = Api::namespaced(admin.clone(), "payments");
    wait_for(
        "the payments Webhook to be Ready",
        Duration::from_secs(120),
        || async {
            let webhook = payments.get("stripe").await?;
            let conditions = webhook.status.as_ref().map(|s| &s.conditions);
            Ok(has_condition(conditions, "Ready", "True", None))
        },
    )
    .await?;
    let shipping: Api<Webhook> = Api::namespaced(admin.clone(), "shipping");
    wait_for(
        "the shipping Webhook to say SecretForbidden",
        Duration::from_secs(60),
        || async {
            let webhook = shipping.get("stripe").await?;
            let conditions = webhook.status.as_ref().map(|s| &s.conditions);
            Ok(has_condition(
                conditions,
                "WorkerReady",
                "False",
                Some("SecretForbidden"),
            ))
        },
    )
    .await?;

    // A clean stop hands the Lease back.
    let status = Command::new("kill")
        .args(["-TERM", &operator.pid().to_string()])
        .status()?;
    assert!(status.success(), "kill -TERM");
    wait_for(
        "the Lease to be released",
        Duration::from_secs(30),
        || async { Ok(holder().await?.is_none()) },
    )
    .await?;
    let log = std::fs::read_to_string(operator.log_path())?;
    assert!(
        !log.contains("forbidden")
            || log.matches("forbidden").count() == log.matches("SecretForbidden").count(),
        "the operator met RBAC refusals beyond the expected Secret: see {}",
        operator.log_path().display()
    );
    drop(operator);
    drop(aws);
    drop(cluster);
    Ok(())
}
