//! Who handles a delivery: the team's HTTP handler in the same pod ([`HttpHandler`]),
//! or any Rust code implementing [`Handler`] for teams that embed the worker.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::time::Duration;

use crate::wire::{Delivery, headers};

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: the message is deleted.
    Done,
    /// Not handled: the message comes back after a backoff (or `after`, when the
    /// handler asked for a delay), and the rest of its group waits for it.
    Retry {
        /// The handler's requested delay (`Retry-After`), bounded by the backoff maximum.
        after: Option<Duration>,
        /// Why, for logs and metrics labels. Never contains the body.
        reason: String,
    },
}

/// Handles deliveries. Called for one message group at a time, in order; different
/// groups are handled concurrently, so implementations must be `Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery. Returning [`Outcome::Done`] deletes the message.
    fn handle(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// POSTs each delivery to an HTTP endpoint (the team's container, usually
/// `http://127.0.0.1:8080/`), with the original headers plus `Hookline-Message-Id`,
/// `Hookline-Group-Id`, `Hookline-Receive-Count` and `Hookline-Received-At`. A `2xx`
/// answer means done;
/// any other status, a connection error or a timeout means retry.
#[derive(Debug, Clone)]
pub struct HttpHandler {
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
}

/// Headers that describe one connection, not the request, and must not be replayed.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::HOST,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

impl HttpHandler {
    /// A handler that POSTs to `url` (plain HTTP) and gives up after `timeout`.
    pub fn new(url: Uri, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Self {
            client,
            url,
            timeout,
        }
    }

    fn request(&self, delivery: &Delivery) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone());
        if let Some(headers) = request.headers_mut() {
            for (name, value) in &delivery.headers {
                if !HOP_BY_HOP.contains(name) {
                    headers.append(name, value.clone());
                }
            }
            headers.insert(
                headers::MESSAGE_ID,
                HeaderValue::from_str(&delivery.message_id)?,
            );
            headers.insert(
                headers::GROUP_ID,
                HeaderValue::from_str(&delivery.group_id)?,
            );
            headers.insert(
                headers::RECEIVE_COUNT,
                HeaderValue::from(delivery.receive_count),
            );
            if let Some(at) = epoch_millis(delivery.received_at) {
                headers.insert(headers::RECEIVED_AT, HeaderValue::from_str(&at)?);
            }
        }
        request.body(Full::new(delivery.body.clone()))
    }
}

impl Handler for HttpHandler {
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let request = match self.request(delivery) {
            Ok(request) => request,
            Err(e) => return retry(format!("building the handler request: {e}")),
        };
        let call = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            // Read the body to the end so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after))
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok((status, _))) if status.is_success() => Outcome::Done,
            Ok(Ok((status, after))) => Outcome::Retry {
                after,
                reason: format!("handler answered {status}"),
            },
            Ok(Err(e)) => retry(format!("calling the handler: {e}")),
            Err(_) => retry(format!("handler did not answer within {:?}", self.timeout)),
        }
    }
}

/// `at` as Unix epoch milliseconds with a microsecond fraction; `None` before 1970.
fn epoch_millis(at: std::time::SystemTime) -> Option<String> {
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!(
        "{}.{:03}",
        since.as_millis(),
        since.subsec_micros() % 1000
    ))
}

fn retry(reason: String) -> Outcome {
    Outcome::Retry {
        after: None,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
    use std::time::{SystemTime, UNIX_EPOCH};

    fn millis(at: SystemTime) -> f64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
    }

    #[test]
    fn the_request_says_when_the_worker_received_the_message() {
        let before = millis(SystemTime::now());
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .build();
        let delivery = Delivery::from_sqs(message).unwrap();
        let after = millis(SystemTime::now());
        let handler = HttpHandler::new(Uri::from_static("http://127.0.0.1:1/"), Duration::ZERO);
        let request = handler.request(&delivery).unwrap();
        let value = request.headers()[headers::RECEIVED_AT].to_str().unwrap();
        let (whole, fraction) = value.split_once('.').unwrap();
        assert_eq!(fraction.len(), 3, "microseconds: {value}");
        assert!(whole.bytes().all(|b| b.is_ascii_digit()), "{value}");
        let at: f64 = value.parse().unwrap();
        // The header has microseconds; the bounds are read as floats, so allow one.
        assert!(
            before - 0.001 <= at && at <= after + 0.001,
            "{before} <= {at} <= {after}"
        );
    }

    #[test]
    fn epoch_millis_keeps_microseconds() {
        let at = UNIX_EPOCH + Duration::from_micros(1_764_612_345_123_456);
        assert_eq!(epoch_millis(at).as_deref(), Some("1764612345123.456"));
        let at = UNIX_EPOCH + Duration::from_micros(1_000_007);
        assert_eq!(epoch_millis(at).as_deref(), Some("1000.007"));
    }
}
