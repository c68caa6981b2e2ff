//! `hookline-operator`: reconciles WebhookGateways and Webhooks into AWS.
//! Thin on purpose: settings, telemetry, leader election, then the controllers and
//! the health/metrics server side by side.

use anyhow::{Context as _, Result};
use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand, ValueEnum};
use hookline_operator::aws::{AwsClients, RateLimits, RetryPolicy};
use hookline_operator::controller::context::{Context, Timing};
use hookline_operator::controller::run::run;
use hookline_operator::desired::Settings;
use hookline_operator::leader::{self, LeaseConfig};
use hookline_operator::quotas::Quotas;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "hookline-operator",
    version,
    about = "Reconciles Hookline Webhooks and WebhookGateways into AWS"
)]
struct Args {
    /// AWS region of everything the operator creates; when unset, the SDK's own
    /// lookup (AWS_DEFAULT_REGION, the profile, the instance metadata).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// Endpoint override for every AWS service (an emulator); handed to workers too.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// Namespaces to watch for Webhooks, comma-separated; all when empty.
    #[arg(long, env = "HOOKLINE_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Seconds between re-reads of AWS to repair drift.
    #[arg(long, env = "HOOKLINE_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Seconds between full passes (audits) of each resource; the resyncs between
    /// them make two AWS reads each while nothing changed (docs/operator.md). A
    /// start audits everything once.
    #[arg(
        long,
        env = "HOOKLINE_AUDIT_INTERVAL_SECONDS",
        default_value_t = 36_000
    )]
    audit_interval_seconds: u64,
    /// Reconciles of one kind (Webhooks, gateways) that run at once, per watch
    /// scope. More do not converge faster: the AWS rate limits set the pace, and each
    /// waiting reconcile holds memory.
    #[arg(
        long,
        env = "HOOKLINE_RECONCILE_CONCURRENCY",
        default_value_t = hookline_operator::controller::context::DEFAULT_CONCURRENCY
    )]
    reconcile_concurrency: u16,
    /// Seconds a deleted Webhook's queue may take to drain before its condition says
    /// the drain stalled (deletion keeps waiting either way).
    #[arg(long, env = "HOOKLINE_DRAIN_STALL_SECONDS", default_value_t = 3600)]
    drain_stall_seconds: u64,
    /// ARN of the cluster's IAM OIDC provider
    /// (`arn:aws:iam::ACCOUNT:oidc-provider/oidc.eks.REGION.amazonaws.com/id/ID`): the
    /// operator then creates one IRSA role per namespace for gateways with
    /// `workerIdentity.irsaRolePerNamespace`.
    #[arg(long, env = "HOOKLINE_IRSA_OIDC_PROVIDER_ARN")]
    irsa_oidc_provider_arn: Option<String>,
    /// Prefix of AWS names; distinct per cluster sharing an AWS account.
    #[arg(long, env = "HOOKLINE_NAME_PREFIX", default_value = "hl")]
    name_prefix: String,
    /// Names this cluster in hostname ownership records.
    #[arg(long, env = "HOOKLINE_CLUSTER_NAME", default_value = "default")]
    cluster_name: String,
    /// The worker sidecar image.
    #[arg(
        long,
        env = "HOOKLINE_WORKER_IMAGE",
        default_value = "ghcr.io/hookline/hookline-worker:0.1.0"
    )]
    worker_image: String,
    /// Seconds between two backlog reads of each Webhook by the scaler.
    #[arg(long, env = "HOOKLINE_SCALER_INTERVAL_SECONDS", default_value_t = 10)]
    scaler_interval_seconds: u64,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "HOOKLINE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "HOOKLINE_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Elect a leader through a Lease (needed with more than one replica).
    #[arg(long, env = "HOOKLINE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (usually the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "hookline-system")]
    lease_namespace: String,
    /// Name of the leader Lease; distinct per installation sharing a namespace.
    #[arg(long, env = "HOOKLINE_LEASE_NAME", default_value = "hookline-operator")]
    lease_name: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "hookline-operator")]
    identity: String,
    /// API Gateway's resources per REST API in this account (every path segment is
    /// one); raise it with the quota in Service Quotas.
    #[arg(long, env = "HOOKLINE_QUOTA_RESOURCES_PER_API", default_value_t = 300)]
    quota_resources_per_api: usize,
    /// API Gateway's authorizers per REST API in this account.
    #[arg(long, env = "HOOKLINE_QUOTA_AUTHORIZERS_PER_API", default_value_t = 10)]
    quota_authorizers_per_api: usize,
    /// Characters of a REST API's resource policy (a fixed API Gateway limit).
    #[arg(
        long,
        env = "HOOKLINE_QUOTA_RESOURCE_POLICY_CHARS",
        default_value_t = 8192
    )]
    quota_resource_policy_chars: usize,
    /// API Gateway's usage plans per account and region (one per ApiKey Webhook).
    #[arg(long, env = "HOOKLINE_QUOTA_USAGE_PLANS", default_value_t = 300)]
    quota_usage_plans: usize,
    /// The share of AWS's published control-plane request quotas (API Gateway's 10
    /// per second in all and its per-operation ones, Route 53's 5 per second) the
    /// operator's rate limiter uses; lower it when other tools call the same
    /// account's control planes.
    #[arg(long, env = "HOOKLINE_AWS_QUOTA_SHARE", default_value_t = hookline_operator::aws::limits::DEFAULT_QUOTA_SHARE)]
    aws_quota_share: f64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Exit 1, naming them and the ways out, while Webhooks (in --namespaces) or
    /// WebhookGateways carry the operator's finalizer: the chart's pre-delete hook.
    UninstallCheck,
}

