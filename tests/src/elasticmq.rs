//! ElasticMQ on loopback: an SQS-compatible server (Scala, on the JVM) fast enough
//! that a benchmark measures the consumer rather than the server. It is a benchmark
//! target, not a correctness oracle: where it differs from AWS is in
//! `docs/emulators.md`. The jars come from Maven Central through
//! `tests/elasticmq/setup.sh`, cached under `~/.cache/hookline/`.

use anyhow::{Context, Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig};
use aws_sdk_sqs::config::Credentials;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::Workdir;
use crate::aws::REGION;
use crate::process::{Supervised, free_port, wait_until};

/// The account id in the queue URLs and ARNs it returns (configured, as AWS
/// accounts are 12 digits; the same as MiniStack's and LocalStack's).
pub const ACCOUNT_ID: &str = "000000000000";

/// The directory holding ElasticMQ's jars (`lib/`), fetching them on first use.
/// Fails when Java or mvn is missing, or Maven Central cannot be reached.
pub fn home() -> Result<PathBuf> {
    let dir =
        crate::process::run_setup_script(&crate::repo_root().join("tests/elasticmq/setup.sh"))
            .context("fetching ElasticMQ (needs Java 17+, mvn and Maven Central)")?;
    if !dir.join("lib").is_dir() {
        bail!(
            "{} has no lib/ directory; remove it and run tests/elasticmq/setup.sh again",
            dir.display()
        );
    }
    Ok(dir)
}

/// A running ElasticMQ, stopped on drop.
#[derive(Debug)]
pub struct ElasticMq {
    // Declaration order is drop order: the process stops before its directory goes.
    process: Supervised,
    endpoint: String,
    port: u16,
    started_in: Duration,
    workdir: Workdir,
}

impl ElasticMq {
    /// Starts ElasticMQ on a free loopback port, with its config and log in a new
    /// scratch directory, and waits until it answers. As with every bench process,
    /// call it from a thread that outlives the server.
    pub async fn start() -> Result<Self> {
        let home = tokio::task::spawn_blocking(home)
            .await
            .context("waiting for the ElasticMQ setup")??;
        let java = which("java").context(
            "java is not on PATH; ElasticMQ needs a Java 17+ runtime (Debian: openjdk-17-jre-headless)",
        )?;
        let classpath = classpath(&home.join("lib"))?;
        let workdir = Workdir::create()?;
        let started = Instant::now();
        let port = free_port()?;
        let config = workdir.path().join("elasticmq.conf");
        std::fs::write(&config, config_text(port))
            .with_context(|| format!("writing {}", config.display()))?;
        let config_arg = format!("-Dconfig.file={}", config.display());
        let mut process = Supervised::spawn(
            "elasticmq",
            &java,
            [
                config_arg.as_str(),
                // Bounded, so a long benchmark cannot take the machine's memory.
                "-Xmx1g",
                "-cp",
                &classpath,
                "org.elasticmq.server.Main",
            ],
            &[],
            workdir.path().join("elasticmq.log"),
        )?;
        // About 1.5 s on an idle machine, 5 s with builds sharing the cores.
        wait_until(
            &mut process,
            "answering HTTP",
            Duration::from_secs(120),
            || crate::aws::http_status(port, "/health"),
        )
        .await?;
        Ok(Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            started_in: started.elapsed(),
            workdir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JVM's process id, for measurements.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// From spawning the JVM to its first healthy answer.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// Its scratch directory (config and log).
    pub fn workdir(&self) -> &Path {
        self.workdir.path()
    }

    /// An SDK config for this server: its endpoint, [`REGION`] and test credentials
    /// (never the machine's own).
    pub async fn sdk_config(&self) -> SdkConfig {
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
            .retry_config(RetryConfig::standard())
            .load()
            .await
    }
}

/// The server's configuration (HOCON, on top of its bundled defaults): the SQS API
/// on 127.0.0.1 only, queue URLs naming that same address, AWS's limits enforced,
/// and the statistics UI (which would listen on 0.0.0.0:9325) off.
fn config_text(port: u16) -> String {
    format!(
        r#"include classpath("application.conf")
node-address {{
  protocol = http
  host = "127.0.0.1"
  port = {port}
  context-path = ""
}}
generate-node-address = false
rest-sqs {{
  enabled = true
  bind-port = {port}
  bind-hostname = "127.0.0.1"
  sqs-limits = strict
}}
rest-stats {{
  enabled = false
}}
aws {{
  region = {REGION}
  accountId = {ACCOUNT_ID}
}}
"#
    )
}

/// Every jar in `lib`, joined for `-cp` (sorted, so runs are alike).
fn classpath(lib: &Path) -> Result<String> {
    let mut jars: Vec<String> = std::fs::read_dir(lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "jar"))
        .map(|path| path.display().to_string())
        .collect();
    if jars.is_empty() {
        bail!("no jars in {}", lib.display());
    }
    jars.sort();
    Ok(jars.join(":"))
}

/// `program`'s path on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
