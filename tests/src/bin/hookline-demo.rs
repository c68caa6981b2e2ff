//! The README's first command: starts the bench (a real API server and MiniStack),
//! applies the sample WebhookGateway and Webhook, shows what the API server made of
//! them, and shows admission rejecting a bad Webhook. `--keep` leaves it running.

// Printing to the terminal is this program's job.
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result};
use clap::Parser;
use hookline_crds::{Webhook, WebhookGateway};
use hookline_tests::Bench;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::process::Command;
use std::time::Instant;

const MANAGER: &str = "hookline-demo";

#[derive(Parser, Debug)]
#[command(about = "Run Hookline's bench locally and apply the sample resources")]
struct Args {
    /// Keep the bench running until Ctrl-C, and print how to reach it.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();

    step("Starting the bench: etcd + kube-apiserver and MiniStack on 127.0.0.1");
    println!("  (the first run builds kube-apiserver from the Go modules and installs the");
    println!("   emulators into a venv under ~/.cache/hookline: a few minutes, once)");
    let bench = Bench::start().await.context("starting the bench")?;
    println!(
        "  API server {} ({}), MiniStack {}, ready in {:.1}s",
        bench.kube.server_url(),
        bench.kube.version(),
        bench.aws.endpoint(),
        bench.started_in().as_secs_f64()
    );

    let client = bench.kube.client().await?;

    step("Applying the samples (crds/samples/)");
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "payments", "labels": {"hookline.dev/webhooks": "allowed"}}
    }))?;
    Api::<Namespace>::all(client.clone())
        .patch(
            "payments",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&namespace),
        )
        .await
        .context("creating namespace payments")?;
    // Applied as written (untyped), so the defaults shown below come from the API
    // server's schema, not from our Rust types.
    let gateway: serde_json::Value = sample("webhookgateway.yaml")?;
    Api::<WebhookGateway>::all(client.clone())
        .patch(
            "public",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&gateway),
        )
        .await
        .context("applying the sample WebhookGateway")?;
    let webhook: serde_json::Value = sample("webhook.yaml")?;
    let webhooks = Api::<Webhook>::namespaced(client.clone(), "payments");
    let applied = webhooks
        .patch(
            "stripe",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&webhook),
        )
        .await
        .context("applying the sample Webhook")?;
    println!(
        "  webhook payments/stripe accepted; defaults filled in by the API server: maxReceiveCount={}, retention={}s, concurrency={}",
        applied.spec.delivery.max_receive_count,
        applied.spec.delivery.message_retention_seconds,
        applied.spec.worker.concurrency
    );

    step("kubectl get webhookgateways,webhooks -A");
    kubectl(&bench, &["get", "webhookgateways,webhooks", "-A"]);

    step("Admission rejects a bad Webhook before anything reaches AWS");
    let mut bad: Webhook =
        serde_json::from_value(webhook).context("reading the sample as a Webhook")?;
    bad.metadata.name = Some("bad".to_owned());
    bad.spec.path = "/payments/../admin".to_owned();
    bad.spec.delivery.max_receive_count = 0;
    match webhooks.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => println!("  refused: {}", status.message),
        Err(e) => return Err(e).context("creating the bad Webhook"),
        Ok(_) => anyhow::bail!("the API server accepted an invalid Webhook"),
    }

    println!();
    println!("The operator that turns the Webhook into AWS resources is not built yet;");
    println!("the Webhook above therefore has no status.");
    println!("Done in {:.1}s.", started.elapsed().as_secs_f64());

    if args.keep {
        step("Keeping the bench running; Ctrl-C stops it");
        println!(
            "  export KUBECONFIG={}",
            bench.kube.kubeconfig_path().display()
        );
        println!("  export AWS_ENDPOINT_URL={}", bench.aws.endpoint());
        println!(
            "  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION={}",
            hookline_tests::aws::REGION
        );
        println!("  logs: {}", bench.workdir().display());
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
    }
    Ok(())
}

fn step(title: &str) {
    println!("\n==> {title}");
}

fn sample<T: serde::de::DeserializeOwned>(file: &str) -> Result<T> {
    let path = hookline_tests::repo_root().join("crds/samples").join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Shows kubectl's view when kubectl is installed; the demo does not depend on it.
fn kubectl(bench: &Bench, args: &[&str]) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(bench.kube.kubeconfig_path())
        .args(args)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                println!("  {line}");
            }
        }
        Ok(out) => println!(
            "  kubectl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("  (kubectl not available: {e})"),
    }
}
