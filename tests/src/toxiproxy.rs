//! Network faults: Shopify's toxiproxy (built from its Go module by
//! `tests/toxiproxy/build.sh`, cached under `~/.cache/hookline/toxiproxy/`) as a TCP
//! proxy between a binary and the emulator or the API server, with toxics (latency,
//! connection resets, timeouts) added and removed through its HTTP API while the
//! test runs.

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::process::{Supervised, free_port, run_setup_script};

/// A toxiproxy server on 127.0.0.1; stopped when dropped.
#[derive(Debug)]
pub struct Toxiproxy {
    port: u16,
    _process: Supervised,
}

/// One proxy of the server: `listen` (127.0.0.1:port) forwards to `upstream`.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The proxy's name in the API.
    pub name: String,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
}

/// The path of the cached `toxiproxy-server`, built on first use.
pub fn binary() -> Result<std::path::PathBuf> {
    let script = crate::repo_root().join("tests/toxiproxy/build.sh");
    run_setup_script(&script).context("building toxiproxy-server (tests/toxiproxy/build.sh)")
}

impl Toxiproxy {
    /// Builds (first run only) and starts the server, logging into `dir`.
    pub async fn start(dir: &Path) -> Result<Self> {
        let binary = tokio::task::spawn_blocking(binary)
            .await
            .context("waiting for the toxiproxy build")??;
        let port = free_port()?;
        let port_arg = port.to_string();
        let process = Supervised::spawn(
            "toxiproxy-server",
            &binary,
            ["-host", "127.0.0.1", "-port", port_arg.as_str()],
            &[],
            dir.join(format!("toxiproxy-{port}.log")),
        )?;
        let server = Self {
            port,
            _process: process,
        };
        crate::util::wait_for("toxiproxy's API", Duration::from_secs(20), || async {
            Ok(server.request("GET", "/version", None).await.is_ok())
        })
        .await?;
        Ok(server)
    }

    /// A proxy named `name` on a free 127.0.0.1 port in front of `upstream`
    /// (`127.0.0.1:port`).
    pub async fn proxy(&self, name: &str, upstream: &str) -> Result<Proxy> {
        let port = free_port()?;
        self.request(
            "POST",
            "/proxies",
            Some(json!({
                "name": name,
                "listen": format!("127.0.0.1:{port}"),
                "upstream": upstream,
                "enabled": true,
            })),
        )
        .await
        .with_context(|| format!("creating the toxiproxy proxy {name} -> {upstream}"))?;
        Ok(Proxy {
            name: name.to_owned(),
            port,
        })
    }

    /// Adds a toxic to `proxy`: `kind` is toxiproxy's type (`latency`,
    /// `reset_peer`, `timeout`, `bandwidth`, …), `stream` `upstream` or
    /// `downstream`, `toxicity` the share of connections it applies to.
    pub async fn add_toxic(
        &self,
        proxy: &Proxy,
        name: &str,
        kind: &str,
        stream: &str,
        toxicity: f64,
        attributes: Value,
    ) -> Result<()> {
        self.request(
            "POST",
            &format!("/proxies/{}/toxics", proxy.name),
            Some(json!({
                "name": name,
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            })),
        )
        .await
        .with_context(|| format!("adding the toxic {name} ({kind}) to {}", proxy.name))?;
        Ok(())
    }

    /// Removes the toxic `name` from `proxy`.
    pub async fn remove_toxic(&self, proxy: &Proxy, name: &str) -> Result<()> {
        self.request(
            "DELETE",
            &format!("/proxies/{}/toxics/{name}", proxy.name),
            None,
        )
        .await
        .with_context(|| format!("removing the toxic {name} from {}", proxy.name))?;
        Ok(())
    }

    /// Enables or disables `proxy`: disabled, it refuses connections and drops the
    /// open ones (the network gone).
    pub async fn set_enabled(&self, proxy: &Proxy, enabled: bool) -> Result<()> {
        self.request(
            "POST",
            &format!("/proxies/{}", proxy.name),
            Some(json!({"enabled": enabled})),
        )
        .await
        .with_context(|| format!("setting {} enabled={enabled}", proxy.name))?;
        Ok(())
    }

    /// One call of the API (HTTP/1.1, `Connection: close`); fails on a status
    /// outside 2xx with the body.
    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .context("connecting to toxiproxy's API")?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .context("toxiproxy's API did not answer within 10 s")??;
        let response = String::from_utf8_lossy(&response);
        let status: u16 = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no HTTP status in {response}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        if !(200..300).contains(&status) {
            bail!("{method} {path}: {status} {body}");
        }
        Ok(body)
    }
}
