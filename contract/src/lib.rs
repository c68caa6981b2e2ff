//! What the Hookline operator writes and the worker reads, defined once.
//!
//! The operator renders these into AWS (the gateway's mapping template writes each
//! request into SQS in the [`wire`] format) and into the worker's pod (the
//! [`env::WorkerEnv`] as environment variables); the worker reads both back. Neither
//! side spells a variable name, an attribute name or a preset's headers itself.
//!
//! # Layout
//! - [`wire`]: the queued message format: header attributes, their markers, the
//!   attribute budget, the worker's own attribute.
//! - [`env`]: the `HOOKLINE_*` variable names and the typed worker environment the
//!   operator's Deployment builder writes and the worker's flags read.
//! - [`signature`]: the signature presets, their settings and the headers each needs
//!   forwarded to the worker.

#![forbid(unsafe_code)]

pub mod env;
pub mod signature;
pub mod wire;

pub use env::WorkerEnv;
pub use signature::{DigestEncoding, GenericHmac, Preset, PresetName};
