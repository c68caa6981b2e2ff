//! The `hookline-worker` command line. Every variable it reads is named in
//! `hookline_contract::env`, the same constants the operator's Deployment builder
//! writes; [`RunArgs::worker_env`] turns what was parsed back into the operator's
//! [`WorkerEnv`], and [`parse_run_env`] parses a given environment as `run` would.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, FromArgMatches, Parser, Subcommand, ValueEnum};
use hookline_contract::env::{self, AwsEnv, SecretFiles, SignatureEnv, WorkerEnv};
use hookline_contract::signature::{DigestEncoding, GenericHmac, PresetName};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `hookline-worker`.
#[derive(Parser, Debug)]
#[command(
    name = "hookline-worker",
    version,
    about = "Delivers a Hookline webhook queue to its handler"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        env = env::LOG_FORMAT,
        value_enum,
        default_value = "json",
        global = true
    )]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
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

/// `hookline-worker run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// URL of the webhook's FIFO queue.
    #[arg(long, env = env::QUEUE_URL)]
    pub queue_url: String,
    /// URL of its FIFO dead-letter queue (needed with signature verification).
    #[arg(long, env = env::DEAD_LETTER_QUEUE_URL)]
    pub dead_letter_queue_url: Option<String>,
    /// Where the handler listens.
    #[arg(long, env = env::HANDLER_URL, default_value = "http://127.0.0.1:8080/")]
    pub handler_url: http::Uri,
    /// Seconds one handler call may take.
    #[arg(long, env = env::HANDLER_TIMEOUT_SECONDS, default_value_t = 30)]
    pub handler_timeout_seconds: u64,
    /// Message groups handled at once.
    #[arg(long, env = env::CONCURRENCY, default_value_t = 10)]
    pub concurrency: usize,
    /// Concurrent long polls.
    #[arg(long, env = env::POLLERS, default_value_t = 2)]
    pub pollers: usize,
    /// The queue's visibility timeout in seconds.
    #[arg(long, env = env::VISIBILITY_TIMEOUT_SECONDS, default_value_t = 60)]
    pub visibility_timeout_seconds: u64,
    /// The queue's maxReceiveCount: a message failing its last delivery goes to the
    /// dead-letter queue at once and its group carries on.
    #[arg(long, env = env::MAX_RECEIVE_COUNT)]
    pub max_receive_count: Option<u32>,
    /// First retry delay in seconds.
    #[arg(long, env = env::BACKOFF_INITIAL_SECONDS, default_value_t = 5)]
    pub backoff_initial_seconds: u64,
    /// Longest retry delay in seconds.
    #[arg(long, env = env::BACKOFF_MAX_SECONDS, default_value_t = 900)]
    pub backoff_max_seconds: u64,
    /// Signature scheme to verify; none when omitted.
    #[arg(long, env = env::SIGNATURE_PRESET, value_parser = preset_parser())]
    pub signature_preset: Option<PresetName>,
    /// Files holding accepted signing secrets (one secret per file, as a mounted
    /// Secret key). Repeat, or separate with commas, to accept several during rotation.
    #[arg(
        long,
        env = env::SIGNATURE_SECRET_FILES,
        value_delimiter = env::SECRET_FILES_DELIMITER,
        conflicts_with = "signature_secret_dir"
    )]
    pub signature_secret_file: Vec<PathBuf>,
    /// A mounted Secret whose every key is an accepted signing secret (instead of
    /// --signature-secret-file): keys added later are picked up too.
    #[arg(long, env = env::SIGNATURE_SECRET_DIR)]
    pub signature_secret_dir: Option<PathBuf>,
    /// Seconds between reads of the secret files; a change replaces the secrets in
    /// use. 0 reads them once, at start.
    #[arg(long, env = env::SIGNATURE_RELOAD_SECONDS, default_value_t = 5)]
    pub signature_reload_seconds: u64,
    /// Seconds after a secret change during which requests signed with the previous
    /// secrets are still accepted, by when SQS accepted them; whatever was queued
    /// before the change verifies with them whenever it is delivered.
    #[arg(long, env = env::SIGNATURE_ROTATION_WINDOW_SECONDS, default_value_t = 3600)]
    pub signature_rotation_window_seconds: u64,
    /// Seconds a timestamped signature may be from the time SQS accepted the message.
    #[arg(long, env = env::SIGNATURE_TOLERANCE_SECONDS, default_value_t = 300)]
    pub signature_tolerance_seconds: u64,
    /// generic-hmac: header carrying the digest.
    #[arg(long, env = env::HMAC_HEADER)]
    pub hmac_header: Option<String>,
    /// generic-hmac: digest encoding.
    #[arg(
        long,
        env = env::HMAC_ENCODING,
        value_parser = encoding_parser(),
        default_value = "hex"
    )]
    pub hmac_encoding: DigestEncoding,
    /// generic-hmac: text before the digest, e.g. `sha256=`.
    #[arg(long, env = env::HMAC_PREFIX)]
    pub hmac_prefix: Option<String>,
    /// twilio, square, hubspot: the URL the provider sends to, without a query (the
    /// Webhook's status.url); these presets sign it.
    #[arg(long, env = env::PUBLIC_URL)]
    pub public_url: Option<String>,
    /// Address of the /healthz and /metrics endpoint.
    #[arg(long, env = env::METRICS_ADDR, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
}

