//! The whole product on the bench, as the demo runs it: the operator binary against
//! a bench of its own, the sample gateway Ready, Webhooks Ready, and worker binaries
//! draining their queues into a handler of the test's.
//!
//! The bench has no kubelet: a worker runs as a local process, and the stack reports
//! its Deployment ready the way a kubelet would.

use anyhow::{Context as _, Result, bail};
use hookline_crds::{Webhook, WebhookGateway};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

use crate::faults::{FaultProxy, Rule};
use crate::process::Supervised;
use crate::util::{ready, wait_for};
use crate::{Bench, EmulatorKind};

const MANAGER: &str = "hookline-stack";

/// The bench with the operator running on it.
pub struct Stack {
    pub bench: Bench,
    pub client: kube::Client,
    pub sdk: aws_config::SdkConfig,
    operator: Supervised,
    metrics_addr: String,
    /// Where the operator reaches AWS and the API server: a second replica uses the same.
    aws_endpoint: String,
    kubeconfig: PathBuf,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("bench", &self.bench)
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

/// A binary of this workspace in `target/debug`, built by `cargo test --workspace`
/// (and `make demo`).
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let path = crate::repo_root().join("target/debug").join(name);
    if !path.is_file() {
        bail!(
            "{} is not built; run `cargo build --workspace --bins` (or `make test`) first",
            path.display()
        );
    }
    Ok(path)
}

impl Stack {
    /// Starts a bench on `kind` and the operator against it.
    pub async fn start(kind: EmulatorKind) -> Result<Self> {
        Self::start_with(kind, &[]).await
    }

    /// [`Stack::start`] with more (or overriding) environment variables for the
    /// operator, e.g. `HOOKLINE_LEADER_ELECTION=true`.
    pub async fn start_with(kind: EmulatorKind, extra: &[(&str, &str)]) -> Result<Self> {
        let bench = Bench::start_on(kind, crate::aws::Options::default())
            .await
            .context("starting the bench")?;
        let endpoint = bench.aws.endpoint().to_owned();
        let kubeconfig = bench.kube.kubeconfig_path().to_owned();
        Self::with_operator(bench, &endpoint, &kubeconfig, extra, binary("operator")).await
    }

    /// [`Stack::start`] with the operator started by `spawn`, given the bench and the
    /// operator's environment (e.g. in its container image: tests/tests/images.rs).
    pub async fn start_with_operator<F>(kind: EmulatorKind, spawn: F) -> Result<Self>
    where
        F: FnOnce(&Bench, &[(&str, &str)]) -> Result<Supervised>,
    {
        let bench = Bench::start_on(kind, crate::aws::Options::default())
            .await
            .context("starting the bench")?;
        let endpoint = bench.aws.endpoint().to_owned();
        let kubeconfig = bench.kube.kubeconfig_path().to_owned();
        Self::with_operator(bench, &endpoint, &kubeconfig, &[], spawn).await
    }

    /// [`Stack::start`] with the operator reaching AWS through a
    /// [`FaultProxy`] in front of the emulator, with `rules`; the test and the
    /// stack's own calls ([`Stack::sdk`]) go to the emulator directly.
    pub async fn start_with_faults(
        kind: EmulatorKind,
        rules: Vec<Rule>,
    ) -> Result<(Self, FaultProxy)> {
        let bench = Bench::start_on(kind, crate::aws::Options::default())
            .await
            .context("starting the bench")?;
        let proxy = FaultProxy::start(bench.aws.endpoint(), rules).await?;
        let stack = Self::on(bench, proxy.endpoint()).await?;
        Ok((stack, proxy))
    }

    /// The operator on `bench`, calling AWS at `aws_endpoint`.
    async fn on(bench: Bench, aws_endpoint: &str) -> Result<Self> {
        let kubeconfig = bench.kube.kubeconfig_path().to_owned();
        Self::with_operator(bench, aws_endpoint, &kubeconfig, &[], binary("operator")).await
    }

