//! `hookline-worker`: the sidecar that drains a webhook's queue into the handler
//! container (`run`), and the tool that moves a dead-letter queue back (`redrive`).

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_worker::secrets::SecretSource;
use hookline_worker::signature::{DigestEncoding, GenericHmac, Preset};
use hookline_worker::{Backoff, Consumer, ConsumerConfig, HttpHandler, Metrics, Verifier};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "hookline-worker",
    version,
    about = "Delivers a Hookline webhook queue to its handler"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "HOOKLINE_LOG_FORMAT",
        value_enum,
        default_value = "json",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drain the queue into the handler until SIGTERM.
    Run(Box<RunArgs>),
    /// Move every message of a FIFO dead-letter queue back to its queue, in order.
    Redrive {
        /// URL of the dead-letter queue to empty.
        #[arg(long)]
        from: String,
        /// URL of the queue to move the messages to.
        #[arg(long)]
        to: String,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// URL of the webhook's FIFO queue.
    #[arg(long, env = "HOOKLINE_QUEUE_URL")]
    queue_url: String,
    /// URL of its FIFO dead-letter queue (needed with signature verification).
    #[arg(long, env = "HOOKLINE_DEAD_LETTER_QUEUE_URL")]
    dead_letter_queue_url: Option<String>,
    /// Where the handler listens.
    #[arg(
        long,
        env = "HOOKLINE_HANDLER_URL",
        default_value = "http://127.0.0.1:8080/"
    )]
    handler_url: http::Uri,
    /// Seconds one handler call may take.
    #[arg(long, env = "HOOKLINE_HANDLER_TIMEOUT_SECONDS", default_value_t = 30)]
    handler_timeout_seconds: u64,
    /// Message groups handled at once.
    #[arg(long, env = "HOOKLINE_CONCURRENCY", default_value_t = 10)]
    concurrency: usize,
    /// Concurrent long polls.
    #[arg(long, env = "HOOKLINE_POLLERS", default_value_t = 2)]
    pollers: usize,
    /// The queue's visibility timeout in seconds.
    #[arg(
        long,
        env = "HOOKLINE_VISIBILITY_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    visibility_timeout_seconds: u64,
    /// The queue's maxReceiveCount: a message failing its last delivery goes to the
    /// dead-letter queue at once and its group carries on.
    #[arg(long, env = "HOOKLINE_MAX_RECEIVE_COUNT")]
    max_receive_count: Option<u32>,
    /// First retry delay in seconds.
    #[arg(long, env = "HOOKLINE_BACKOFF_INITIAL_SECONDS", default_value_t = 5)]
    backoff_initial_seconds: u64,
    /// Longest retry delay in seconds.
    #[arg(long, env = "HOOKLINE_BACKOFF_MAX_SECONDS", default_value_t = 900)]
    backoff_max_seconds: u64,
    /// Signature scheme to verify; none when omitted.
    #[arg(long, env = "HOOKLINE_SIGNATURE_PRESET", value_enum)]
    signature_preset: Option<PresetArg>,
    /// Files holding accepted signing secrets (one secret per file, as a mounted
    /// Secret key). Repeat, or separate with commas, to accept several during rotation.
    #[arg(
        long,
        env = "HOOKLINE_SIGNATURE_SECRET_FILES",
        value_delimiter = ',',
        conflicts_with = "signature_secret_dir"
    )]
    signature_secret_file: Vec<PathBuf>,
    /// A mounted Secret whose every key is an accepted signing secret (instead of
    /// --signature-secret-file): keys added later are picked up too.
    #[arg(long, env = "HOOKLINE_SIGNATURE_SECRET_DIR")]
    signature_secret_dir: Option<PathBuf>,
    /// Seconds between reads of the secret files; a change replaces the secrets in
    /// use. 0 reads them once, at start.
    #[arg(long, env = "HOOKLINE_SIGNATURE_RELOAD_SECONDS", default_value_t = 5)]
    signature_reload_seconds: u64,
    /// Seconds after a secret change during which requests signed with the previous
    /// secrets are still accepted, by when SQS accepted them; whatever was queued
    /// before the change verifies with them whenever it is delivered.
    #[arg(
        long,
        env = "HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS",
        default_value_t = 3600
    )]
    signature_rotation_window_seconds: u64,
    /// Seconds a timestamped signature may be from the time SQS accepted the message.
    #[arg(
        long,
        env = "HOOKLINE_SIGNATURE_TOLERANCE_SECONDS",
        default_value_t = 300
    )]
    signature_tolerance_seconds: u64,
    /// generic-hmac: header carrying the digest.
    #[arg(long, env = "HOOKLINE_HMAC_HEADER")]
    hmac_header: Option<String>,
    /// generic-hmac: digest encoding.
    #[arg(
        long,
        env = "HOOKLINE_HMAC_ENCODING",
        value_enum,
        default_value = "hex"
    )]
    hmac_encoding: EncodingArg,
    /// generic-hmac: text before the digest, e.g. `sha256=`.
    #[arg(long, env = "HOOKLINE_HMAC_PREFIX")]
    hmac_prefix: Option<String>,
    /// Address of the /healthz and /metrics endpoint.
    #[arg(long, env = "HOOKLINE_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Json,
    Text,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum PresetArg {
    Stripe,
    Github,
    Shopify,
    Slack,
    StandardWebhooks,
    GenericHmac,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum EncodingArg {
    Hex,
    Base64,
}

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
    let Some(preset) = args.signature_preset else {
        if !args.signature_secret_file.is_empty() || args.signature_secret_dir.is_some() {
            bail!(
                "--signature-secret-file or --signature-secret-dir is set but --signature-preset is not"
            );
        }
        return Ok(None);
    };
    let preset = match preset {
        PresetArg::Stripe => Preset::Stripe,
        PresetArg::Github => Preset::GitHub,
        PresetArg::Shopify => Preset::Shopify,
        PresetArg::Slack => Preset::Slack,
        PresetArg::StandardWebhooks => Preset::StandardWebhooks,
        PresetArg::GenericHmac => Preset::GenericHmac(GenericHmac {
            header: args
                .hmac_header
                .clone()
                .context("--signature-preset generic-hmac needs --hmac-header")?,
            encoding: match args.hmac_encoding {
                EncodingArg::Hex => DigestEncoding::Hex,
                EncodingArg::Base64 => DigestEncoding::Base64,
            },
            prefix: args.hmac_prefix.clone(),
        }),
    };
    let source = match &args.signature_secret_dir {
        Some(dir) => SecretSource::Dir(dir.clone()),
        None => SecretSource::Files(args.signature_secret_file.clone()),
    };
    let loaded = source.load().context("reading the signing secrets")?;
    let verifier = Verifier::new(
        preset,
        &loaded,
        Duration::from_secs(args.signature_tolerance_seconds),
    )
    .context("configuring signature verification")?
    .with_rotation_window(Duration::from_secs(args.signature_rotation_window_seconds));
    Ok(Some(Signing {
        verifier: Arc::new(verifier),
        source,
        loaded,
    }))
}