/// Log line format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Plain text.
    Text,
}

/// The presets by their contract names, listed in `--help`.
fn preset_parser() -> impl TypedValueParser<Value = PresetName> {
    PossibleValuesParser::new(PresetName::ALL.map(PresetName::as_str))
        .try_map(|name| name.parse::<PresetName>())
}

fn encoding_parser() -> impl TypedValueParser<Value = DigestEncoding> {
    PossibleValuesParser::new(DigestEncoding::ALL.map(DigestEncoding::as_str))
        .try_map(|name| name.parse::<DigestEncoding>())
}

/// Settings that parse but cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Secrets without a scheme to check them with.
    #[error(
        "--signature-secret-file or --signature-secret-dir is set but --signature-preset is not"
    )]
    SecretsWithoutPreset,
    /// A preset that signs the URL, without the URL.
    #[error("--signature-preset {0} signs the URL the provider called and needs --public-url")]
    NoPublicUrl(PresetName),
    /// A public URL the presets cannot sign with.
    #[error("--public-url {0:?} is not an absolute http(s) URL without a query or fragment")]
    BadPublicUrl(String),
}

impl RunArgs {
    /// How signatures are to be verified; none without a preset.
    pub fn signature_env(&self) -> Result<Option<SignatureEnv>, ConfigError> {
        let Some(preset) = self.signature_preset else {
            if !self.signature_secret_file.is_empty() || self.signature_secret_dir.is_some() {
                return Err(ConfigError::SecretsWithoutPreset);
            }
            return Ok(None);
        };
        let secrets = match &self.signature_secret_dir {
            Some(dir) => SecretFiles::Dir(dir.clone()),
            None => SecretFiles::Files(self.signature_secret_file.clone()),
        };
        if let Some(url) = &self.public_url {
            // The query comes from each request; a URL with its own would be signed
            // twice over.
            let absolute = url.starts_with("https://") || url.starts_with("http://");
            if !absolute || url.contains(['?', '#']) {
                return Err(ConfigError::BadPublicUrl(url.clone()));
            }
        } else if preset.signs_url() {
            return Err(ConfigError::NoPublicUrl(preset));
        }
        Ok(Some(SignatureEnv {
            preset,
            tolerance_seconds: self.signature_tolerance_seconds,
            rotation_window_seconds: self.signature_rotation_window_seconds,
            secrets,
            generic_hmac: self.hmac_header.clone().map(|header| GenericHmac {
                header,
                encoding: self.hmac_encoding,
                prefix: self.hmac_prefix.clone(),
            }),
            public_url: self.public_url.clone(),
        }))
    }

    /// The operator's view of these settings, with the AWS SDK's `aws` (which the
    /// SDK reads itself, not these flags).
    pub fn worker_env(&self, aws: AwsEnv) -> Result<WorkerEnv, ConfigError> {
        Ok(WorkerEnv {
            queue_url: self.queue_url.clone(),
            dead_letter_queue_url: self.dead_letter_queue_url.clone(),
            handler_url: self.handler_url.to_string(),
            handler_timeout_seconds: self.handler_timeout_seconds,
            concurrency: self.concurrency,
            visibility_timeout_seconds: self.visibility_timeout_seconds,
            max_receive_count: self.max_receive_count,
            backoff_initial_seconds: self.backoff_initial_seconds,
            backoff_max_seconds: self.backoff_max_seconds,
            metrics_addr: self.metrics_addr,
            aws,
            signature: self.signature_env()?,
        })
    }
}