    /// The operator on `bench`, calling AWS at `aws_endpoint` and the API server
    /// through `kubeconfig` (e.g. both through toxiproxy); the test's own clients
    /// ([`Stack::client`], [`Stack::sdk`]) reach the bench directly.
    pub async fn on_via(
        bench: Bench,
        aws_endpoint: &str,
        kubeconfig: &std::path::Path,
    ) -> Result<Self> {
        Self::with_operator(bench, aws_endpoint, kubeconfig, &[], binary("operator")).await
    }

    /// The operator on `bench` as [`Stack::on_via`] starts it, with `extra`
    /// environment variables as in [`Stack::start_with`].
    async fn with_operator<F>(
        bench: Bench,
        aws_endpoint: &str,
        kubeconfig: &std::path::Path,
        extra: &[(&str, &str)],
        spawn: F,
    ) -> Result<Self>
    where
        F: FnOnce(&Bench, &[(&str, &str)]) -> Result<Supervised>,
    {
        let client = bench.kube.client().await?;
        let sdk = bench.aws.sdk_config().await;
        let metrics_addr = format!("127.0.0.1:{}", crate::process::free_port()?);
        let env = operator_env(&bench, aws_endpoint, kubeconfig, &metrics_addr, extra);
        let operator = spawn(&bench, &pairs(&env))?;
        Ok(Self {
            bench,
            client,
            sdk,
            operator,
            metrics_addr,
            aws_endpoint: aws_endpoint.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
        })
    }

    /// Another operator process on this stack (a second replica), logging to
    /// `<name>.log`, with its own metrics address (returned); `extra` as in
    /// [`Stack::start_with`].
    pub fn spawn_operator(
        &self,
        name: &str,
        extra: &[(&str, &str)],
    ) -> Result<(Supervised, String)> {
        spawn_operator(
            &self.bench,
            name,
            &self.aws_endpoint,
            &self.kubeconfig,
            extra,
        )
    }

    /// `127.0.0.1:<port>` of the operator's /metrics.
    pub fn metrics_addr(&self) -> &str {
        &self.metrics_addr
    }

    /// The `example.com` zone and the sample gateway (`crds/samples/webhookgateway.yaml`,
    /// `hooks.example.com`), Ready.
    pub async fn gateway(&mut self) -> Result<WebhookGateway> {
        self.apply_gateway().await?;
        let gateways: Api<WebhookGateway> = Api::all(self.client.clone());
        self.wait_ready("the gateway public", Duration::from_secs(180), || async {
            Ok(ready(
                gateways.get("public").await?.status.map(|s| s.conditions),
            ))
        })
        .await?;
        Ok(gateways.get("public").await?)
    }

    /// The `example.com` zone and the sample gateway, applied; not waited for.
    pub async fn apply_gateway(&self) -> Result<()> {
        aws_sdk_route53::Client::new(&self.sdk)
            .create_hosted_zone()
            .name("example.com")
            .caller_reference("hookline-stack")
            .send()
            .await
            .context("creating the example.com zone")?;
        let gateway: serde_json::Value = sample("webhookgateway.yaml")?;
        let gateways: Api<WebhookGateway> = Api::all(self.client.clone());
        gateways
            .patch(
                "public",
                &PatchParams::apply(MANAGER),
                &Patch::Apply(&gateway),
            )
            .await?;
        Ok(())
    }

    /// Applies `webhook` (its namespace is created, allowed by the sample gateway,
    /// and given the Secret `secret` = (name, key, value)), plays the kubelet for its
    /// worker Deployment, and waits until it is Ready.
    pub async fn webhook(
        &mut self,
        webhook: serde_json::Value,
        secret: (&str, &str, &str),
    ) -> Result<Webhook> {
        self.apply_webhook(webhook, secret, Worker::Reported).await
    }

