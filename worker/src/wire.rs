//! The message format shared by the gateway's mapping template (which writes each
//! request into SQS) and the worker (which reads it back): the body is the raw
//! request body; the request headers travel as one message attribute holding a JSON
//! object, since SQS allows only ten message attributes per message.

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::collections::HashMap;

/// Message attribute holding the request headers as a JSON object `{name: value}`.
pub const HEADERS_ATTRIBUTE: &str = "Hookline-Headers";

/// Headers the worker adds to every handler call.
pub mod headers {
    /// The SQS message id: stable across redeliveries, so handlers can deduplicate.
    pub const MESSAGE_ID: &str = "hookline-message-id";
    /// The message group id.
    pub const GROUP_ID: &str = "hookline-group-id";
    /// How many times SQS has delivered this message (1 on the first try).
    pub const RECEIVE_COUNT: &str = "hookline-receive-count";
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
    /// The raw request body.
    pub body: Bytes,
    /// The original request headers.
    pub headers: HeaderMap,
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
        let headers = attributes
            .get(HEADERS_ATTRIBUTE)
            .and_then(MessageAttributeValue::string_value)
            .map(|json| parse_headers(&message_id, json))
            .unwrap_or_default();
        Ok(Self {
            message_id: message_id.clone(),
            group_id,
            receive_count,
            body: Bytes::from(message.body.unwrap_or_default()),
            headers,
            receipt_handle,
            attributes,
        })
    }
}

fn parse_headers(message_id: &str, json: &str) -> HeaderMap {
    let Ok(map) = serde_json::from_str::<HashMap<String, String>>(json) else {
        tracing::warn!(
            message_id,
            "the {HEADERS_ATTRIBUTE} attribute is not a JSON object of strings; delivering without headers"
        );
        return HeaderMap::new();
    };
    let mut headers = HeaderMap::with_capacity(map.len());
    for (name, value) in map {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
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

/// Encodes headers the way the gateway does, for senders that write to the queue
/// directly (tests, redrive tools, other producers).
pub fn headers_attribute(headers: &[(&str, &str)]) -> MessageAttributeValue {
    let map: HashMap<&str, &str> = headers.iter().copied().collect();
    // Serializing a map of strings cannot fail.
    let json = serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned());
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(json)
        .build()
        .unwrap_or_else(|_| unreachable!("data_type is set"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attrs: Option<&str>) -> Message {
        let mut builder = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{\"a\":1}")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g-1")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3");
        if let Some(json) = attrs {
            builder = builder.message_attributes(
                HEADERS_ATTRIBUTE,
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(json)
                    .build()
                    .unwrap(),
            );
        }
        builder.build()
    }

    #[test]
    fn reads_group_count_body_and_headers() {
        let d = Delivery::from_sqs(message(Some(
            r#"{"Stripe-Signature":"t=1,v1=00","Content-Type":"application/json"}"#,
        )))
        .unwrap();
        assert_eq!(
            (d.message_id.as_str(), d.group_id.as_str(), d.receive_count),
            ("m-1", "g-1", 3)
        );
        assert_eq!(&d.body[..], b"{\"a\":1}");
        assert_eq!(d.headers.get("stripe-signature").unwrap(), "t=1,v1=00");
        assert_eq!(d.headers.get("content-type").unwrap(), "application/json");
    }

    #[test]
    fn bad_headers_do_not_lose_the_message() {
        let d = Delivery::from_sqs(message(Some("not json"))).unwrap();
        assert!(d.headers.is_empty());
        let d = Delivery::from_sqs(message(Some(r#"{"bad header":"x","ok":"y"}"#))).unwrap();
        assert_eq!(d.headers.len(), 1);
        let d = Delivery::from_sqs(message(None)).unwrap();
        assert!(d.headers.is_empty());
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

    #[test]
    fn headers_attribute_round_trips() {
        let attr = headers_attribute(&[("X-GitHub-Delivery", "abc")]);
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .message_attributes(HEADERS_ATTRIBUTE, attr)
            .build();
        assert_eq!(
            Delivery::from_sqs(m)
                .unwrap()
                .headers
                .get("x-github-delivery")
                .unwrap(),
            "abc"
        );
    }
}
