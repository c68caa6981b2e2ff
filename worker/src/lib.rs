//! The Hookline worker: drains a webhook's SQS FIFO queue into the team's handler,
//! strictly in order per message group, deleting a message only after it was handled.
//!
//! Use it as the `hookline-worker` sidecar (any language behind HTTP, see
//! [`HttpHandler`]), or as a library with your own [`Handler`]:
//!
//! ```no_run
//! use hookline_worker::{Consumer, ConsumerConfig, Delivery, Handler, Outcome};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Orders;
//! impl Handler for Orders {
//!     async fn handle(&self, delivery: &Delivery) -> Outcome {
//!         println!("{}: {} bytes", delivery.group_id, delivery.body.len());
//!         Outcome::Done
//!     }
//! }
//!
//! # async fn run(sqs: aws_sdk_sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let config = ConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo");
//! Consumer::new(sqs, config, Orders).run(CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`wire`]: reading the messages the gateway writes, in the format
//!   `hookline_contract::wire` defines (body, group, header attributes).
//! - [`signature`]: verifying the provider signature schemes (the presets are
//!   `hookline_contract::signature`'s), before the handler runs, and the rotation of
//!   their secrets.
//! - [`secrets`]: reading the signing secrets from mounted files, and again when the
//!   kubelet updates them.
//! - [`handler`]: the [`Handler`] trait and the HTTP handler of the sidecar.
//! - [`consumer`]: polling, per-group ordering, retries, visibility, shutdown.
//! - `hold`: how long the worker may still act on what it received (deadlines,
//!   margins, when to extend).
//! - [`redrive`]: moving a FIFO dead-letter queue back, in order, all of it or by
//!   group or id; [`dead_letters`]: looking at one without taking anything out.
//! - [`metrics`]: Prometheus metrics.
//! - [`config`]: the `hookline-worker` command line, whose variables are
//!   `hookline_contract::env`'s, and reading the operator's [`hookline_contract::WorkerEnv`]
//!   back from it.

#![forbid(unsafe_code)]

pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod handler;
mod hold;
pub mod metrics;
pub mod redrive;
pub mod secrets;
pub mod signature;
pub mod wire;

pub use consumer::{Backoff, Consumer, ConsumerConfig, ConsumerError};
pub use handler::{Handler, HttpHandler, Outcome};
pub use metrics::Metrics;
pub use redrive::{RedriveError, RedriveReport, Selection, redrive, redrive_selected};
pub use signature::{Preset, Verifier};
pub use wire::Delivery;
