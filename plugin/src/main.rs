//! `kubectl hookline`: the on-call view of Hookline. Installed on `PATH` as
//! `kubectl-hookline`, kubectl runs it as `kubectl hookline …`.
//!
//! - `get [-A]`: every Webhook with its readiness, URL, backlog, the age of its
//!   oldest message, its dead-letter depth and its last error.
//! - `dlq list|show|redrive|purge WEBHOOK`: the dead letters, with the reason the
//!   worker recorded; moving them back in order; deleting them, only with `--yes`.
//! - `send-test WEBHOOK`: a sample event signed the way the Webhook's provider
//!   signs, POSTed to its public URL, followed until the worker handled it.
//!
//! Kubernetes access is kubectl's (kubeconfig, context, namespace), AWS access the
//! AWS CLI's (environment, profile, SSO, instance or pod identity).

mod cli;
mod context;
mod dlq;
mod get;
mod hints;
mod send_test;
mod table;

use clap::Parser as _;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // kube and the AWS SDK both use rustls; one process-wide provider keeps their
    // choice from being ambiguous.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = cli::Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", hints::explain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: cli::Args) -> anyhow::Result<ExitCode> {
    let ctx = context::Ctx::new(&args.global).await?;
    let mut out = std::io::stdout().lock();
    match args.command {
        cli::Command::Get { all_namespaces } => get::run(&ctx, all_namespaces, &mut out).await,
        cli::Command::Dlq { command } => dlq::run(&ctx, command, &mut out).await,
        cli::Command::SendTest(options) => send_test::run(&ctx, options, &mut out).await,
    }
}
