//! The worker's environment: the variables the operator's Deployment builder writes
//! into the worker sidecar and the worker's flags read (`hookline-worker run`).
//!
//! Each name is defined here once; the worker's clap flags name these constants as
//! their `env`, and the operator renders a [`WorkerEnv`] with [`WorkerEnv::vars`].
//! The operator's round-trip test (`operator/tests/worker_env.rs`) builds a worker
//! Deployment, parses its environment with the worker's own flag parser, and gets
//! the same [`WorkerEnv`] back.

use crate::signature::{GenericHmac, PresetName};
use std::net::SocketAddr;
use std::path::PathBuf;

/// URL of the webhook's FIFO queue.
pub const QUEUE_URL: &str = "HOOKLINE_QUEUE_URL";
/// URL of its FIFO dead-letter queue.
pub const DEAD_LETTER_QUEUE_URL: &str = "HOOKLINE_DEAD_LETTER_QUEUE_URL";
/// Where the handler listens.
pub const HANDLER_URL: &str = "HOOKLINE_HANDLER_URL";
/// Seconds one handler call may take.
pub const HANDLER_TIMEOUT_SECONDS: &str = "HOOKLINE_HANDLER_TIMEOUT_SECONDS";
/// Message groups handled at once.
pub const CONCURRENCY: &str = "HOOKLINE_CONCURRENCY";
/// Concurrent long polls (the operator leaves the worker's default).
pub const POLLERS: &str = "HOOKLINE_POLLERS";
/// The queue's visibility timeout in seconds.
pub const VISIBILITY_TIMEOUT_SECONDS: &str = "HOOKLINE_VISIBILITY_TIMEOUT_SECONDS";
/// The queue's maxReceiveCount.
pub const MAX_RECEIVE_COUNT: &str = "HOOKLINE_MAX_RECEIVE_COUNT";
/// First retry delay in seconds.
pub const BACKOFF_INITIAL_SECONDS: &str = "HOOKLINE_BACKOFF_INITIAL_SECONDS";
/// Longest retry delay in seconds.
pub const BACKOFF_MAX_SECONDS: &str = "HOOKLINE_BACKOFF_MAX_SECONDS";
/// The signature preset ([`PresetName::as_str`]).
pub const SIGNATURE_PRESET: &str = "HOOKLINE_SIGNATURE_PRESET";
/// Files holding accepted signing secrets, comma-separated.
pub const SIGNATURE_SECRET_FILES: &str = "HOOKLINE_SIGNATURE_SECRET_FILES";
/// A mounted Secret whose every key is an accepted signing secret.
pub const SIGNATURE_SECRET_DIR: &str = "HOOKLINE_SIGNATURE_SECRET_DIR";
/// Seconds between reads of the secret files (the operator leaves the default).
pub const SIGNATURE_RELOAD_SECONDS: &str = "HOOKLINE_SIGNATURE_RELOAD_SECONDS";
/// Seconds the previous secrets still verify after a change.
pub const SIGNATURE_ROTATION_WINDOW_SECONDS: &str = "HOOKLINE_SIGNATURE_ROTATION_WINDOW_SECONDS";
/// Seconds a timestamped signature may be from when SQS accepted the message.
pub const SIGNATURE_TOLERANCE_SECONDS: &str = "HOOKLINE_SIGNATURE_TOLERANCE_SECONDS";
/// generic-hmac: header carrying the digest.
pub const HMAC_HEADER: &str = "HOOKLINE_HMAC_HEADER";
/// generic-hmac: digest encoding ([`crate::DigestEncoding::as_str`]).
pub const HMAC_ENCODING: &str = "HOOKLINE_HMAC_ENCODING";
/// generic-hmac: text before the digest.
pub const HMAC_PREFIX: &str = "HOOKLINE_HMAC_PREFIX";
/// The Webhook's public URL (its `status.url`), for the presets that sign the URL
/// the provider called; written only for those.
pub const PUBLIC_URL: &str = "HOOKLINE_PUBLIC_URL";
/// Address of the worker's /healthz and /metrics.
pub const METRICS_ADDR: &str = "HOOKLINE_METRICS_ADDR";
/// `json` or `text` (the operator leaves the default).
pub const LOG_FORMAT: &str = "HOOKLINE_LOG_FORMAT";