/// Needs no AWS: only the Kubernetes API, with the operator's ServiceAccount.
async fn uninstall_check(namespaces: &[String]) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let blockers = hookline_operator::uninstall::blockers(&client, namespaces)
        .await
        .context("listing Webhooks and WebhookGateways")?;
    if blockers.is_empty() {
        tracing::info!("no Webhook or WebhookGateway holds the Hookline finalizer: uninstalling");
        return Ok(());
    }
    anyhow::bail!("{}", hookline_operator::uninstall::explain(&blockers))
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Json,
    Text,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    hookline_telemetry::init_logging(matches!(args.log_format, LogFormat::Json));
    if let Some(Command::UninstallCheck) = args.command {
        return uninstall_check(&args.namespaces).await;
    }
    // One crypto provider for rustls, chosen before any client exists.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let (sdk, region) = load_aws(&args).await?;
    let clients = AwsClients::new(
        &sdk,
        &RateLimits::with_share(args.aws_quota_share),
        RetryPolicy::default(),
    );
    let mut registry = Registry::default();
    clients.caller.register(&mut registry);

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let ctx = context(&args, client.clone(), &clients, region);
    ctx.metrics.register(&mut registry);

    let leading = Arc::new(AtomicBool::new(!args.leader_election));
    let leader_gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
    registry.register(
        "hookline_operator_leader",
        "1 while this replica holds the leader Lease and reconciles",
        leader_gauge.clone(),
    );
    let server = serve(args.metrics_addr, leading.clone(), Arc::new(registry)).await?;

    let lease = LeaseConfig {
        namespace: args.lease_namespace,
        name: args.lease_name,
        identity: args.identity,
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        renew: Duration::from_secs(2),
    };
    let shutdown = futures::FutureExt::shared(Box::pin(hookline_telemetry::shutdown_signal()));
    let mut renewed = tokio::time::Instant::now();
    if args.leader_election {
        tokio::select! {
            acquired = leader::acquire(&client, &lease) => renewed = acquired,
            () = shutdown.clone() => {
                tracing::info!("stopping while standing by");
                server.abort();
                return Ok(());
            }
        }
        leading.store(true, Ordering::Relaxed);
    }
    leader_gauge.set(1);

    let scaler = Arc::new(hookline_operator::scaler::Scaler::default()).run(
        ctx.clone(),
        Duration::from_secs(args.scaler_interval_seconds),
        shutdown.clone(),
    );
    let controllers = async move {
        tokio::join!(run(ctx, shutdown), scaler);
    };
    if args.leader_election {
        tokio::select! {
            () = controllers => {
                // Stopped by a signal: hand over now rather than after the lease expires.
                leader::release(&client, &lease).await;
            }
            () = leader::hold(&client, &lease, renewed) => {
                anyhow::bail!("lost leadership; exiting so that only one replica reconciles");
            }
        }
    } else {
        controllers.await;
    }
    tracing::info!("stopped");
    server.abort();
    Ok(())
}

/// /healthz, /readyz and /metrics, served until the process stops.
async fn serve(
    addr: SocketAddr,
    leading: Arc<AtomicBool>,
    registry: Arc<Registry>,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let app = health_router(leading, registry);
    Ok(tokio::spawn(
        async move { axum::serve(listener, app).await },
    ))
}

/// The SDK configuration and the region it resolved.
async fn load_aws(args: &Args) -> Result<(aws_config::SdkConfig, String)> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &args.aws_endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(ToString::to_string)
        .context("no AWS region: set --region or AWS_REGION (the chart's aws.region)")?;
    Ok((sdk, region))
}

/// The reconcile context the flags describe.
fn context(
    args: &Args,
    client: kube::Client,
    clients: &AwsClients,
    region: String,
) -> Arc<Context> {
    let settings = Settings {
        name_prefix: args.name_prefix.clone(),
        region,
        worker_image: args.worker_image.clone(),
        aws_endpoint_url: args.aws_endpoint_url.clone(),
        irsa_oidc_provider_arn: args
            .irsa_oidc_provider_arn
            .clone()
            .filter(|arn| !arn.is_empty()),
    };
    let timing = Timing {
        resync: Duration::from_secs(args.resync_seconds),
        drain_stall: Duration::from_secs(args.drain_stall_seconds),
        ..Timing::default()
    };
    Context::new(
        client,
        clients,
        settings,
        timing,
        args.cluster_name.clone(),
        args.namespaces.clone(),
    )
    .with_quotas(Quotas {
        resources_per_api: args.quota_resources_per_api,
        authorizers_per_api: args.quota_authorizers_per_api,
        resource_policy_chars: args.quota_resource_policy_chars,
        usage_plans: args.quota_usage_plans,
    })
    .with_audit_interval(Duration::from_secs(args.audit_interval_seconds))
    .with_concurrency(args.reconcile_concurrency)
}

/// `/healthz`, `/readyz` and `/metrics`.
fn health_router(leading: Arc<AtomicBool>, registry: Arc<Registry>) -> Router {
    // A standby is ready too: were readiness to wait for leadership, a rolling
    // update would wait forever for a new pod that cannot lead while the old one
    // runs, and a PodDisruptionBudget would count the standby as down.
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let leading = leading.load(Ordering::Relaxed);
                async move {
                    if leading {
                        "ok: leading"
                    } else {
                        "ok: standing by"
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || hookline_telemetry::metrics_text(registry.clone())),
        )
}