    /// As [`Stack::webhook`] for a worker that runs on a [`crate::node::Node`]: the
    /// kubelet reports the Deployment's pods, and the worker sidecar is given the
    /// emulator's credentials ([`crate::node::give_emulator_credentials`]).
    pub async fn webhook_on_node(
        &mut self,
        webhook: serde_json::Value,
        secret: (&str, &str, &str),
    ) -> Result<Webhook> {
        self.apply_webhook(webhook, secret, Worker::OnNode).await
    }

    async fn apply_webhook(
        &mut self,
        webhook: serde_json::Value,
        secret: (&str, &str, &str),
        worker: Worker,
    ) -> Result<Webhook> {
        let namespace = webhook["metadata"]["namespace"]
            .as_str()
            .context("the Webhook's namespace")?
            .to_owned();
        let name = webhook["metadata"]["name"]
            .as_str()
            .context("the Webhook's name")?
            .to_owned();
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": namespace, "labels": {"hookline.dev/webhooks": "allowed"}}}),
        )?;
        Api::<Namespace>::all(self.client.clone())
            .patch(&namespace, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
            .await?;
        self.put_secret(&namespace, secret).await?;
        let webhooks: Api<Webhook> = Api::namespaced(self.client.clone(), &namespace);
        webhooks
            .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&webhook))
            .await?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let deployment = format!("{name}-worker");
        match worker {
            Worker::Reported => {
                self.wait_ready(
                    "the worker Deployment",
                    Duration::from_secs(120),
                    || async { Ok(deployments.get_opt(&deployment).await?.is_some()) },
                )
                .await?;
                let ready_status = json!({"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}});
                deployments
                    .patch_status(
                        &deployment,
                        &PatchParams::default(),
                        &Patch::Merge(&ready_status),
                    )
                    .await?;
            }
            Worker::OnNode => {
                crate::node::give_emulator_credentials(&self.client, &namespace, &deployment)
                    .await
                    .with_context(|| format!("operator log:\n{}", self.operator.log_tail(30)))?;
            }
        }
        // On a node the pod's image starts, its probes pass and the Deployment becomes
        // available: longer than a reported status.
        self.wait_ready(
            &format!("the Webhook {name}"),
            Duration::from_secs(180),
            || async {
                Ok(ready(
                    webhooks.get(&name).await?.status.map(|s| s.conditions),
                ))
            },
        )
        .await?;
        Ok(webhooks.get(&name).await?)
    }

    /// Writes the Secret (name, key, value) in `namespace`.
    pub async fn put_secret(
        &self,
        namespace: &str,
        (name, key, value): (&str, &str, &str),
    ) -> Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {key: value},
        }))?;
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .patch(
                name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    /// Starts a worker for `webhook` (Ready, so its status names its queues) that
    /// delivers to `handler_url`, verifying with `preset` and the secret in
    /// `secret_file`; `extra` adds or overrides environment variables.
    pub fn worker(
        &self,
        webhook: &Webhook,
        handler_url: &str,
        (preset, secret_file): (&str, &std::path::Path),
        extra: &[(&str, &str)],
    ) -> Result<Supervised> {
        let status = webhook.status.clone().unwrap_or_default();
        let queue = status.queue.context("the Webhook's queue")?;
        let dead_letter = status.dead_letter_queue.context("the Webhook's DLQ")?;
        let secret_file = secret_file.display().to_string();
        let mut env = aws_env(&self.bench);
        env.extend([
            ("HOOKLINE_QUEUE_URL", queue.url.as_str()),
            ("HOOKLINE_DEAD_LETTER_QUEUE_URL", dead_letter.url.as_str()),
            ("HOOKLINE_HANDLER_URL", handler_url),
            ("HOOKLINE_SIGNATURE_PRESET", preset),
            ("HOOKLINE_SIGNATURE_SECRET_FILES", secret_file.as_str()),
            ("HOOKLINE_METRICS_ADDR", "127.0.0.1:0"),
            ("HOOKLINE_LOG_FORMAT", "text"),
        ]);
        env.extend(extra.iter().copied());
        let name = webhook.metadata.name.as_deref().unwrap_or("worker");
        Supervised::spawn(
            "hookline-worker",
            &workspace_binary("hookline-worker")?,
            ["run"],
            &env,
            self.bench.workdir().join(format!("worker-{name}.log")),
        )
    }

    /// The operator process.
    pub fn operator(&self) -> &Supervised {
        &self.operator
    }

    /// The operator process, to stop it.
    pub fn operator_mut(&mut self) -> &mut Supervised {
        &mut self.operator
    }

    /// The environment a process needs to reach the bench's AWS and API server.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = aws_env(&self.bench)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        env.push((
            "KUBECONFIG".to_owned(),
            self.bench.kube.kubeconfig_path().display().to_string(),
        ));
        env
    }

    /// [`wait_for`], failing early with the operator's log when it died.
    async fn wait_ready<F, Fut>(&mut self, what: &str, timeout: Duration, check: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let waited = wait_for(what, timeout, check).await;
        self.operator.check_running()?;
        waited.with_context(|| format!("operator log:\n{}", self.operator.log_tail(30)))
    }
}

