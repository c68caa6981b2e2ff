//! Small helpers that tests, the demo and the benchmarks share.

use anyhow::{Context, Result, bail};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Polls `check` every 250 ms until it returns true; fails after `timeout`, naming
/// what it waited for. Every wait in a test is bounded.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What [`receive_all`] does with each batch before the next receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReceive {
    /// Leave it: the messages stay invisible for the visibility timeout (and in a
    /// FIFO queue hold back the rest of their group).
    Keep,
    /// Delete it, so a FIFO group's next messages can be received.
    Delete,
}

/// Every message a queue hands out, receiving (with all attributes) until a receive
/// comes back empty or `max_rounds` receives were made.
pub async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max_rounds: usize,
    after: AfterReceive,
) -> Result<Vec<aws_sdk_sqs::types::Message>> {
    let mut all = Vec::new();
    for _ in 0..max_rounds {
        let messages = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receiving from {url}"))?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        if after == AfterReceive::Delete {
            for message in &messages {
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .with_context(|| format!("deleting from {url}"))?;
            }
        }
        all.extend(messages);
    }
    Ok(all)
}

/// One HTTP/1.1 `GET` of `path` (query included) from 127.0.0.1:`port`; returns the
/// status, the response headers (names lowercased) and the body (a chunked body
/// decoded).
pub async fn get(
    port: u16,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<(String, String)>, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {response}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {response}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        let mut decoded = String::new();
        let mut rest = body;
        // Bounded: each chunk consumes input.
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16)
                .with_context(|| format!("a chunk size in {body:?}"))?;
            if size == 0 || after.len() < size {
                break;
            }
            decoded.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        decoded
    } else {
        body.to_owned()
    };
    Ok((status, headers, body))
}

/// One HTTP/1.1 `POST` to 127.0.0.1:`port` with a `Host` header of choice (the
/// emulator picks a custom domain by it); returns the status and the body.
pub async fn post(
    port: u16,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {response}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether a Hookline resource's conditions (its `status.conditions`) say Ready.
pub fn ready(
    conditions: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
) -> bool {
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}