/// The AWS region, read by the AWS SDK (not by the worker's flags).
pub const AWS_REGION: &str = "AWS_REGION";
/// An endpoint override for every AWS service, read by the AWS SDK (emulators only).
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// Separates the paths of [`SIGNATURE_SECRET_FILES`].
pub const SECRET_FILES_DELIMITER: char = ',';

/// What the operator tells a worker sidecar, typed. Settings the operator leaves at
/// the worker's defaults ([`POLLERS`], [`SIGNATURE_RELOAD_SECONDS`], [`LOG_FORMAT`])
/// are not part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// [`QUEUE_URL`].
    pub queue_url: String,
    /// [`DEAD_LETTER_QUEUE_URL`].
    pub dead_letter_queue_url: Option<String>,
    /// [`HANDLER_URL`].
    pub handler_url: String,
    /// [`HANDLER_TIMEOUT_SECONDS`].
    pub handler_timeout_seconds: u64,
    /// [`CONCURRENCY`].
    pub concurrency: usize,
    /// [`VISIBILITY_TIMEOUT_SECONDS`].
    pub visibility_timeout_seconds: u64,
    /// [`MAX_RECEIVE_COUNT`].
    pub max_receive_count: Option<u32>,
    /// [`BACKOFF_INITIAL_SECONDS`].
    pub backoff_initial_seconds: u64,
    /// [`BACKOFF_MAX_SECONDS`].
    pub backoff_max_seconds: u64,
    /// [`METRICS_ADDR`].
    pub metrics_addr: SocketAddr,
    /// What the AWS SDK in the worker reads.
    pub aws: AwsEnv,
    /// Signature verification; none delivers unverified.
    pub signature: Option<SignatureEnv>,
}

/// The AWS SDK's settings in the worker's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEnv {
    /// [`AWS_REGION`].
    pub region: Option<String>,
    /// [`AWS_ENDPOINT_URL`].
    pub endpoint_url: Option<String>,
}

impl AwsEnv {
    /// The settings as the SDK reads them from `lookup` (a variable's value by name).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            region: lookup(AWS_REGION),
            endpoint_url: lookup(AWS_ENDPOINT_URL),
        }
    }
}

/// How the worker verifies signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEnv {
    /// [`SIGNATURE_PRESET`].
    pub preset: PresetName,
    /// [`SIGNATURE_TOLERANCE_SECONDS`].
    pub tolerance_seconds: u64,
    /// [`SIGNATURE_ROTATION_WINDOW_SECONDS`].
    pub rotation_window_seconds: u64,
    /// [`SIGNATURE_SECRET_DIR`] or [`SIGNATURE_SECRET_FILES`].
    pub secrets: SecretFiles,
    /// [`HMAC_HEADER`], [`HMAC_ENCODING`], [`HMAC_PREFIX`]: the generic-hmac preset's
    /// settings (written whenever present; the other presets ignore them).
    pub generic_hmac: Option<GenericHmac>,
    /// [`PUBLIC_URL`]: where the provider sends its requests, for the presets that
    /// sign it ([`PresetName::signs_url`]); the operator writes it for those only, so
    /// the other workers' pod templates stay as they were.
    pub public_url: Option<String>,
}

/// Where the signing secrets are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFiles {
    /// These files, one secret each.
    Files(Vec<PathBuf>),
    /// Every key of the Secret mounted here.
    Dir(PathBuf),
}

impl WorkerEnv {
    /// The variables, in the order the operator has always written them: the
    /// order is part of the pod template, and reordering it would roll every worker.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![(QUEUE_URL, self.queue_url.clone())];
        if let Some(url) = &self.dead_letter_queue_url {
            vars.push((DEAD_LETTER_QUEUE_URL, url.clone()));
        }
        vars.extend([
            (HANDLER_URL, self.handler_url.clone()),
            (
                HANDLER_TIMEOUT_SECONDS,
                self.handler_timeout_seconds.to_string(),
            ),
            (CONCURRENCY, self.concurrency.to_string()),
            (
                VISIBILITY_TIMEOUT_SECONDS,
                self.visibility_timeout_seconds.to_string(),
            ),
        ]);
        if let Some(count) = self.max_receive_count {
            vars.push((MAX_RECEIVE_COUNT, count.to_string()));
        }
        vars.extend([
            (
                BACKOFF_INITIAL_SECONDS,
                self.backoff_initial_seconds.to_string(),
            ),
            (BACKOFF_MAX_SECONDS, self.backoff_max_seconds.to_string()),
            (METRICS_ADDR, self.metrics_addr.to_string()),
        ]);
        if let Some(region) = &self.aws.region {
            vars.push((AWS_REGION, region.clone()));
        }
        if let Some(endpoint) = &self.aws.endpoint_url {
            vars.push((AWS_ENDPOINT_URL, endpoint.clone()));
        }
        if let Some(signature) = &self.signature {
            signature.push_vars(&mut vars);
        }
        vars
    }
}