/// Starts the operator binary against `bench`: leader election off unless `extra`
/// turns it on; `extra` comes last, so it overrides.
fn spawn_operator(
    bench: &Bench,
    name: &str,
    aws_endpoint: &str,
    kubeconfig: &std::path::Path,
    extra: &[(&str, &str)],
) -> Result<(Supervised, String)> {
    let metrics = format!("127.0.0.1:{}", crate::process::free_port()?);
    let env = operator_env(bench, aws_endpoint, kubeconfig, &metrics, extra);
    let operator = binary(name)(bench, &pairs(&env))?;
    Ok((operator, metrics))
}

/// Starts the workspace's operator binary, logging to `<name>.log` in the bench.
fn binary(name: &str) -> impl FnOnce(&Bench, &[(&str, &str)]) -> Result<Supervised> + '_ {
    move |bench, env| {
        Supervised::spawn(
            "hookline-operator",
            &workspace_binary("hookline-operator")?,
            std::iter::empty::<&str>(),
            env,
            bench.workdir().join(format!("{name}.log")),
        )
    }
}

/// The operator's environment: AWS at `aws_endpoint`, the API server through
/// `kubeconfig`, /metrics on `metrics`; `extra` adds or overrides variables.
fn operator_env(
    bench: &Bench,
    aws_endpoint: &str,
    kubeconfig: &std::path::Path,
    metrics: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let kubeconfig = kubeconfig.display().to_string();
    let mut env: Vec<(String, String)> = aws_env(bench)
        .into_iter()
        .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
        .chain([
            ("AWS_ENDPOINT_URL", aws_endpoint),
            ("KUBECONFIG", kubeconfig.as_str()),
            ("HOOKLINE_LEADER_ELECTION", "false"),
            ("HOOKLINE_METRICS_ADDR", metrics),
            ("HOOKLINE_CLUSTER_NAME", "stack"),
            ("HOOKLINE_LOG_FORMAT", "text"),
            ("RUST_LOG", "info"),
        ])
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push(((*key).to_owned(), (*value).to_owned()));
    }
    env
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn aws_env(bench: &Bench) -> Vec<(&'static str, &str)> {
    vec![
        ("AWS_ENDPOINT_URL", bench.aws.endpoint()),
        ("AWS_REGION", crate::aws::REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
}

/// A sample of `crds/samples/`, parsed.
pub fn sample<T: serde::de::DeserializeOwned>(file: &str) -> Result<T> {
    let path = crate::repo_root().join("crds/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Who makes a Webhook's worker Deployment ready ([`Stack::webhook`]).
#[derive(Debug, Clone, Copy)]
enum Worker {
    /// No kubelet: the stack writes the Deployment's status as a kubelet would, and
    /// the test runs the worker as a local process.
    Reported,
    /// A [`crate::node::Node`] runs its pods.
    OnNode,
}
