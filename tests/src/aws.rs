//! AWS emulators on loopback: MiniStack and LocalStack (the two that run API Gateway →
//! SQS integrations: every data-plane test runs on both) and moto (a third opinion on
//! control-plane calls), from the venvs that `tests/emulators/setup.sh` builds.

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig};
use aws_sdk_sqs::config::Credentials;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::process::{Supervised, free_port, wait_until};

/// Region every emulator client uses.
pub const REGION: &str = "us-east-1";

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmulatorKind {
    /// PyPI `ministack`.
    MiniStack,
    /// PyPI `localstack-core`, on the host (no Docker), from its own venv.
    LocalStack,
    /// PyPI `moto[server]`.
    Moto,
}

/// The emulators that invoke a REST API's `AWS` integration into SQS: every
/// data-plane test runs once on each (see [`crate::data_plane_test`]).
pub const DATA_PLANES: [EmulatorKind; 2] = [EmulatorKind::MiniStack, EmulatorKind::LocalStack];

impl EmulatorKind {
    /// Lowercase name, used for log files, scratch directories and test names.
    pub fn name(self) -> &'static str {
        match self {
            Self::MiniStack => "ministack",
            Self::LocalStack => "localstack",
            Self::Moto => "moto",
        }
    }

    /// Whether a POST with a custom domain's name in `Host` reaches that domain's
    /// API (AWS: yes, through the domain's own endpoint). LocalStack's community
    /// edition routes custom domains only in the paid edition.
    pub fn serves_custom_domains(self) -> bool {
        self == Self::MiniStack
    }

    /// Whether a stage's per-method throttling answers 429 over the limit (AWS: yes).
    pub fn enforces_throttling(self) -> bool {
        self == Self::MiniStack
    }

    /// Whether mapping templates may use Velocity directives (`#if`, `#foreach`) and
    /// Java string methods, as AWS's do. MiniStack renders a subset without them.
    pub fn renders_full_velocity(self) -> bool {
        self == Self::LocalStack
    }
}

/// How to start an emulator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Evaluate IAM policies for every call, as AWS does (MiniStack's `AUTH=true`;
    /// LocalStack's community edition and moto do not enforce IAM). The `test`
    /// credentials stay the account's root.
    pub enforce_iam: bool,
}

/// A running emulator, stopped on drop.
#[derive(Debug)]
pub struct Emulator {
    kind: EmulatorKind,
    endpoint: String,
    port: u16,
    started_in: Duration,
    process: Supervised,
}

impl Emulator {
    /// Starts `kind` from the venv at `venv_bin` on a free loopback port, with its
    /// scratch files under `dir`, and waits until it answers.
    pub async fn start(kind: EmulatorKind, venv_bin: &Path, dir: &Path) -> Result<Self> {
        Self::start_with(kind, venv_bin, dir, Options::default()).await
    }

