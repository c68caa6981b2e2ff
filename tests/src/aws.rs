//! AWS emulators on loopback: MiniStack (the one that also runs API Gateway → SQS
//! integrations) and moto (a second opinion on control-plane calls), from the venv
//! that `tests/emulators/setup.sh` builds.

use anyhow::{Context, Result};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    /// PyPI `ministack`.
    MiniStack,
    /// PyPI `moto[server]`.
    Moto,
}

impl EmulatorKind {
    fn name(self) -> &'static str {
        match self {
            Self::MiniStack => "ministack",
            Self::Moto => "moto",
        }
    }
}

/// A running emulator, stopped on drop.
#[derive(Debug)]
pub struct Emulator {
    kind: EmulatorKind,
    endpoint: String,
    port: u16,
    process: Supervised,
}

impl Emulator {
    /// Starts `kind` from the venv at `venv_bin` on a free loopback port, with its
    /// scratch files under `dir`, and waits until it answers.
    pub async fn start(kind: EmulatorKind, venv_bin: &Path, dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let port_text = port.to_string();
        let scratch = dir.join(kind.name());
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let scratch_text = scratch.display().to_string();
        let s3_dir = scratch.join("s3").display().to_string();
        let log = dir.join(format!("{}.log", kind.name()));

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
                    ],
                    log,
                )?,
                "/_ministack/health",
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
        wait_until(
            &mut process,
            "answering HTTP",
            Duration::from_secs(60),
            || http_status(port, health_path),
        )
        .await?;

        Ok(Self {
            kind,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
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

    /// The emulator's process id, for measurements.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// An SDK config for this emulator: its endpoint, [`REGION`], and test credentials
    /// (never the machine's own, so no test can reach a real account).
    pub async fn sdk_config(&self) -> SdkConfig {
        let retry = match self.kind {
            // moto answers unsupported calls with 500; retrying only hides that.
            EmulatorKind::Moto => RetryConfig::disabled(),
            EmulatorKind::MiniStack => RetryConfig::standard(),
        };
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "hookline-bench",
            ))
            .retry_config(retry)
            .load()
            .await
    }
}

/// True when `GET path` on the port answers 2xx. A hand-written HTTP/1.0 request keeps
/// an HTTP client library out of the bench for this one probe.
async fn http_status(port: u16, path: &str) -> bool {
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