/// Parses `vars` as `hookline-worker run` parses its environment, and nothing else:
/// the process's own environment is not read.
///
/// clap reads variables from the process only, and a test cannot set those safely
/// (`std::env::set_var` is `unsafe`, and unsafe code is forbidden here), so each
/// variable `run` reads is handed to the same argument definitions as its flag
/// (`--flag=value`): the same parser, delimiter, defaults and conflicts. Variables
/// `run` does not read are ignored, as in the process.
pub fn parse_run_env<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<RunArgs, clap::Error> {
    let vars: HashMap<&str, &str> = vars.into_iter().collect();
    let command = RunArgs::augment_args(clap::Command::new("run").no_binary_name(true));
    let argv: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_env()?.to_str()?;
            let value = vars.get(name)?;
            Some(format!("--{}={value}", arg.get_long()?))
        })
        .collect();
    let matches = command
        .mut_args(|arg| arg.env(None::<&'static str>))
        .try_get_matches_from(argv)?;
    RunArgs::from_arg_matches(&matches)
}

/// The variables `hookline-worker run` reads.
pub fn run_env_names() -> Vec<String> {
    RunArgs::augment_args(clap::Command::new("run"))
        .get_arguments()
        .filter_map(|arg| Some(arg.get_env()?.to_str()?.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_environment_parses_without_the_process_one() {
        let args = parse_run_env([
            (env::QUEUE_URL, "https://sqs/q.fifo"),
            (env::SIGNATURE_PRESET, "generic-hmac"),
            (env::SIGNATURE_SECRET_FILES, "/s/a,/s/b"),
            (env::HMAC_HEADER, "X-Sig"),
            (env::HMAC_ENCODING, "base64"),
            ("HOOKLINE_UNKNOWN", "ignored"),
        ])
        .unwrap();
        assert_eq!(args.queue_url, "https://sqs/q.fifo");
        assert_eq!(args.pollers, 2, "defaults apply");
        let signature = args.signature_env().unwrap().unwrap();
        assert_eq!(signature.preset, PresetName::GenericHmac);
        assert_eq!(
            signature.secrets,
            SecretFiles::Files(vec!["/s/a".into(), "/s/b".into()])
        );
        assert_eq!(
            signature.generic_hmac.unwrap().encoding,
            DigestEncoding::Base64
        );

        let refused = |vars: &[(&str, &str)]| parse_run_env(vars.iter().copied()).is_err();
        assert!(refused(&[]), "the queue is required");
        assert!(refused(&[
            (env::QUEUE_URL, "q"),
            (env::SIGNATURE_PRESET, "Stripe")
        ]));
        assert!(refused(&[
            (env::QUEUE_URL, "q"),
            (env::SIGNATURE_SECRET_FILES, "/s/a"),
            (env::SIGNATURE_SECRET_DIR, "/s"),
        ]));
    }

    #[test]
    fn presets_that_sign_the_url_need_it() {
        for preset in ["twilio", "square", "hubspot"] {
            let vars = [
                (env::QUEUE_URL, "q"),
                (env::SIGNATURE_PRESET, preset),
                (env::SIGNATURE_SECRET_DIR, "/s"),
            ];
            let args = parse_run_env(vars).unwrap();
            assert_eq!(
                args.signature_env(),
                Err(ConfigError::NoPublicUrl(preset.parse().unwrap()))
            );
            let with_url = parse_run_env(
                vars.into_iter()
                    .chain([(env::PUBLIC_URL, "https://hooks.example.com/twilio")]),
            )
            .unwrap();
            assert_eq!(
                with_url
                    .signature_env()
                    .unwrap()
                    .unwrap()
                    .public_url
                    .as_deref(),
                Some("https://hooks.example.com/twilio")
            );
        }
        for bad in ["hooks.example.com/t", "https://h/t?a=1", "https://h/t#x"] {
            let args = parse_run_env([
                (env::QUEUE_URL, "q"),
                (env::SIGNATURE_PRESET, "square"),
                (env::SIGNATURE_SECRET_DIR, "/s"),
                (env::PUBLIC_URL, bad),
            ])
            .unwrap();
            assert_eq!(
                args.signature_env(),
                Err(ConfigError::BadPublicUrl(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_need_a_preset() {
        let args =
            parse_run_env([(env::QUEUE_URL, "q"), (env::SIGNATURE_SECRET_DIR, "/s")]).unwrap();
        assert_eq!(args.signature_env(), Err(ConfigError::SecretsWithoutPreset));
    }
}
