//! Reading queued messages in the contract's format (`hookline_contract::wire`,
//! re-exported here): the body, the group, the `Header.*` attributes, and the
//! worker's own [`QUEUED_AT_ATTRIBUTE`].

pub use hookline_contract::wire::*;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;

/// Headers the worker adds to every handler call.
pub mod headers {
    /// The SQS message id: stable across redeliveries, so handlers can deduplicate.
    pub const MESSAGE_ID: &str = "hookline-message-id";
    /// The message group id.
    pub const GROUP_ID: &str = "hookline-group-id";
    /// How many times SQS has delivered this message (1 on the first try).
    pub const RECEIVE_COUNT: &str = "hookline-receive-count";
    /// When the worker read this delivery from SQS's answer, in Unix epoch
    /// milliseconds with a microsecond fraction (`1764612345123.456`): the handler's
    /// arrival time minus this is the time the message spent inside the worker
    /// (waiting behind its group, verification, the HTTP call).
    pub const RECEIVED_AT: &str = "hookline-received-at";
}

/// One queued webhook request, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// SQS message id.
    pub message_id: String,
    /// FIFO message group id.
    pub group_id: String,
    /// SQS's ApproximateReceiveCount: 1 on the first delivery.
    pub receive_count: u32,
    /// When the gateway put the request on the queue: [`QUEUED_AT_ATTRIBUTE`] for a
    /// message the worker moved (dead-lettered, redriven), else SQS's SentTimestamp.
    pub sent_at: Option<std::time::SystemTime>,
    /// When the worker read this delivery from SQS's answer to its receive.
    pub received_at: std::time::SystemTime,
    /// The raw request body.
    pub body: Bytes,
    /// The forwarded request headers.
    pub headers: HeaderMap,
    /// The request's query parameters, decoded, in the order the gateway forwarded
    /// them ([`QUERY_ATTRIBUTE`]); the gateway forwards them only for the presets
    /// that sign the URL, and they are empty otherwise.
    pub query: Vec<(String, String)>,
    pub(crate) receipt_handle: String,
    pub(crate) attributes: HashMap<String, MessageAttributeValue>,
}

/// A received message that cannot be read as a [`Delivery`].
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// SQS always sends these for FIFO queues; their absence means a wrong queue type.
    #[error("message {message_id} has no {what} (is the queue FIFO?)")]
    Missing {
        /// The message, when even that is known.
        message_id: String,
        /// What was missing.
        what: &'static str,
    },
}

impl Delivery {
    /// Reads an SQS message received with all system and message attributes.
    /// Unreadable headers are dropped one by one (and logged), never the message.
    pub fn from_sqs(message: Message) -> Result<Self, WireError> {
        let received_at = std::time::SystemTime::now();
        let message_id = message.message_id.unwrap_or_default();
        let missing = |what| WireError::Missing {
            message_id: message_id.clone(),
            what,
        };
        let receipt_handle = message
            .receipt_handle
            .ok_or_else(|| missing("receipt handle"))?;
        let system = message.attributes.unwrap_or_default();
        let group_id = system
            .get(&MessageSystemAttributeName::MessageGroupId)
            .cloned()
            .ok_or_else(|| missing("MessageGroupId"))?;
        let receive_count = system
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let attributes = message.message_attributes.unwrap_or_default();
        let sent_at = recorded_queued_at(&message_id, &attributes).or_else(|| sent_at(&system));
        let headers = read_headers(&message_id, &attributes);
        let query = attributes
            .get(QUERY_ATTRIBUTE)
            .and_then(MessageAttributeValue::string_value)
            .map(query_parameters)
            .unwrap_or_default();
        Ok(Self {
            message_id: message_id.clone(),
            group_id,
            receive_count,
            sent_at,
            received_at,
            body: Bytes::from(message.body.unwrap_or_default()),
            headers,
            query,
            receipt_handle,
            attributes,
        })
    }
}

/// When a message was sent, from its system attributes (SQS's SentTimestamp, epoch
/// milliseconds); `None` when it was not requested or is unreadable.
pub(crate) fn sent_at(
    system: &HashMap<MessageSystemAttributeName, String>,
) -> Option<std::time::SystemTime> {
    system
        .get(&MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// The first queueing time a move recorded, if any.
pub(crate) fn recorded_queued_at(
    message_id: &str,
    attributes: &HashMap<String, MessageAttributeValue>,
) -> Option<std::time::SystemTime> {
    let raw = attributes.get(QUEUED_AT_ATTRIBUTE)?.string_value()?;
    match raw.parse::<u64>() {
        Ok(ms) => Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
        Err(_) => {
            // Never the message: the SentTimestamp is the safe side for signatures.
            tracing::warn!(
                message_id,
                value = raw,
                "ignoring an unreadable {QUEUED_AT_ATTRIBUTE}"
            );
            None
        }
    }
}

/// The [`QUEUED_AT_ATTRIBUTE`] value for `at`.
pub(crate) fn queued_at_attribute(at: std::time::SystemTime) -> Option<MessageAttributeValue> {
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(ms.to_string())
        .build()
        .ok()
}

fn read_headers(
    message_id: &str,
    attributes: &HashMap<String, MessageAttributeValue>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, attribute) in attributes {
        let Some(name) = header_name(name) else {
            continue;
        };
        let Some(value) = header_value(attribute.string_value().unwrap_or_default()) else {
            continue;
        };
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                tracing::warn!(message_id, header = %name, "dropping a header that is not valid HTTP")
            }
        }
    }
    headers
}