impl SignatureEnv {
    fn push_vars(&self, vars: &mut Vec<(&'static str, String)>) {
        vars.extend([
            (SIGNATURE_PRESET, self.preset.as_str().to_owned()),
            (
                SIGNATURE_TOLERANCE_SECONDS,
                self.tolerance_seconds.to_string(),
            ),
            (
                SIGNATURE_ROTATION_WINDOW_SECONDS,
                self.rotation_window_seconds.to_string(),
            ),
        ]);
        match &self.secrets {
            SecretFiles::Dir(dir) => {
                vars.push((SIGNATURE_SECRET_DIR, dir.to_string_lossy().into_owned()));
            }
            SecretFiles::Files(files) => {
                let joined = files
                    .iter()
                    .map(|f| f.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(&SECRET_FILES_DELIMITER.to_string());
                vars.push((SIGNATURE_SECRET_FILES, joined));
            }
        }
        if let Some(generic) = &self.generic_hmac {
            vars.push((HMAC_HEADER, generic.header.clone()));
            vars.push((HMAC_ENCODING, generic.encoding.as_str().to_owned()));
            if let Some(prefix) = &generic.prefix {
                vars.push((HMAC_PREFIX, prefix.clone()));
            }
        }
        if let Some(url) = &self.public_url {
            vars.push((PUBLIC_URL, url.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DigestEncoding;

    #[test]
    fn variables_come_in_the_order_the_pod_template_has() {
        let env = WorkerEnv {
            queue_url: "https://sqs/q.fifo".to_owned(),
            dead_letter_queue_url: Some("https://sqs/q-dlq.fifo".to_owned()),
            handler_url: "http://127.0.0.1:8080/".to_owned(),
            handler_timeout_seconds: 30,
            concurrency: 10,
            visibility_timeout_seconds: 60,
            max_receive_count: Some(5),
            backoff_initial_seconds: 5,
            backoff_max_seconds: 900,
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9095)),
            aws: AwsEnv {
                region: Some("eu-west-1".to_owned()),
                endpoint_url: Some("http://127.0.0.1:4566".to_owned()),
            },
            signature: Some(SignatureEnv {
                preset: PresetName::GenericHmac,
                tolerance_seconds: 300,
                rotation_window_seconds: 3600,
                secrets: SecretFiles::Files(vec!["/s/a".into(), "/s/b".into()]),
                generic_hmac: Some(GenericHmac {
                    header: "X-Sig".to_owned(),
                    encoding: DigestEncoding::Base64,
                    prefix: Some("sha256=".to_owned()),
                }),
                public_url: Some("https://hooks.example.com/generic".to_owned()),
            }),
        };
        let names: Vec<&str> = env.vars().iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                QUEUE_URL,
                DEAD_LETTER_QUEUE_URL,
                HANDLER_URL,
                HANDLER_TIMEOUT_SECONDS,
                CONCURRENCY,
                VISIBILITY_TIMEOUT_SECONDS,
                MAX_RECEIVE_COUNT,
                BACKOFF_INITIAL_SECONDS,
                BACKOFF_MAX_SECONDS,
                METRICS_ADDR,
                AWS_REGION,
                AWS_ENDPOINT_URL,
                SIGNATURE_PRESET,
                SIGNATURE_TOLERANCE_SECONDS,
                SIGNATURE_ROTATION_WINDOW_SECONDS,
                SIGNATURE_SECRET_FILES,
                HMAC_HEADER,
                HMAC_ENCODING,
                HMAC_PREFIX,
                PUBLIC_URL,
            ]
        );
        let vars: std::collections::BTreeMap<_, _> = env.vars().into_iter().collect();
        assert_eq!(vars[SIGNATURE_SECRET_FILES], "/s/a,/s/b");
        assert_eq!(vars[METRICS_ADDR], "0.0.0.0:9095");
        assert_eq!(vars[HMAC_ENCODING], "base64");
    }
}
