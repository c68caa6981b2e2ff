//! `hookline-worker`: the sidecar that drains a webhook's queue into the handler
//! container (`run`), and the tool that moves a dead-letter queue back (`redrive`).

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use clap::Parser;
use hookline_contract::env::SecretFiles;
use hookline_worker::config::{Cli, Command, LogFormat, RunArgs};
use hookline_worker::secrets::SecretSource;
use hookline_worker::signature::Preset;
use hookline_worker::{Backoff, Consumer, ConsumerConfig, HttpHandler, Metrics, Verifier};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    hookline_telemetry::init_logging(matches!(cli.log_format, LogFormat::Json));
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    match cli.command {
        Command::Run(args) => run(sqs, *args).await,
        Command::Redrive { from, to } => {
            let report = hookline_worker::redrive(&sqs, &from, &to).await?;
            info!(moved = report.moved, "redrive done");
            Ok(())
        }
    }
}

async fn run(sqs: aws_sdk_sqs::Client, args: RunArgs) -> Result<()> {
    let verifier = verifier(&args)?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let registry = Arc::new(registry);

    let mut config = ConsumerConfig::new(args.queue_url);
    config.dead_letter_queue_url = args.dead_letter_queue_url;
    config.concurrency = args.concurrency;
    config.pollers = args.pollers;
    config.visibility_timeout = Duration::from_secs(args.visibility_timeout_seconds);
    config.max_receive_count = args.max_receive_count;
    config.backoff = Backoff {
        initial: Duration::from_secs(args.backoff_initial_seconds),
        max: Duration::from_secs(args.backoff_max_seconds),
    };
    let handler = HttpHandler::new(
        args.handler_url,
        Duration::from_secs(args.handler_timeout_seconds),
    );
    let mut consumer = Consumer::new(sqs, config, handler).with_metrics(metrics.clone());
    let shutdown = CancellationToken::new();
    if let Some(Signing {
        verifier,
        source,
        loaded,
    }) = verifier
    {
        consumer = consumer.with_shared_verifier(verifier.clone());
        if args.signature_reload_seconds > 0 {
            tokio::spawn(hookline_worker::secrets::watch(
                source,
                verifier,
                loaded,
                Duration::from_secs(args.signature_reload_seconds),
                metrics,
                shutdown.clone(),
            ));
        }
    }

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "listening on {} for /healthz and /metrics",
                args.metrics_addr
            )
        })?;
    info!(addr = %listener.local_addr()?, "serving /healthz and /metrics");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || hookline_telemetry::metrics_text(registry.clone())),
        );
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });

    let signals = shutdown.clone();
    tokio::spawn(async move {
        hookline_telemetry::shutdown_signal().await;
        info!("shutting down: finishing messages in flight");
        signals.cancel();
    });

    let result = consumer.run(shutdown.clone()).await;
    shutdown.cancel();
    match server.await {
        Ok(Err(e)) => error!(error = %e, "the metrics server failed"),
        Err(e) => error!(error = %e, "the metrics server task failed"),
        Ok(Ok(())) => {}
    }
    result.context("running the consumer")
}

/// A verifier and where its secrets come from.
struct Signing {
    verifier: Arc<Verifier>,
    source: SecretSource,
    /// The secrets it was built with.
    loaded: Vec<Vec<u8>>,
}

fn verifier(args: &RunArgs) -> Result<Option<Signing>> {
    let Some(signature) = args.signature_env()? else {
        return Ok(None);
    };
    let preset = Preset::new(signature.preset, signature.generic_hmac)
        .context("--signature-preset generic-hmac needs --hmac-header")?;
    let source = match signature.secrets {
        SecretFiles::Dir(dir) => SecretSource::Dir(dir),
        SecretFiles::Files(files) => SecretSource::Files(files),
    };
    let loaded = source.load().context("reading the signing secrets")?;
    let verifier = Verifier::new(
        preset,
        &loaded,
        Duration::from_secs(signature.tolerance_seconds),
    )
    .context("configuring signature verification")?
    .with_rotation_window(Duration::from_secs(signature.rotation_window_seconds))
    .with_public_url(signature.public_url);
    Ok(Some(Signing {
        verifier: Arc::new(verifier),
        source,
        loaded,
    }))
}
