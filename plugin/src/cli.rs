//! The command line.

use clap::{Args as ClapArgs, Parser, Subcommand};
use std::path::PathBuf;

/// kubectl hookline: Webhooks, their dead letters, and a signed test event.
#[derive(Parser, Debug)]
#[command(name = "kubectl hookline", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to find the cluster, as kubectl's own flags.
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct Global {
    /// The namespace (default: the kubeconfig context's, else `default`).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Webhooks with readiness, URL, backlog, age of the oldest message, DLQ depth
    /// and last error.
    Get {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// A Webhook's dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: Dlq,
    },
    /// POST a sample event, signed as the Webhook's provider signs, to its public URL,
    /// and wait until the worker handled it.
    SendTest(SendTest),
}

#[derive(Subcommand, Debug)]
pub enum Dlq {
    /// Dead letters: id, group, age, receives, the reason recorded, a body preview.
    List {
        webhook: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One dead letter in full: attributes, forwarded headers, body.
    Show { webhook: String, message_id: String },
    /// Move dead letters back to the Webhook's queue, in order per group: all of
    /// them, or the groups or messages named.
    Redrive {
        webhook: String,
        /// Only this message group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Only this message id (repeatable).
        #[arg(long = "id", conflicts_with = "groups")]
        ids: Vec<String>,
    },
    /// Delete every dead letter for good.
    Purge {
        webhook: String,
        /// Confirm: the messages cannot be recovered.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(ClapArgs, Debug)]
pub struct SendTest {
    pub webhook: String,
    /// The event body to send (default: a small sample event).
    #[arg(long)]
    pub event: Option<PathBuf>,
    /// Send to this base URL instead of the public URL's host, with the public
    /// URL's Host header and path (an emulator, or a local proxy).
    #[arg(long)]
    pub via: Option<String>,
    /// Seconds to wait for the worker to handle the event; 0 returns after the POST.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
}