    /// [`Emulator::start`] with [`Options`].
    pub async fn start_with(
        kind: EmulatorKind,
        venv_bin: &Path,
        dir: &Path,
        options: Options,
    ) -> Result<Self> {
        if options.enforce_iam && kind != EmulatorKind::MiniStack {
            bail!("only MiniStack enforces IAM; {kind:?} cannot be started with enforce_iam");
        }
        let started = std::time::Instant::now();
        let port = free_port()?;
        let port_text = port.to_string();
        let scratch = dir.join(kind.name());
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let scratch_text = scratch.display().to_string();
        let s3_dir = scratch.join("s3").display().to_string();
        let log = dir.join(format!("{}.log", kind.name()));
        let auth = if options.enforce_iam { "true" } else { "false" };
        let listen = format!("127.0.0.1:{port}");
        let localstack_root = scratch.join("root").display().to_string();

        let (mut process, health_path) = match kind {
            EmulatorKind::MiniStack => (
                Supervised::spawn(
                    "ministack",
                    &venv_bin.join("ministack"),
                    std::iter::empty::<&str>(),
                    &[
                        ("GATEWAY_PORT", &port_text),
                        ("BIND_HOST", "127.0.0.1"),
                        // The host put into queue URLs and other endpoints it returns;
                        // "localhost" may resolve to ::1, where nothing listens.
                        ("MINISTACK_HOST", "127.0.0.1"),
                        ("MINISTACK_REGION", REGION),
                        // These listeners ignore BIND_HOST and would open 0.0.0.0:8883
                        // (IoT MQTT) and a fixed SFTP port; the bench must only use loopback
                        // and parallel benches must not collide.
                        ("IOT_MTLS_ENABLED", "0"),
                        ("SFTP_ENABLED", "0"),
                        ("S3_DATA_DIR", &s3_dir),
                        ("TMPDIR", &scratch_text),
                        ("AUTH", auth),
                    ],
                    log,
                )?,
                "/_ministack/health",
            ),
            EmulatorKind::LocalStack => (
                Supervised::spawn(
                    "localstack",
                    &venv_bin.join("python"),
                    ["-m", "localstack.runtime.main"],
                    &[
                        // The default server (twisted) ignores the host part of
                        // GATEWAY_LISTEN for IPv4 and listens on 0.0.0.0; hypercorn
                        // binds the address given.
                        ("GATEWAY_SERVER", "hypercorn"),
                        ("GATEWAY_LISTEN", &listen),
                        // The host and port put into queue URLs and other endpoints.
                        ("LOCALSTACK_HOST", &listen),
                        // Queue URLs `http://127.0.0.1:PORT/queue/REGION/ACCOUNT/NAME`; the
                        // default puts `sqs.REGION.` before the host, which resolves nowhere.
                        ("SQS_ENDPOINT_STRATEGY", "path"),
                        // Only what Hookline calls (the plugin reads CloudWatch): fewer services, faster start.
                        (
                            "SERVICES",
                            "sqs,apigateway,iam,sts,route53,acm,logs,cloudwatch",
                        ),
                        // No DNS server (it would listen on 0.0.0.0:53).
                        ("DNS_ADDRESS", "0"),
                        ("PERSISTENCE", "0"),
                        ("FILESYSTEM_ROOT", &localstack_root),
                        // No analytics events and no TLS certificate download: the
                        // bench reaches nothing but loopback.
                        ("DISABLE_EVENTS", "1"),
                        ("SKIP_SSL_CERT_DOWNLOAD", "1"),
                        // ACM issues after this many seconds (LocalStack caps it at
                        // 10); AWS takes minutes, the reconciler waits either way.
                        ("MOTO_ACM_VALIDATION_WAIT", "1"),
                        ("TMPDIR", &scratch_text),
                        // Its config (CONFIG_DIR, caches) stays out of the user's home.
                        ("HOME", &scratch_text),
                    ],
                    log,
                )?,
                "/_localstack/health",
            ),
            EmulatorKind::Moto => (
                Supervised::spawn(
                    "moto",
                    &venv_bin.join("moto_server"),
                    ["-H", "127.0.0.1", "-p", &port_text],
                    &[("TMPDIR", &scratch_text)],
                    log,
                )?,
                "/moto-api/",
            ),
        };
        // LocalStack answers in 2–3 s on an idle machine; with five builds sharing two
        // cores it has taken far longer.
        wait_until(
            &mut process,
            "answering HTTP",
            Duration::from_secs(120),
            || http_status(port, health_path),
        )
        .await?;

        Ok(Self {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            started_in: started.elapsed(),
            process,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port (MiniStack serves API Gateway custom domains on it too,
    /// chosen by `Host` header).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which emulator this is.
    pub fn kind(&self) -> EmulatorKind {
        self.kind
    }

    /// The account id its resources get with the bench's `test` keys (and that IAM
    /// users created with them belong to).
    pub fn account_id(&self) -> &'static str {
        match self.kind {
            EmulatorKind::MiniStack | EmulatorKind::LocalStack => "000000000000",
            EmulatorKind::Moto => "123456789012",
        }
    }

    /// From spawning the process to its first healthy answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The emulator's process id, for measurements.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// An SDK config for this emulator: its endpoint, [`REGION`], and test credentials
    /// (never the machine's own, so no test can reach a real account).
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_as(Credentials::new(
            "test",
            "test",
            None,
            None,
            "hookline-bench",
        ))
        .await
    }

    /// [`Emulator::sdk_config`] with other credentials, e.g. an IAM user's from
    /// [`crate::iam::user_with_policy`].
    pub async fn sdk_config_as(&self, credentials: Credentials) -> SdkConfig {
        let retry = match self.kind {
            // moto answers unsupported calls with 500; retrying only hides that.
            EmulatorKind::Moto => RetryConfig::disabled(),
            EmulatorKind::MiniStack | EmulatorKind::LocalStack => RetryConfig::standard(),
        };
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .retry_config(retry)
            .load()
            .await
    }
}

/// True when `GET path` on the port answers 2xx. A hand-written HTTP/1.0 request keeps
/// an HTTP client library out of the bench for this one probe.
pub(crate) async fn http_status(port: u16, path: &str) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(head)) => head.starts_with(b"HTTP/1.") && head[9] == b'2',
        _ => false,
    }
}