/// Encodes headers in the raw form, for producers that write to the queue
/// directly (tests, tools). Names are lowercased.
pub fn header_attributes(headers: &[(&str, &str)]) -> HashMap<String, MessageAttributeValue> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(raw_header_value(value))
                .build()
                .ok()?;
            Some((header_attribute_name(name), attribute))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &[(&str, &str)]) -> Message {
        Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{\"a\":1}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g-1")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .set_message_attributes(Some(header_attributes(headers)))
            .build()
    }

    #[test]
    fn reads_group_count_body_and_headers() {
        let d = Delivery::from_sqs(message(&[
            ("Stripe-Signature", "t=1,v1=00"),
            ("content-type", "application/json"),
        ]))
        .unwrap();
        assert_eq!(
            (d.message_id.as_str(), d.group_id.as_str(), d.receive_count),
            ("m-1", "g-1", 3)
        );
        assert_eq!(
            d.sent_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(&d.body[..], b"{\"a\":1}");
        assert_eq!(d.headers.get("stripe-signature").unwrap(), "t=1,v1=00");
        assert_eq!(d.headers.get("content-type").unwrap(), "application/json");
    }

    #[test]
    fn a_recorded_queueing_time_wins_over_the_sent_timestamp() {
        let first = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_600_000_000_456);
        let mut moved = message(&[("Stripe-Signature", "t=1,v1=00")]);
        moved.message_attributes.as_mut().unwrap().insert(
            QUEUED_AT_ATTRIBUTE.to_owned(),
            queued_at_attribute(first).unwrap(),
        );
        assert_eq!(Delivery::from_sqs(moved).unwrap().sent_at, Some(first));

        let mut garbled = message(&[]);
        garbled.message_attributes.as_mut().unwrap().insert(
            QUEUED_AT_ATTRIBUTE.to_owned(),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("yesterday")
                .build()
                .unwrap(),
        );
        assert_eq!(
            Delivery::from_sqs(garbled).unwrap().sent_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123)),
            "an unreadable value falls back to SQS's own time"
        );
    }

    #[test]
    fn an_absent_header_is_the_marker_alone() {
        let d = Delivery::from_sqs(message(&[
            ("x-hub-signature-256", ""),
            ("user-agent", "GitHub-Hookshot/1"),
        ]))
        .unwrap();
        assert!(d.headers.get("x-hub-signature-256").is_none());
        assert_eq!(d.headers.len(), 1);
    }

    fn encoded(name: &str, value: &str) -> (String, MessageAttributeValue) {
        (
            format!("{HEADER_ATTRIBUTE_PREFIX}{name}"),
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn reads_the_url_encoded_values_the_gateway_writes() {
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .set_message_attributes(Some(HashMap::from([
                encoded("stripe-signature", "%t%3D1%2Cv1%3D00"),
                encoded(
                    "user-agent",
                    "%Stripe%2F1.0+%28%2Bhttps%3A%2F%2Fstripe.com%29",
                ),
                encoded("x-absent", "%"),
                encoded("x-legacy", ":t=2,v1=11"),
            ])))
            .build();
        let d = Delivery::from_sqs(m).unwrap();
        assert_eq!(d.headers.get("stripe-signature").unwrap(), "t=1,v1=00");
        assert_eq!(
            d.headers.get("user-agent").unwrap(),
            "Stripe/1.0 (+https://stripe.com)"
        );
        assert_eq!(d.headers.get("x-legacy").unwrap(), "t=2,v1=11");
        assert!(d.headers.get("x-absent").is_none());
        assert_eq!(d.headers.len(), 3);
    }

    #[test]
    fn reads_the_query_the_gateway_forwards() {
        let mut m = message(&[("x-twilio-signature", "c2ln")]);
        let query = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("%bodySHA256=0a1b&note=caf%C3%A9+%E2%9C%93")
            .build()
            .unwrap();
        m.message_attributes
            .as_mut()
            .unwrap()
            .insert(QUERY_ATTRIBUTE.to_owned(), query);
        let d = Delivery::from_sqs(m).unwrap();
        assert_eq!(
            d.query,
            [
                ("bodySHA256".to_owned(), "0a1b".to_owned()),
                ("note".to_owned(), "caf\u{e9} \u{2713}".to_owned()),
            ]
        );
        assert_eq!(d.headers.len(), 1, "the query is no header");
        assert!(
            Delivery::from_sqs(message(&[])).unwrap().query.is_empty(),
            "no query attribute, no query"
        );
    }

    #[test]
    fn bad_headers_do_not_lose_the_message() {
        let d = Delivery::from_sqs(message(&[
            ("bad header", "x"),
            ("ok", "y\u{7f}"),
            ("fine", "z"),
        ]))
        .unwrap();
        assert_eq!(d.headers.len(), 1);
        assert_eq!(d.headers.get("fine").unwrap(), "z");
        let plain = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .build();
        assert!(Delivery::from_sqs(plain).unwrap().headers.is_empty());
    }

    #[test]
    fn a_message_without_group_is_refused() {
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .body("x")
            .build();
        assert!(matches!(
            Delivery::from_sqs(m),
            Err(WireError::Missing {
                what: "MessageGroupId",
                ..
            })
        ));
    }
}
